//! The earlier designs' frontends through streamgate (PROTOCOL.md part 3).
//!
//! `frontends_of_the_earlier_designs` runs tests/js/dialects.test.mjs with
//! the official socket.io-client against two gateways (auth off, auth on)
//! and real fake upstreams: the fake Ollama (scripted by prompt, its
//! request bodies readable at `/_log`), a fake Anthropic for `claude` and
//! a fake OpenAI-compatible server configured as `gemini`; then checks the
//! request bodies the fakes recorded. The rest drive the guide's REST call
//! `POST /llm/chat` with reqwest, both modes, its refusals and its cancel.

mod common;
mod upstream_fakes;

use common::fake_ollama::{End, FakeOllama, Script};
use common::node::{ensure_npm, node_test, repo};
use common::sse::SseReader;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use streamgate::config::ProviderKind;
use upstream_fakes::{Fake, Reply, anthropic_stream, init, openai_stream, provider_config};

const SECRET: &str = "test-only-hs256-secret-for-the-dialect-tests";

/// `tokens` as a script, one token every 2 ms.
fn words(tokens: &[&str]) -> Script {
    Script {
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        ..Script::tokens(0, 2)
    }
}

/// The fake Ollama's replies, by prompt (tests/js/dialects.test.mjs lists
/// them too).
fn script(prompt: &str) -> Script {
    match prompt {
        p if p.starts_with("guide") => words(&["Hello", ", ", "wor", "ld!"]),
        p if p.starts_with("chat") => words(&["Hi", " there", "."]),
        p if p.starts_with("cancel") => Script::tokens(1000, 10),
        p if p.starts_with("fail") => Script {
            end: End::ErrorLine("model exploded"),
            ..words(&["Half", " an"])
        },
        "unavailable" => Script {
            status: 503,
            ..Script::tokens(0, 0)
        },
        _ => Script::tokens(5, 2),
    }
}

/// Fakes for `claude` (Anthropic) and `gemini` (OpenAI-compatible).
async fn cloud_fakes() -> (Fake, Fake) {
    init();
    let anthropic = Fake::start(Reply::Sse {
        parts: anthropic_stream(),
        hold: false,
    })
    .await;
    let gemini = Fake::start(Reply::Sse {
        parts: openai_stream(),
        hold: false,
    })
    .await;
    (anthropic, gemini)
}

fn config(ollama: &FakeOllama, anthropic: &Fake, gemini: &Fake) -> streamgate::Config {
    let mut c = config_for(&ollama.base_url());
    c.providers.insert(
        "anthropic".into(),
        provider_config(ProviderKind::Anthropic, &anthropic.base),
    );
    c.providers.insert(
        "gemini".into(),
        provider_config(ProviderKind::Openai, &gemini.base),
    );
    c
}

#[tokio::test]
async fn frontends_of_the_earlier_designs() {
    let js = repo().join("tests/js");
    ensure_npm(&js);
    let ollama = FakeOllama::start(script).await;
    let (anthropic, gemini) = cloud_fakes().await;
    let mut c = config(&ollama, &anthropic, &gemini);
    // Longer than any test waits: a closed `/` connection must not keep
    // its streams for it.
    c.session.reconnect_window_ms = 10_000;
    let open = start(c.clone()).await;
    c.auth.jwt_secret = SECRET.into();
    let authed = start(c).await;

    let run = node_test(
        &[js.join("dialects.test.mjs")],
        &[
            ("GATEWAY_URL", format!("http://{}", open.addr)),
            ("AUTH_GATEWAY_URL", format!("http://{}", authed.addr)),
            ("AUTH_TOKEN", common::jwt::hs256(SECRET, "alice")),
            ("FAKE_OLLAMA_URL", ollama.base_url()),
        ],
    )
    .await;
    assert!(run.success, "node tests failed");
    assert_eq!(
        (run.passed, run.failed),
        (16, 0),
        "expected 16 passing node tests"
    );

    // `claude` reached the Anthropic API with the frontend's messages (its
    // system message where that API takes it) and settings.
    assert_eq!(anthropic.count(), 1);
    let (head, body, _) = anthropic.request(0);
    assert!(head.starts_with("POST /v1/messages"), "{head}");
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["system"], "Answer in French.");
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": "Say hello"}])
    );
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["max_tokens"], 64);
    let (_, body, _) = gemini.request(0);
    assert_eq!(body["model"], "test-model");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Answer in French."},
               {"role": "user", "content": "Say hello"}])
    );
    authed.shutdown().await.expect("shutdown");
    open.shutdown().await.expect("shutdown");
}

async fn post(addr: SocketAddr, body: &Value, bearer: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/llm/chat"))
        .json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("POST /llm/chat")
}

fn hello(provider: &str, prompt: &str) -> Value {
    json!({
        "provider": provider,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
    })
}

#[tokio::test]
async fn llm_chat_answers_whole_and_as_server_sent_events() {
    let ollama = FakeOllama::start(script).await;
    let (anthropic, gemini) = cloud_fakes().await;
    let gw = start(config(&ollama, &anthropic, &gemini)).await;

    let r = post(gw.addr, &hello("ollama", "guide: whole"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.expect("body"),
        r#"{"provider":"ollama","model":"llama3.2","content":"Hello, world!","tokenCount":4,"usage":{"promptTokens":3,"completionTokens":4},"finishReason":"stop"}"#
    );
    let served = ollama.wait_for("guide: whole", |s| s.finished).await;
    assert_eq!(
        served.body["messages"],
        json!([{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "guide: whole"}])
    );

    let mut claude = hello("claude", "Say hello");
    claude["maxTokens"] = json!(32);
    let r = post(gw.addr, &claude, None).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.expect("json");
    assert_eq!(reply["provider"], "anthropic");
    assert_eq!(reply["content"], "Bonjour");
    assert_eq!(reply["finishReason"], "stop");
    assert_eq!(anthropic.request(0).1["max_tokens"], 32);

    let mut streamed = hello("ollama", "guide: streamed");
    streamed["stream"] = json!(true);
    let r = post(gw.addr, &streamed, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = SseReader::new(r).all().await;
    assert_eq!(events[0].event.as_deref(), Some("start"));
    assert_eq!(events[0].json["provider"], "ollama");
    let tokens: Vec<(Option<&str>, &Value, &Value)> = events[1..5]
        .iter()
        .map(|e| (e.id.as_deref(), &e.json["token"], &e.json["count"]))
        .collect();
    assert_eq!(
        tokens,
        [
            (Some("1"), &json!("Hello"), &json!(1)),
            (Some("2"), &json!(", "), &json!(2)),
            (Some("3"), &json!("wor"), &json!(3)),
            (Some("4"), &json!("ld!"), &json!(4)),
        ]
    );
    assert_eq!(events[5].json["done"], true);
    assert_eq!(events[5].json["tokens"], 4);
    assert_eq!(events.len(), 6);

    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["streams"]["byDialect"]["llmRest"], 3);
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn llm_chat_refuses_in_the_guides_shape() {
    let ollama = FakeOllama::start(script).await;
    let (anthropic, gemini) = cloud_fakes().await;
    let gw = start(config(&ollama, &anthropic, &gemini)).await;
    let refused = async |body: Value| {
        let r = post(gw.addr, &body, None).await;
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(
        refused(hello("deepseek", "hi")).await,
        (404, json!({"error": "Provider not found: deepseek"}))
    );
    let last_not_user =
        json!({"provider": "ollama", "messages": [{"role": "assistant", "content": "x"}]});
    assert_eq!(
        refused(last_not_user).await,
        (
            400,
            json!({"error": "messages must end with a user message (the prompt)"})
        )
    );
    let mut zero = hello("ollama", "hi");
    zero["maxTokens"] = json!(0);
    assert_eq!(
        refused(zero).await,
        (400, json!({"error": "maxTokens must be at least 1"}))
    );
    assert_eq!(
        refused(json!({"messages": []})).await,
        (400, json!({"error": "provider is required"}))
    );
    assert_eq!(
        refused(hello("ollama", "unavailable")).await,
        (
            502,
            json!({"error": "provider ollama could not be reached"})
        )
    );
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn llm_chat_takes_the_bearer_token_when_auth_is_on() {
    let ollama = FakeOllama::start(script).await;
    let (anthropic, gemini) = cloud_fakes().await;
    let mut c = config(&ollama, &anthropic, &gemini);
    c.auth.jwt_secret = SECRET.into();
    let gw = start(c).await;
    let r = post(gw.addr, &hello("ollama", "guide: authed"), None).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("unauthorized: ")),
        "{body}"
    );
    let token = common::jwt::hs256(SECRET, "alice");
    let r = post(gw.addr, &hello("ollama", "guide: authed"), Some(&token)).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.expect("json");
    assert_eq!(reply["content"], "Hello, world!");
    gw.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn llm_chat_closing_the_connection_closes_the_upstream() {
    let ollama = FakeOllama::start(script).await;
    let (anthropic, gemini) = cloud_fakes().await;
    let gw = start(config(&ollama, &anthropic, &gemini)).await;
    let mut body = hello("ollama", "cancel: rest");
    body["stream"] = json!(true);
    let mut sse = SseReader::new(post(gw.addr, &body, None).await);
    let first = sse.next_within(Duration::from_secs(5)).await;
    assert_eq!(first.and_then(|e| e.event).as_deref(), Some("start"));
    drop(sse);
    let served = ollama.wait_for("cancel: rest", |s| s.closed_early).await;
    assert!(served.tokens_written < 1000, "{served:?}");
    gw.shutdown().await.expect("shutdown");
}
