//! A fake Ollama: a real HTTP/1.1 server on loopback answering
//! `POST /api/chat` with Ollama's NDJSON, written chunk by chunk with the
//! pauses, splits and endings a test scripts per prompt.
//!
//! Every request is logged with its JSON body and how it ended, in
//! particular whether the gateway closed the connection before the script
//! finished (what a cancelled stream must do). `GET /_log` returns that log as JSON so the
//! Node tests can check it too, and `GET /api/tags` answers like Ollama's.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How a scripted reply ends.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// The `done: true` line with this reason.
    Done(&'static str),
    /// An `{"error": ...}` line.
    ErrorLine(&'static str),
    /// The body just stops (no done line).
    Abrupt,
    /// Never finishes: waits until the client goes away.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Script {
    pub tokens: Vec<String>,
    /// Pause before each token.
    pub interval: Duration,
    /// Pause before the first byte of the body.
    pub first_delay: Duration,
    /// Write each line in two pieces, cut mid-line.
    pub split_lines: bool,
    /// Write all lines in a single write.
    pub one_write: bool,
    pub end: End,
    /// HTTP status instead of 200 (body: an Ollama error object).
    pub status: u16,
}

impl Script {
    /// `n` tokens of about `size` bytes each.
    pub fn sized(n: usize, size: usize, interval_ms: u64) -> Self {
        let mut s = Self::tokens(n, interval_ms);
        for t in &mut s.tokens {
            let pad = size.saturating_sub(t.len());
            t.push_str(&"x".repeat(pad));
        }
        s
    }

    pub fn tokens(n: usize, interval_ms: u64) -> Self {
        Self {
            tokens: (0..n).map(|i| format!("t{i} ")).collect(),
            interval: Duration::from_millis(interval_ms),
            first_delay: Duration::ZERO,
            split_lines: false,
            one_write: false,
            end: End::Done("stop"),
            status: 200,
        }
    }

    pub fn text(&self) -> String {
        self.tokens.concat()
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Served {
    pub prompt: String,
    pub model: String,
    /// The request body as the gateway sent it.
    pub body: Value,
    /// The gateway closed the connection before the script ended.
    pub closed_early: bool,
    pub finished: bool,
    pub tokens_written: usize,
    /// Milliseconds from the first token written to the last.
    pub write_span_ms: u64,
}

type Scripter = dyn Fn(&Value) -> Script + Send + Sync;

pub struct FakeOllama {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
    changed: Arc<Notify>,
}

impl FakeOllama {
    /// Serve; `script` picks the reply from the request's last message.
    pub async fn start(script: impl Fn(&str) -> Script + Send + Sync + 'static) -> Self {
        Self::start_with(move |body| script(&last_content(body))).await
    }

    /// Serve; `script` picks the reply from the whole request body.
    pub async fn start_with(script: impl Fn(&Value) -> Script + Send + Sync + 'static) -> Self {
        // A small send buffer (inherited by accepted sockets), so that a
        // gateway that stops reading holds this server's writes back soon.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(16 * 1024).expect("sndbuf");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind fake ollama");
        let listener = socket.listen(1024).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let changed = Arc::new(Notify::new());
        let script: Arc<Scripter> = Arc::new(script);
        let (l, c) = (log.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_conn(conn, script.clone(), l.clone(), c.clone()));
            }
        });
        Self { addr, log, changed }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> Vec<Served> {
        self.log.lock().expect("log").clone()
    }

    /// Wait until an entry for `prompt` satisfies `pred`.
    pub async fn wait_for(&self, prompt: &str, pred: impl Fn(&Served) -> bool) -> Served {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            if let Some(s) = self
                .log()
                .into_iter()
                .rev()
                .find(|s| s.prompt == prompt && pred(s))
            {
                return s;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "fake ollama: no matching entry for {prompt:?}; log: {:?}",
                    self.log()
                );
            }
        }
    }
}

async fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    Some((head, buf[head_end..head_end + len].to_vec()))
}

async fn serve_conn(
    mut conn: TcpStream,
    script: Arc<Scripter>,
    log: Arc<Mutex<Vec<Served>>>,
    changed: Arc<Notify>,
) {
    let Some((head, body)) = read_request(&mut conn).await else {
        return;
    };
    let first_line = head.lines().next().unwrap_or("").to_string();
    if first_line.starts_with("GET /api/tags") {
        let _ = write_json(&mut conn, 200, &json!({"models": []})).await;
        return;
    }
    if first_line.starts_with("GET /_log") {
        let entries = log.lock().expect("log").clone();
        let _ = write_json(&mut conn, 200, &json!(entries)).await;
        return;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let prompt = last_content(&req);
    let model = req["model"].as_str().unwrap_or("").to_string();
    let s = script(&req);
    let idx = {
        let mut l = log.lock().expect("log");
        l.push(Served {
            prompt,
            model: model.clone(),
            body: req,
            closed_early: false,
            finished: false,
            tokens_written: 0,
            write_span_ms: 0,
        });
        l.len() - 1
    };
    changed.notify_waiters();
    let update = |f: &dyn Fn(&mut Served)| {
        if let Some(e) = log.lock().expect("log").get_mut(idx) {
            f(e);
        }
        changed.notify_waiters();
    };
    if s.status != 200 {
        let _ = write_json(&mut conn, s.status, &json!({"error": "scripted failure"})).await;
        update(&|e| e.finished = true);
        return;
    }
    let first_write = std::sync::OnceLock::new();
    let outcome = stream_script(&mut conn, &s, &model, &|n| {
        let t0 = *first_write.get_or_init(std::time::Instant::now);
        update(&|e| {
            e.tokens_written = n;
            e.write_span_ms = t0.elapsed().as_millis() as u64;
        })
    })
    .await;
    match outcome {
        Ok(()) => update(&|e| e.finished = true),
        Err(()) => update(&|e| e.closed_early = true),
    }
}

/// The content of a chat request's last message (the prompt).
fn last_content(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

async fn write_json(conn: &mut TcpStream, status: u16, v: &Value) -> std::io::Result<()> {
    let body = v.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

fn token_line(model: &str, content: &str) -> String {
    format!(
        "{}\n",
        json!({"model": model, "created_at": "2024-05-01T00:00:00Z",
               "message": {"role": "assistant", "content": content}, "done": false})
    )
}

fn done_line(model: &str, reason: &str, n: usize) -> String {
    format!(
        "{}\n",
        json!({"model": model, "created_at": "2024-05-01T00:00:00Z",
               "message": {"role": "assistant", "content": ""}, "done": true,
               "done_reason": reason, "total_duration": 1000, "load_duration": 10,
               "prompt_eval_count": 3, "prompt_eval_duration": 5,
               "eval_count": n, "eval_duration": 100})
    )
}

/// Write the script; Err when the peer went away first.
async fn stream_script(
    conn: &mut TcpStream,
    s: &Script,
    model: &str,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), ()> {
    let (mut rd, mut wr) = conn.split();
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    wr.write_all(head.as_bytes()).await.map_err(|_| ())?;
    // A read that returns means the peer closed (it sends nothing more).
    let mut probe = [0u8; 64];
    let peer_gone =
        async |rd: &mut tokio::net::tcp::ReadHalf<'_>, d: Duration, probe: &mut [u8]| {
            tokio::select! {
                _ = tokio::time::sleep(d) => false,
                _ = rd.read(probe) => true,
            }
        };
    if peer_gone(&mut rd, s.first_delay, &mut probe).await {
        return Err(());
    }
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut lines: Vec<String> = s.tokens.iter().map(|t| token_line(model, t)).collect();
    match &s.end {
        End::Done(reason) => lines.push(done_line(model, reason, s.tokens.len())),
        End::ErrorLine(msg) => lines.push(format!("{}\n", json!({"error": msg}))),
        End::Abrupt | End::Hang => {}
    }
    if s.one_write {
        pending.push_back(lines.concat());
    } else {
        pending.extend(lines);
    }
    let mut written = 0;
    while let Some(line) = pending.pop_front() {
        if !s.one_write
            && written < s.tokens.len()
            && peer_gone(&mut rd, s.interval, &mut probe).await
        {
            return Err(());
        }
        let pieces: Vec<&[u8]> = if s.split_lines && line.len() > 4 {
            let cut = line.len() / 2;
            vec![&line.as_bytes()[..cut], &line.as_bytes()[cut..]]
        } else {
            vec![line.as_bytes()]
        };
        for p in pieces {
            let chunk = [format!("{:x}\r\n", p.len()).as_bytes(), p, b"\r\n"].concat();
            wr.write_all(&chunk).await.map_err(|_| ())?;
            wr.flush().await.map_err(|_| ())?;
            if s.split_lines {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        written += if s.one_write { s.tokens.len() } else { 1 };
        progress(written.min(s.tokens.len()));
    }
    if s.end == End::Hang {
        // Wait for the gateway to go away (bounded).
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = rd.read(&mut probe) => return Err(()),
        }
    }
    wr.write_all(b"0\r\n\r\n").await.map_err(|_| ())?;
    let _ = wr.flush().await;
    Ok(())
}
