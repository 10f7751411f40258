//! The fake upstream: a real HTTP/1.1 server on loopback that speaks
//! Ollama's `POST /api/chat` NDJSON stream, shared by every target.
//!
//! Each request's prompt carries its own script (`bench id=… n=… rate=…
//! size=… ttft=…`, built by [`script`]), so one server serves every stream
//! of every target alike. Each token's content starts with `[<send µs>:<seq>]`
//! (µs on the loadgen's one clock, [`now_us`]) and is padded to the token
//! size; the client that receives it computes the added latency from it.
//! While a stream is being written the connection is also read, so a client
//! that closes it early (a cancel) is seen at once, and the time is kept by
//! stream id for the `cancel` scenario. Keep-alive is honoured between
//! requests, as real Ollama does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the loadgen started: the one clock of every
/// timestamp the harness compares (upstream send, client receive, cancel).
pub fn now_us() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What one upstream request is asked to do, read from its prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub id: String,
    pub tokens: u32,
    /// Tokens per second; 0 = as fast as the connection takes them.
    pub rate: f64,
    /// Bytes of each token's content (at least the timestamp header).
    pub size: usize,
    /// Delay before the first token, in ms.
    pub ttft_ms: u64,
}

/// The prompt that asks the upstream for `s`.
pub fn script(s: &Script) -> String {
    format!(
        "bench id={} n={} rate={} size={} ttft={}",
        s.id, s.tokens, s.rate, s.size, s.ttft_ms
    )
}

/// Find and parse the script in a request body (any JSON encoding of the
/// prompt works: the script has no characters JSON escapes).
fn parse_script(body: &str) -> Option<Script> {
    let start = body.find("bench id=")?;
    let rest = &body[start + "bench ".len()..];
    let end = rest.find('"').unwrap_or(rest.len());
    let mut s = Script {
        id: String::new(),
        tokens: 0,
        rate: 0.0,
        size: 16,
        ttft_ms: 0,
    };
    for kv in rest[..end].split(' ') {
        let (k, v) = kv.split_once('=')?;
        match k {
            "id" => s.id = v.to_string(),
            "n" => s.tokens = v.parse().ok()?,
            "rate" => s.rate = v.parse().ok()?,
            "size" => s.size = v.parse().ok()?,
            "ttft" => s.ttft_ms = v.parse().ok()?,
            _ => {}
        }
    }
    (!s.id.is_empty()).then_some(s)
}

/// What the upstream saw, for the scenarios to read.
#[derive(Default)]
pub struct UpstreamStats {
    pub requests: AtomicU64,
    pub tokens_sent: AtomicU64,
    pub completed: AtomicU64,
    /// Streams whose connection was closed by the client before the end.
    pub closed_early: AtomicU64,
    /// Stream id → µs when its connection was seen closed before the end.
    pub close_times: Mutex<HashMap<String, u64>>,
}

pub struct Upstream {
    pub port: u16,
    pub stats: Arc<UpstreamStats>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stats = Arc::new(UpstreamStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            conns.spawn(serve_conn(sock, st.clone()));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Self { port, stats, task })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Largest request head or body accepted (a bench prompt is tiny).
const MAX_REQUEST: usize = 1 << 20;

/// Serve requests on one connection until the client closes it.
async fn serve_conn(mut sock: TcpStream, stats: Arc<UpstreamStats>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let Some((head_len, path, body_len, chunked)) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        buf.drain(..head_len);
        let body = if chunked {
            match read_chunked_body(&mut sock, &mut buf).await {
                Some(b) => b,
                None => return,
            }
        } else {
            while buf.len() < body_len {
                if !read_more(&mut sock, &mut buf).await {
                    return;
                }
            }
            buf.drain(..body_len).collect()
        };
        let ok = if path.starts_with("/api/chat") {
            let body = String::from_utf8_lossy(&body);
            match parse_script(&body) {
                Some(s) => stream_reply(&mut sock, &s, &stats).await,
                None => {
                    let msg = "{\"error\":\"no bench script in the prompt\"}";
                    respond(&mut sock, "400 Bad Request", msg).await
                }
            }
        } else if path.starts_with("/api/tags") {
            respond(&mut sock, "200 OK", "{\"models\":[]}").await
        } else {
            respond(&mut sock, "404 Not Found", "{\"error\":\"not found\"}").await
        };
        if !ok {
            return;
        }
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    if buf.len() > MAX_REQUEST {
        return false;
    }
    let mut chunk = [0u8; 8192];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Read a request head: (head length, path, content-length, chunked).
async fn read_head(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(usize, String, usize, bool)> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..pos]).ok()?;
            let mut lines = head.split("\r\n");
            let path = lines.next()?.split(' ').nth(1)?.to_string();
            let mut len = 0;
            let mut chunked = false;
            for l in lines {
                let (k, v) = l.split_once(':')?;
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().ok()?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                }
            }
            if len > MAX_REQUEST {
                return None;
            }
            return Some((pos + 4, path, len, chunked));
        }
        if !read_more(sock, buf).await {
            return None;
        }
    }
}

/// A chunked request body (undici sends one for some bodies).
async fn read_chunked_body(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !read_more(sock, buf).await {
                return None;
            }
        };
        let size_str = std::str::from_utf8(&buf[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        if size > MAX_REQUEST || body.len() > MAX_REQUEST {
            return None;
        }
        while buf.len() < line_end + 2 + size + 2 {
            if !read_more(sock, buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn respond(sock: &mut TcpStream, status: &str, body: &str) -> bool {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(msg.as_bytes()).await.is_ok()
}

/// One token line, as an HTTP chunk, appended to `out`.
fn push_token_chunk(out: &mut Vec<u8>, seq: u32, size: usize) {
    let mut content = String::with_capacity(size + 24);
    let _ = write!(content, "[{}:{}]", now_us(), seq);
    while content.len() < size {
        content.push('x');
    }
    let line = format!(
        "{{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"done\":false}}\n"
    );
    out.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
    let _ = std::io::Write::write_all(out, line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_done_chunk(out: &mut Vec<u8>, tokens: u32) {
    let line = format!(
        "{{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":1,\"eval_count\":{tokens}}}\n"
    );
    out.extend_from_slice(format!("{:x}\r\n", line.len()).as_bytes());
    let _ = std::io::Write::write_all(out, line.as_bytes());
    out.extend_from_slice(b"\r\n0\r\n\r\n");
}

/// In unpaced mode, tokens are written in batches of about this many bytes
/// (each still its own HTTP chunk and NDJSON line), as a fast upstream's
/// TCP stream would deliver them.
const UNPACED_BATCH: usize = 16 * 1024;

/// Stream the reply to `s`, watching the connection for an early close.
/// Returns whether the connection can serve another request.
async fn stream_reply(sock: &mut TcpStream, s: &Script, stats: &UpstreamStats) -> bool {
    stats.requests.fetch_add(1, Relaxed);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
    if sock.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let (mut rd, mut wr) = sock.split();
    let started = tokio::time::Instant::now() + Duration::from_millis(s.ttft_ms);
    let interval = (s.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / s.rate));
    let mut out = Vec::with_capacity(UNPACED_BATCH + 512);
    let mut seq = 0u32;
    let mut probe = [0u8; 64];
    while seq < s.tokens {
        let due = match interval {
            Some(iv) => started + iv * seq,
            None => started,
        };
        // Any read result mid-stream means the client hung up (or sent
        // bytes mid-stream, which no HTTP/1.1 client does): the stream is over.
        let closed = tokio::select! {
            biased;
            _ = rd.read(&mut probe) => true,
            _ = tokio::time::sleep_until(due) => false,
        };
        if closed {
            record_close(stats, &s.id);
            return false;
        }
        out.clear();
        let first = seq;
        loop {
            seq += 1;
            push_token_chunk(&mut out, seq, s.size);
            if interval.is_some() || seq >= s.tokens || out.len() >= UNPACED_BATCH {
                break;
            }
        }
        if seq >= s.tokens {
            push_done_chunk(&mut out, s.tokens);
        }
        let write = tokio::select! {
            biased;
            _ = rd.read(&mut probe) => false,
            w = wr.write_all(&out) => w.is_ok(),
        };
        match write {
            true => {}
            false => {
                record_close(stats, &s.id);
                return false;
            }
        }
        stats.tokens_sent.fetch_add(u64::from(seq - first), Relaxed);
    }
    stats.completed.fetch_add(1, Relaxed);
    true
}

fn record_close(stats: &UpstreamStats, id: &str) {
    let at = now_us();
    stats.closed_early.fetch_add(1, Relaxed);
    if let Ok(mut m) = stats.close_times.lock() {
        m.insert(id.to_string(), at);
    }
}
