//! The `openai` and `anthropic` providers end to end against fake upstreams
//! (tests/upstream_fakes): tokens, finish reasons and usage from exact wire
//! bytes, error statuses and bodies mapped to fall-back-able or not, keys
//! kept out of errors, mid-stream errors, and the upstream connection
//! closed when a stream is dropped.

mod upstream_fakes;

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use streamgate::Config;
use streamgate::config::ProviderKind;
use streamgate::error::ProviderError;
use streamgate::protocol::{ChatMessage, Role, Usage};
use streamgate::upstream::{Chunk, ChunkStream, Provider, ProviderSet, UpstreamRequest};
use upstream_fakes::*;

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
            ChatMessage::text(Role::System, "Be brief."),
            ChatMessage::text(Role::User, "Say hello"),
        ],
        temperature: Some(0.5),
        max_tokens: None,
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        reasoning: None,
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
                completion_tokens: Some(3),
                ..Usage::default()
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
                completion_tokens: Some(2),
                ..Usage::default()
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
