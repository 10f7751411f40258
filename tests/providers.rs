//! The `openai` and `anthropic` providers end to end against fake upstreams:
//! real HTTP/1.1 servers on loopback that read the request and write exact
//! wire bytes (chunked SSE, error bodies, mid-stream errors, usage chunks),
//! or hold the response open to see when the client closes the connection.
//! The last test runs the whole gateway over a raw Socket.IO websocket to
//! check fallback between them and that the events name who served.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};
use streamgate::Config;
use streamgate::config::{ProviderConfig, ProviderKind};
use streamgate::error::ProviderError;
use streamgate::protocol::{ChatMessage, Role, Usage};
use streamgate::providers::{Chunk, ChunkStream, Provider, ProviderSet, UpstreamRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const KEY_ENV: &str = "SG_TEST_PROVIDER_KEY";
const KEY: &str = "sk-test-0123456789abcdef";

/// Every test calls this before building a provider, so the variable is
/// set once, before any thread reads the environment.
fn init() {
    static ONCE: Once = Once::new();
    // SAFETY: runs once, and every test waits on it before doing anything
    // that reads the environment (reqwest reads proxy variables).
    ONCE.call_once(|| unsafe {
        std::env::set_var(KEY_ENV, KEY);
        std::env::set_var("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
    });
}

// ------------------------------------------------------------ fake upstream

/// What the fake answers one request with.
#[derive(Clone)]
enum Reply {
    /// A complete response with a JSON body.
    Status(u16, String),
    /// 200, `text/event-stream`, chunked: each part one HTTP chunk (with a
    /// short pause between), then the terminating chunk, or, with `hold`,
    /// nothing more: the connection stays open until the client closes it.
    Sse { parts: Vec<String>, hold: bool },
    /// These bytes as the whole response, then the connection closes.
    Raw(String),
}

struct Recorded {
    head: String,
    body: Value,
    at: Instant,
}

struct Fake {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// One message per held connection that the client closed.
    closed: mpsc::UnboundedReceiver<()>,
}

impl Fake {
    async fn start(reply: Reply) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (tx, closed) = mpsc::unbounded_channel();
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (reply, recorded, tx) = (reply.clone(), recorded.clone(), tx.clone());
                tokio::spawn(serve(sock, reply, recorded, tx));
            }
        });
        Fake {
            base,
            requests,
            closed,
        }
    }

    fn request(&self, i: usize) -> (String, Value, Instant) {
        let r = &self.requests.lock().unwrap()[i];
        (r.head.clone(), r.body.clone(), r.at)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve(
    mut sock: TcpStream,
    reply: Reply,
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
    recorded.lock().unwrap().push(Recorded {
        head,
        body,
        at: Instant::now(),
    });
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
        Reply::Sse { parts, hold } => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for part in parts {
                let chunk = format!("{:x}\r\n{part}\r\n", part.len());
                if sock.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
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

// ------------------------------------------------------------ wire bytes

fn openai_chunk(delta: Value, finish: Value) -> String {
    let c = json!({"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}],"usage":null});
    format!("data: {c}\n\n")
}

fn openai_stream() -> Vec<String> {
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

fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn anthropic_stream() -> Vec<String> {
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

fn provider_config(kind: ProviderKind, base: &str) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url: base.to_string(),
        default_model: "test-model".into(),
        api_key_env: KEY_ENV.into(),
        max_tokens_default: 321,
        ..ProviderConfig::default()
    }
}

fn provider(kind: ProviderKind, base: &str) -> Arc<dyn Provider> {
    init();
    let mut config = Config::default();
    config
        .providers
        .insert("p".into(), provider_config(kind, base));
    ProviderSet::from_config(&config)
        .unwrap()
        .get("p")
        .unwrap()
        .clone()
}

fn request() -> UpstreamRequest {
    UpstreamRequest {
        model: "test-model".into(),
        messages: vec![
            ChatMessage {
                role: Role::System,
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: Role::User,
                content: "Say hello".into(),
            },
        ],
        temperature: Some(0.5),
        max_tokens: None,
    }
}

async fn collect(mut stream: ChunkStream) -> Vec<Result<Chunk, ProviderError>> {
    let mut out = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
    {
        out.push(item);
    }
    out
}

fn tokens(items: &[Result<Chunk, ProviderError>]) -> String {
    items
        .iter()
        .filter_map(|c| match c {
            Ok(Chunk::Token(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

async fn open_err(p: &Arc<dyn Provider>) -> ProviderError {
    match p.open(request()).await {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// A loopback port that refuses connections.
async fn refused_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    base
}

// ------------------------------------------------------------ openai

#[test]
fn openai_base_url_env_adds_the_openai_provider() {
    init();
    let config = Config::load(None).unwrap();
    let p = &config.providers["openai"];
    assert_eq!(p.kind, ProviderKind::Openai);
    assert_eq!(p.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(p.default_model, "gpt-4o-mini");
    assert!(
        ProviderSet::from_config(&config)
            .unwrap()
            .get("openai")
            .is_some()
    );
}

#[tokio::test]
async fn openai_streams_tokens_finish_and_usage() {
    let fake = Fake::start(Reply::Sse {
        parts: openai_stream(),
        hold: false,
    })
    .await;
    let p = provider(ProviderKind::Openai, &fake.base);
    let items = collect(p.open(request()).await.unwrap()).await;
    assert_eq!(tokens(&items), "Hello, world ✓");
    assert_eq!(
        items.last().unwrap().as_ref().unwrap(),
        &Chunk::Done {
            finish_reason: "stop".into(),
            usage: Some(Usage {
                prompt_tokens: Some(11),
                completion_tokens: Some(3)
            })
        }
    );
    let (head, body, _) = fake.request(0);
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("authorization: bearer {KEY}")),
        "{head}"
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(
        body["messages"][0],
        json!({"role":"system","content":"Be brief."})
    );
    assert!(body.get("max_tokens").is_none());
}

#[tokio::test]
async fn openai_base_url_with_v1_is_not_doubled() {
    let fake = Fake::start(Reply::Sse {
        parts: openai_stream(),
        hold: false,
    })
    .await;
    let p = provider(ProviderKind::Openai, &format!("{}/v1/", fake.base));
    collect(p.open(request()).await.unwrap()).await;
    assert!(fake.request(0).0.starts_with("POST /v1/chat/completions "));
}

#[tokio::test]
async fn openai_error_statuses_map_to_fallback_or_not() {
    for (code, can_fall_back) in [
        (503, true),
        (500, true),
        (429, true),
        (400, false),
        (404, false),
    ] {
        let body =
            json!({"error":{"message":format!("no luck with {KEY}"),"type":"x","code":null}})
                .to_string();
        let fake = Fake::start(Reply::Status(code, body)).await;
        let p = provider(ProviderKind::Openai, &fake.base);
        let e = open_err(&p).await;
        assert_eq!(e.can_fall_back(), can_fall_back, "HTTP {code}: {e}");
        let text = format!("{e} {e:?}");
        assert!(text.contains("no luck with [redacted]"), "{text}");
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
}

#[tokio::test]
async fn openai_401_names_the_variable_not_the_key() {
    let body = json!({"error":{"message":format!("Incorrect API key provided: {}***", &KEY[..8]),"type":"invalid_request_error"}}).to_string();
    let fake = Fake::start(Reply::Status(401, body)).await;
    let p = provider(ProviderKind::Openai, &fake.base);
    let e = open_err(&p).await;
    assert!(!e.can_fall_back());
    let text = format!("{e:?}");
    assert!(
        text.contains(KEY_ENV) && !text.contains(&KEY[..8]),
        "{text}"
    );
}

#[tokio::test]
async fn openai_connect_refused_is_unavailable() {
    let p = provider(ProviderKind::Openai, &refused_base().await);
    let e = open_err(&p).await;
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e}");
}

#[tokio::test]
async fn openai_error_mid_stream_ends_the_stream_with_an_error() {
    let parts = vec![
        openai_chunk(json!({"content":"par"}), Value::Null),
        "data: {\"error\":{\"message\":\"upstream model crashed\",\"type\":\"server_error\"}}\n\n"
            .to_string(),
        openai_chunk(json!({"content":"never"}), Value::Null),
    ];
    let fake = Fake::start(Reply::Sse { parts, hold: false }).await;
    let p = provider(ProviderKind::Openai, &fake.base);
    let items = collect(p.open(request()).await.unwrap()).await;
    assert_eq!(tokens(&items), "par");
    assert_eq!(items.len(), 2);
    let e = items[1].as_ref().unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { .. }) && e.to_string().contains("model crashed"),
        "{e}"
    );
}

#[tokio::test]
async fn a_connection_broken_before_the_first_token_may_fall_back_and_after_it_fails() {
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    // A chunk announced longer than what arrives before the close.
    let fake = Fake::start(Reply::Raw(format!("{head}40\r\ndata: {{"))).await;
    let items = collect(
        provider(ProviderKind::Openai, &fake.base)
            .open(request())
            .await
            .unwrap(),
    )
    .await;
    assert!(
        items[0].as_ref().is_err_and(|e| e.can_fall_back()),
        "{items:?}"
    );
    let token = openai_chunk(json!({"content":"one"}), Value::Null);
    let fake = Fake::start(Reply::Raw(format!(
        "{head}{:x}\r\n{token}\r\n40\r\ndata: {{",
        token.len()
    )))
    .await;
    let items = collect(
        provider(ProviderKind::Openai, &fake.base)
            .open(request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tokens(&items), "one");
    assert!(
        items[1].as_ref().is_err_and(|e| !e.can_fall_back()),
        "{items:?}"
    );
}

#[tokio::test]
async fn openai_body_cut_before_finish_is_an_error() {
    let parts = vec![openai_chunk(json!({"content":"half"}), Value::Null)];
    let fake = Fake::start(Reply::Sse { parts, hold: false }).await;
    let p = provider(ProviderKind::Openai, &fake.base);
    let items = collect(p.open(request()).await.unwrap()).await;
    assert_eq!(tokens(&items), "half");
    assert!(items.last().unwrap().is_err());
}

#[tokio::test]
async fn openai_dropping_the_stream_closes_the_connection() {
    let parts = vec![openai_chunk(json!({"content":"first"}), Value::Null)];
    let mut fake = Fake::start(Reply::Sse { parts, hold: true }).await;
    let p = provider(ProviderKind::Openai, &fake.base);
    let mut stream = p.open(request()).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Chunk::Token("first".into())
    );
    drop(stream);
    tokio::time::timeout(Duration::from_secs(3), fake.closed.recv())
        .await
        .expect("the upstream connection was not closed after the stream was dropped");
}

// ------------------------------------------------------------ anthropic

#[tokio::test]
async fn anthropic_streams_tokens_finish_and_usage() {
    let fake = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let p = provider(ProviderKind::Anthropic, &fake.base);
    let items = collect(p.open(request()).await.unwrap()).await;
    assert_eq!(tokens(&items), "Bonjour");
    assert_eq!(
        items.last().unwrap().as_ref().unwrap(),
        &Chunk::Done {
            finish_reason: "stop".into(),
            usage: Some(Usage {
                prompt_tokens: Some(21),
                completion_tokens: Some(2)
            })
        }
    );
    let (head, body, _) = fake.request(0);
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("POST /v1/messages HTTP/1.1"), "{head}");
    assert!(lower.contains(&format!("x-api-key: {KEY}")), "{head}");
    assert!(lower.contains("anthropic-version: 2023-06-01"), "{head}");
    assert!(!lower.contains("authorization:"), "{head}");
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(
        body["messages"],
        json!([{"role":"user","content":"Say hello"}])
    );
    assert_eq!(body["max_tokens"], 321, "the configured default fills in");
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn anthropic_errors_before_and_during_the_stream() {
    for (code, can_fall_back) in [(529, true), (429, true), (400, false)] {
        let body =
            json!({"type":"error","error":{"type":"some_error","message":"nope"}}).to_string();
        let fake = Fake::start(Reply::Status(code, body)).await;
        let e = open_err(&provider(ProviderKind::Anthropic, &fake.base)).await;
        assert_eq!(e.can_fall_back(), can_fall_back, "HTTP {code}: {e}");
        assert!(e.to_string().contains("some_error: nope"), "{e}");
    }
    // Overloaded as the first event: fallback-able, so a chain moves on.
    let parts = vec![anthropic_event(
        "error",
        json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
    )];
    let fake = Fake::start(Reply::Sse { parts, hold: false }).await;
    let items = collect(
        provider(ProviderKind::Anthropic, &fake.base)
            .open(request())
            .await
            .unwrap(),
    )
    .await;
    assert!(
        items[0].as_ref().is_err_and(|e| e.can_fall_back()),
        "{:?}",
        items[0]
    );
    // Any other error after a token: the stream fails.
    let mut parts = anthropic_stream();
    parts.truncate(4);
    parts.push(anthropic_event(
        "error",
        json!({"type":"error","error":{"type":"api_error","message":"boom"}}),
    ));
    let fake = Fake::start(Reply::Sse { parts, hold: false }).await;
    let items = collect(
        provider(ProviderKind::Anthropic, &fake.base)
            .open(request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tokens(&items), "Bon");
    let e = items.last().unwrap().as_ref().unwrap_err();
    assert!(!e.can_fall_back() && e.to_string().contains("boom"), "{e}");
}

#[tokio::test]
async fn anthropic_connect_refused_is_unavailable() {
    let e = open_err(&provider(ProviderKind::Anthropic, &refused_base().await)).await;
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e}");
}

#[tokio::test]
async fn anthropic_dropping_the_stream_closes_the_connection() {
    let mut parts = anthropic_stream();
    parts.truncate(4);
    let mut fake = Fake::start(Reply::Sse { parts, hold: true }).await;
    let p = provider(ProviderKind::Anthropic, &fake.base);
    let mut stream = p.open(request()).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Chunk::Token("Bon".into())
    );
    drop(stream);
    tokio::time::timeout(Duration::from_secs(3), fake.closed.recv())
        .await
        .expect("the upstream connection was not closed after the stream was dropped");
}

// ------------------------------------------------------------ through the gateway

/// A minimal Socket.IO v5 client over a websocket: enough to join `/ai`,
/// send one event and read events.
struct SioClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

impl SioClient {
    async fn connect(addr: std::net::SocketAddr) -> SioClient {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = SioClient { ws };
        c.ws.send(Message::text("40/ai,{}")).await.unwrap();
        c
    }

    async fn emit(&mut self, event: &str, data: Value) {
        let packet = format!("42/ai,{}", json!([event, data]));
        self.ws.send(Message::text(packet)).await.unwrap();
    }

    /// The next `/ai` event as (name, payload), answering pings.
    async fn next_event(&mut self) -> (String, Value) {
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

#[tokio::test]
async fn gateway_falls_back_from_openai_to_anthropic_and_names_who_served() {
    init();
    let down = Fake::start(Reply::Status(
        503,
        json!({"error":{"message":"maintenance"}}).to_string(),
    ))
    .await;
    let up = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    let mut openai = provider_config(ProviderKind::Openai, &down.base);
    openai.fallback = vec!["anthropic".into()];
    config.providers.insert("openai".into(), openai);
    config.providers.insert(
        "anthropic".into(),
        provider_config(ProviderKind::Anthropic, &up.base),
    );
    config.routing.default_provider = "openai".into();
    config.routing.fallback_backoff_ms = 150;
    let running = streamgate::start(config).await.unwrap();

    let mut client = SioClient::connect(running.addr).await;
    assert_eq!(client.next_event().await.0, "ai:connected");
    client
        .emit(
            "ai:stream",
            json!({"prompt":"Explain this code","streamId":"s1","agentContext":{"language":"rust","selection":"let x = 1;"}}),
        )
        .await;
    let mut events = Vec::new();
    loop {
        let (name, data) = client.next_event().await;
        let end = name == "ai:done" || name == "ai:stream:error";
        events.push((name, data));
        if end {
            break;
        }
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"ai:stream:start"), "{events:?}");
    assert_eq!(
        names[names.len() - 2..],
        ["ai:stream:complete", "ai:done"],
        "{events:?}"
    );
    let start = &events[0].1;
    assert_eq!(start["provider"], "anthropic");
    assert_eq!(start["agent"], "explainer");
    assert_eq!(start["intent"], "explain");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "ai:token")
        .map(|(_, d)| {
            assert_eq!(d["agent"], "explainer");
            d["data"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Bonjour");
    let complete = &events[events.len() - 2].1;
    assert_eq!(complete["agent"], "explainer");
    assert_eq!(complete["intent"], "explain");
    assert!(
        complete["confidence"].as_f64().is_some_and(|c| c > 0.3),
        "{complete}"
    );
    assert_eq!(
        events.last().unwrap().1["usage"],
        json!({"promptTokens":21,"completionTokens":2})
    );

    // The fallback waited the backoff, and the agent's system prompt went up.
    assert_eq!((down.count(), up.count()), (1, 1));
    let gap = up.request(0).2 - down.request(0).2;
    assert!(gap >= Duration::from_millis(150), "backoff {gap:?}");
    let (_, body, _) = up.request(0);
    let system = body["system"].as_str().unwrap();
    assert!(
        system.contains("Language: rust") && system.contains("let x = 1;"),
        "{system}"
    );

    let stats: Value = reqwest::get(format!("http://{}/stats", running.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["routing"]["agents"]["explainer"], 1, "{stats}");
    assert_eq!(stats["providers"]["openai"]["errors"], 1, "{stats}");
    let metrics = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("streamgate_routing_agent_total{agent=\"explainer\"} 1"),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}

/// A gateway on loopback whose default provider is `openai` at `openai_base`,
/// falling back to `anthropic` at `anthropic_base`.
async fn gateway(
    openai_base: &str,
    anthropic_base: &str,
    first_token_timeout_ms: u64,
) -> streamgate::Running {
    init();
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.streams.first_token_timeout_ms = first_token_timeout_ms;
    let mut openai = provider_config(ProviderKind::Openai, openai_base);
    openai.fallback = vec!["anthropic".into()];
    config.providers.insert("openai".into(), openai);
    config.providers.insert(
        "anthropic".into(),
        provider_config(ProviderKind::Anthropic, anthropic_base),
    );
    config.routing.default_provider = "openai".into();
    streamgate::start(config).await.unwrap()
}

#[tokio::test]
async fn gateway_falls_back_on_first_token_timeout_and_closes_the_silent_upstream() {
    // Answers 200 and then says nothing.
    let mut silent = Fake::start(Reply::Sse {
        parts: vec![],
        hold: true,
    })
    .await;
    let up = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let running = gateway(&silent.base, &up.base, 300).await;
    let mut client = SioClient::connect(running.addr).await;
    assert_eq!(client.next_event().await.0, "ai:connected");
    client
        .emit(
            "ai:stream",
            json!({"prompt":"hi there","useOrchestrator":false}),
        )
        .await;
    let (name, start) = client.next_event().await;
    assert_eq!(name, "ai:stream:start");
    assert_eq!(start["provider"], "anthropic");
    assert!(start["agent"].is_null() && start["intent"].is_null());
    tokio::time::timeout(Duration::from_secs(3), silent.closed.recv())
        .await
        .expect("the silent upstream's connection was closed after the first-token timeout");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn gateway_cancel_closes_the_openai_upstream() {
    let parts = vec![openai_chunk(json!({"content":"first"}), Value::Null)];
    let mut held = Fake::start(Reply::Sse { parts, hold: true }).await;
    let running = gateway(&held.base, &refused_base().await, 5_000).await;
    let mut client = SioClient::connect(running.addr).await;
    assert_eq!(client.next_event().await.0, "ai:connected");
    client
        .emit(
            "ai:stream",
            json!({"prompt":"Write a parser","streamId":"c1"}),
        )
        .await;
    let (name, start) = client.next_event().await;
    assert_eq!(
        (name.as_str(), &start["agent"]),
        ("ai:stream:start", &json!("coder"))
    );
    assert_eq!(client.next_event().await.1["data"], "first");
    client.emit("ai:cancel", json!({"streamId":"c1"})).await;
    let (name, cancelled) = client.next_event().await;
    assert_eq!(
        (name.as_str(), &cancelled["reason"]),
        ("ai:stream:cancelled", &json!("client"))
    );
    tokio::time::timeout(Duration::from_secs(3), held.closed.recv())
        .await
        .expect("cancel closed the upstream connection");
    running.shutdown().await.unwrap();
}

/// A gateway serving from `anthropic` at `serve_base`, with the LLM router
/// asking the `classifier` (openai kind) at `classifier_base`.
async fn gateway_with_llm_router(serve_base: &str, classifier_base: &str) -> streamgate::Running {
    init();
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.providers.insert(
        "anthropic".into(),
        provider_config(ProviderKind::Anthropic, serve_base),
    );
    config.providers.insert(
        "classifier".into(),
        provider_config(ProviderKind::Openai, classifier_base),
    );
    config.routing.default_provider = "anthropic".into();
    config.routing.llm_provider = "classifier".into();
    config.routing.llm_timeout_ms = 400;
    streamgate::start(config).await.unwrap()
}

/// Send one orchestrated prompt; the events up to `ai:done`.
async fn one_stream(running: &streamgate::Running, prompt: &str) -> Vec<(String, Value)> {
    let mut client = SioClient::connect(running.addr).await;
    assert_eq!(client.next_event().await.0, "ai:connected");
    client.emit("ai:stream", json!({ "prompt": prompt })).await;
    let mut events = Vec::new();
    loop {
        let (name, data) = client.next_event().await;
        let end = name == "ai:done" || name == "ai:stream:error";
        events.push((name, data));
        if end {
            return events;
        }
    }
}

#[tokio::test]
async fn llm_router_picks_the_agent_when_the_rules_are_unsure() {
    let classifier = Fake::start(Reply::Sse {
        parts: vec![
            openai_chunk(json!({"content":"fix"}), Value::Null),
            openai_chunk(json!({}), json!("stop")),
            "data: [DONE]\n\n".into(),
        ],
        hold: false,
    })
    .await;
    let serve = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let running = gateway_with_llm_router(&serve.base, &classifier.base).await;

    // The rules are sure of this one: the classifier is not asked.
    let events = one_stream(&running, "Explain this code").await;
    assert_eq!(events[0].1["agent"], "explainer");
    assert_eq!(classifier.count(), 0);

    // Nothing matches "it keeps happening": the classifier says "fix".
    let events = one_stream(&running, "it keeps happening").await;
    assert_eq!(events[0].1["agent"], "debugger", "{events:?}");
    assert_eq!(events[0].1["intent"], "fix");
    let complete = &events[events.len() - 2].1;
    assert_eq!(
        (&complete["agent"], &complete["confidence"]),
        (&json!("debugger"), &json!(0.9))
    );
    let (_, asked, _) = classifier.request(0);
    assert!(
        asked["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("- fix: "),
        "{asked}"
    );
    assert_eq!(asked["messages"][1]["content"], "it keeps happening");
    let (_, served, _) = serve.request(1);
    assert!(
        served["system"].as_str().unwrap().contains("debugger"),
        "{served}"
    );

    let stats: Value = reqwest::get(format!("http://{}/stats", running.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["routing"]["agents"]["debugger"], 1, "{stats}");
    assert_eq!(stats["routing"]["lowConfidence"], 0, "{stats}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn llm_router_timeout_leaves_the_default_agent() {
    let mut classifier = Fake::start(Reply::Sse {
        parts: vec![],
        hold: true,
    })
    .await;
    let serve = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let running = gateway_with_llm_router(&serve.base, &classifier.base).await;
    let started = Instant::now();
    let events = one_stream(&running, "it keeps happening").await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(events[0].1["agent"], "assistant", "{events:?}");
    assert_eq!(events.last().unwrap().0, "ai:done");
    tokio::time::timeout(Duration::from_secs(3), classifier.closed.recv())
        .await
        .expect("the classifier request was closed at the timeout");
    running.shutdown().await.unwrap();
}
