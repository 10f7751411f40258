//! Routing and fallback through the whole gateway, over a raw Socket.IO
//! websocket against fake upstreams (tests/upstream_fakes): fallback from
//! one provider to the next (on 5xx, on first-token timeout) with the
//! events naming who served and which agent, `ai:cancel` closing the
//! upstream connection, and the optional LLM router.

mod upstream_fakes;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use streamgate::Config;
use streamgate::config::ProviderKind;
use upstream_fakes::*;

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
