//! Fake upstreams and a minimal Socket.IO client, shared by
//! tests/providers.rs (each provider against its wire format) and
//! tests/gateway_routes.rs (fallback, cancel and routing through the whole
//! gateway).
//!
//! A [`Fake`] is a real HTTP/1.1 server on loopback: it reads each request
//! (API calls recorded with their arrival time; GET probes are not) and
//! answers with exact wire bytes: a
//! status with a JSON body, a chunked SSE body (each part one HTTP chunk),
//! raw bytes, or a response held open that reports when the client closes
//! the connection.

#![allow(dead_code)] // each test crate uses its own part

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use streamgate::config::{ProviderConfig, ProviderKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub const KEY_ENV: &str = "SG_TEST_PROVIDER_KEY";
pub const KEY: &str = "sk-test-0123456789abcdef";

/// Every test calls this before building a provider, so the variable is
/// set once, before any thread reads the environment.
pub fn init() {
    static ONCE: Once = Once::new();
    // SAFETY: runs once, and every test waits on it before doing anything
    // that reads the environment (reqwest reads proxy variables).
    ONCE.call_once(|| unsafe {
        std::env::set_var(KEY_ENV, KEY);
        std::env::set_var("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
    });
}

pub mod agent_wire;

// ------------------------------------------------------------ fake upstream

/// What the fake answers one request with.
#[derive(Clone)]
pub enum Reply {
    /// A complete response with a JSON body.
    Status(u16, String),
    /// 200, `text/event-stream`, chunked: each part one HTTP chunk (with a
    /// short pause between), then the terminating chunk, or, with `hold`,
    /// nothing more: the connection stays open until the client closes it.
    Sse { parts: Vec<String>, hold: bool },
    /// These bytes as the whole response, then the connection closes.
    Raw(String),
    /// 200, `application/x-ndjson`, chunked: each line one HTTP chunk, as
    /// Ollama streams.
    Ndjson(Vec<String>),
}

/// How a fake picks its reply: from the request body, so one fake can
/// play several turns of an agent loop.
type Script = dyn Fn(&Value) -> Reply + Send + Sync;

pub struct Recorded {
    head: String,
    body: Value,
    at: Instant,
}

pub struct Fake {
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// One message per held connection that the client closed.
    pub closed: mpsc::UnboundedReceiver<()>,
}

impl Fake {
    pub async fn start(reply: Reply) -> Fake {
        Self::scripted(move |_| reply.clone()).await
    }

    /// A fake that answers each request with what `script` builds from
    /// its JSON body.
    pub async fn scripted(script: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Fake {
        let script: Arc<Script> = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, closed) = mpsc::unbounded_channel();
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (script, recorded, tx) = (script.clone(), recorded.clone(), tx.clone());
                tokio::spawn(serve(sock, script, recorded, tx));
            }
        });
        Fake {
            base,
            requests,
            closed,
        }
    }

    pub fn request(&self, i: usize) -> (String, Value, Instant) {
        let r = &self.requests.lock().unwrap()[i];
        (r.head.clone(), r.body.clone(), r.at)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Every request body so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }
}

async fn serve(
    mut sock: TcpStream,
    script: Arc<Script>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    closed: mpsc::UnboundedSender<()>,
) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    // The API calls are recorded and scripted; a GET (the gateway's
    // readiness probe, which it also sends once at startup) is answered
    // with an empty model list and not counted.
    let reply = if head.starts_with("GET ") {
        Reply::Status(200, json!({"object": "list", "data": []}).to_string())
    } else {
        let reply = script(&body);
        recorded.lock().unwrap().push(Recorded {
            head,
            body,
            at: Instant::now(),
        });
        reply
    };
    match reply {
        Reply::Status(code, body) => {
            let resp = format!(
                "HTTP/1.1 {code} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
        Reply::Raw(bytes) => {
            let _ = sock.write_all(bytes.as_bytes()).await;
        }
        Reply::Ndjson(lines) => {
            if write_chunks(&mut sock, "application/x-ndjson", &lines).await {
                let _ = sock.write_all(b"0\r\n\r\n").await;
                let _ = sock.read(&mut tmp).await;
            }
        }
        Reply::Sse { parts, hold } => {
            if !write_chunks(&mut sock, "text/event-stream", &parts).await {
                return;
            }
            if !hold {
                let _ = sock.write_all(b"0\r\n\r\n").await;
                let _ = sock.read(&mut tmp).await;
                return;
            }
            // Hold: keep the response open, writing SSE comments now and
            // then, until a read says the client closed its side.
            loop {
                tokio::select! {
                    r = sock.read(&mut tmp) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            let _ = closed.send(());
                            return;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        let comment = ": keepalive\n\n";
                        let chunk = format!("{:x}\r\n{comment}\r\n", comment.len());
                        if sock.write_all(chunk.as_bytes()).await.is_err() {
                            let _ = closed.send(());
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// A 200 head and each part as one HTTP chunk, a short pause between;
/// false once the client is gone.
async fn write_chunks(sock: &mut TcpStream, content_type: &str, parts: &[String]) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    if sock.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for part in parts {
        let chunk = format!("{:x}\r\n{part}\r\n", part.len());
        if sock.write_all(chunk.as_bytes()).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

// ------------------------------------------------------------ wire bytes

pub fn openai_chunk(delta: Value, finish: Value) -> String {
    let c = json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}],"usage":null});
    format!("data: {c}\n\n")
}

pub fn openai_stream() -> Vec<String> {
    let usage = json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"m","choices":[],
        "usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}});
    let all = [
        openai_chunk(json!({"role":"assistant","content":""}), Value::Null),
        openai_chunk(json!({"content":"Hello"}), Value::Null),
        openai_chunk(json!({"content":", wor"}), Value::Null),
        openai_chunk(json!({"content":"ld ✓"}), Value::Null),
        openai_chunk(json!({}), json!("stop")),
        format!("data: {usage}\n\n"),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    // Cut the wire bytes at places that do not line up with events.
    let bytes = all.as_bytes();
    let cuts = [0, 7, 150, 151, 333, 600, bytes.len()];
    cuts.windows(2)
        .map(|w| {
            String::from_utf8_lossy(&bytes[w[0].min(bytes.len())..w[1].min(bytes.len())])
                .into_owned()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

pub fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub fn anthropic_stream() -> Vec<String> {
    vec![
        anthropic_event(
            "message_start",
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":1}}}),
        ),
        anthropic_event(
            "content_block_start",
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ),
        anthropic_event("ping", json!({"type":"ping"})),
        anthropic_event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bon"}}),
        ),
        anthropic_event(
            "content_block_delta",
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"jour"}}),
        ),
        anthropic_event(
            "content_block_stop",
            json!({"type":"content_block_stop","index":0}),
        ),
        anthropic_event(
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}),
        ),
        anthropic_event("message_stop", json!({"type":"message_stop"})),
    ]
}

// ------------------------------------------------------------ helpers

pub fn provider_config(kind: ProviderKind, base: &str) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url: base.to_string(),
        default_model: "test-model".into(),
        api_key_env: KEY_ENV.into(),
        max_tokens_default: 321,
        ..ProviderConfig::default()
    }
}

/// A loopback port that refuses connections.
pub async fn refused_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    base
}

// ------------------------------------------------------------ socket.io client

/// A minimal Socket.IO v5 client over a websocket: enough to join `/ai`,
/// send one event and read events.
pub struct SioClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl SioClient {
    pub async fn connect(addr: std::net::SocketAddr) -> SioClient {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = SioClient { ws };
        c.ws.send(Message::text("40/ai,{}")).await.unwrap();
        c
    }

    pub async fn emit(&mut self, event: &str, data: Value) {
        let packet = format!("42/ai,{}", json!([event, data]));
        self.ws.send(Message::text(packet)).await.unwrap();
    }

    /// The next `/ai` event as (name, payload), answering pings.
    pub async fn next_event(&mut self) -> (String, Value) {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let text = text.as_str();
            if text == "2" {
                self.ws.send(Message::text("3")).await.unwrap();
            } else if let Some(rest) = text.strip_prefix("42/ai,") {
                let v: Value = serde_json::from_str(rest).unwrap();
                return (v[0].as_str().unwrap().to_string(), v[1].clone());
            }
        }
    }
}
