//! Every bad payload gets an error naming the field and the rule, with the
//! protocol's code, over a live socket that stays connected.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn bad_stream_requests_table() {
    let fake = FakeOllama::start(|p| {
        if p == "slow" {
            Script::tokens(500, 20)
        } else {
            Script::tokens(3, 1)
        }
    })
    .await;
    let mut config = config_for(&fake.base_url());
    config.streams.max_prompt_chars = 100;
    config.streams.max_tokens_limit = 1000;
    config.streams.max_messages = 2;
    config.streams.max_agent_context_bytes = 64;
    config.streams.allowed_models = vec!["llama3".into(), "codellama".into()];
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;

    let long = "x".repeat(101);
    let big_ctx = json!({"selection": "y".repeat(100)});
    // (payload, code, field, a word the rule must contain)
    let table: Vec<(Value, &str, &str, &str)> = vec![
        (json!({}), "invalid_request", "prompt", "required"),
        (json!({"prompt": 5}), "invalid_request", "prompt", "string"),
        (
            json!({"prompt": ""}),
            "invalid_request",
            "prompt",
            "non-empty",
        ),
        (json!({"prompt": long}), "invalid_request", "prompt", "100"),
        (
            json!({"prompt": "x", "temperature": 2.5}),
            "invalid_request",
            "temperature",
            "2.0",
        ),
        (
            json!({"prompt": "x", "temperature": -0.1}),
            "invalid_request",
            "temperature",
            "0.0",
        ),
        (
            json!({"prompt": "x", "temperature": "hot"}),
            "invalid_request",
            "temperature",
            "f64",
        ),
        (
            json!({"prompt": "x", "maxTokens": 0}),
            "invalid_request",
            "maxTokens",
            "at least 1",
        ),
        (
            json!({"prompt": "x", "maxTokens": 1001}),
            "invalid_request",
            "maxTokens",
            "1000",
        ),
        (
            json!({"prompt": "x", "maxTokens": -3}),
            "invalid_request",
            "maxTokens",
            "u32",
        ),
        (
            json!({"prompt": "x", "streamId": "has space"}),
            "invalid_request",
            "streamId",
            "[A-Za-z0-9_.:-]",
        ),
        (
            json!({"prompt": "x", "streamId": "a".repeat(65)}),
            "invalid_request",
            "streamId",
            "1..=64",
        ),
        (
            json!({"prompt": "x", "streamId": ""}),
            "invalid_request",
            "streamId",
            "1..=64",
        ),
        (
            json!({"prompt": "x", "messages": "hi"}),
            "invalid_request",
            "messages",
            "sequence",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "robot", "content": "c"}]}),
            "invalid_request",
            "messages[0].role",
            "robot",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "user"}]}),
            "invalid_request",
            "messages[0].content",
            "required",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}]}),
            "invalid_request",
            "messages",
            "at most 2",
        ),
        (
            json!({"prompt": "x", "agentContext": big_ctx}),
            "invalid_request",
            "agentContext",
            "64 bytes",
        ),
        (
            json!({"prompt": "x", "agentContext": "App.js"}),
            "invalid_request",
            "agentContext",
            "map",
        ),
        (
            json!({"prompt": "x", "useOrchestrator": "yes"}),
            "invalid_request",
            "useOrchestrator",
            "boolean",
        ),
        (
            json!("just a string"),
            "invalid_request",
            "payload",
            "JSON object",
        ),
        (json!([1, 2]), "invalid_request", "payload", "JSON object"),
        (
            json!({"prompt": "x", "model": "gpt-9"}),
            "model_not_allowed",
            "model",
            "llama3",
        ),
        (
            json!({"prompt": "x", "provider": "nope"}),
            "invalid_request",
            "provider",
            "ollama",
        ),
    ];
    let n = table.len();
    for (payload, code, field, word) in table {
        let ack = c.emit_ack("ai:stream", payload.clone()).await;
        assert_eq!(ack["ok"], false, "{payload}");
        assert_eq!(ack["error"]["code"], code, "{payload}: {ack}");
        let msg = ack["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{payload}: message {msg:?} must name {field}"
        );
        let (name, ev) = c.next_event().await.unwrap();
        assert_eq!(name, "ai:error", "{payload}");
        assert_eq!(ev["code"], code);
        assert_eq!(ev["details"]["field"], field, "{payload}: {ev}");
        let rule = ev["details"]["rule"].as_str().unwrap_or(msg);
        assert!(
            rule.contains(word) || msg.contains(word),
            "{payload}: {ev} lacks {word:?}"
        );
    }
    println!("{n} bad payloads answered with the right code and field");

    // Live-stream rules: duplicate id, too many streams.
    let ack = c
        .emit_ack("ai:stream", json!({"prompt": "slow", "streamId": "dup"}))
        .await;
    assert_eq!(ack["ok"], true);
    let ack = c
        .emit_ack("ai:stream", json!({"prompt": "slow", "streamId": "dup"}))
        .await;
    assert_eq!(ack["error"]["code"], "duplicate_stream_id");
    assert_eq!(next_error(&mut c).await["details"]["streamId"], "dup");
    for i in 0..9 {
        let ack = c
            .emit_ack(
                "ai:stream",
                json!({"prompt": "slow", "streamId": format!("m{i}")}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = c.emit_ack("ai:stream", json!({"prompt": "slow"})).await;
    assert_eq!(ack["error"]["code"], "too_many_streams");
    assert!(ack["error"]["message"].as_str().unwrap().contains("10"));
    assert_eq!(next_error(&mut c).await["code"], "too_many_streams");

    // Cancel and heartbeat payloads.
    c.emit("ai:cancel", json!({})).await;
    let ev = next_error(&mut c).await;
    assert_eq!(
        (ev["code"].as_str(), ev["details"]["field"].as_str()),
        (Some("invalid_request"), Some("streamId"))
    );
    c.emit("ai:cancel", json!({"streamId": "never"})).await;
    let ev = next_error(&mut c).await;
    assert_eq!(ev["code"], "unknown_stream");
    c.emit("ai:heartbeat", json!(7)).await;
    let ev = next_error(&mut c).await;
    assert_eq!(ev["details"]["field"], "payload");
    c.emit("ai:launch", json!({})).await;
    let ev = next_error(&mut c).await;
    assert_eq!(ev["details"]["field"], "event");
    // An event with no payload at all names the missing field. (A frame
    // that is not a Socket.IO packet at all closes the connection, as the
    // reference server does; clients never send one.)
    c.send_raw("42/ai,[\"ai:stream\"]".into()).await;
    let ev = next_error(&mut c).await;
    assert_eq!(ev["details"]["field"], "prompt");

    assert!(
        c.still_open(Duration::from_millis(300)).await,
        "connection dropped"
    );
    c.emit("ai:cancel", json!({"streamId": "dup"})).await;
    let evs = c
        .events_until(|n, p| n == "ai:stream:cancelled" && p["streamId"] == "dup")
        .await;
    assert_eq!(evs.last().unwrap().1["reason"], "client");
    gw.shutdown().await.unwrap();
}

async fn next_error(c: &mut SioClient) -> Value {
    loop {
        let (name, ev) = c.next_event().await.unwrap();
        if name == "ai:error" {
            return ev;
        }
    }
}

#[tokio::test]
async fn handshake_with_bad_policy_is_refused() {
    let fake = FakeOllama::start(|_| Script::tokens(1, 1)).await;
    let gw = start(config_for(&fake.base_url())).await;
    match SioClient::connect(gw.addr, json!({"backpressurePolicy": "explode"})).await {
        Err(common::sio::ConnectError::Refused(msg)) => {
            assert!(msg.contains("backpressurePolicy"), "{msg}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|c| c.connected)),
    }
    let c = SioClient::connect(gw.addr, json!({"backpressurePolicy": "drop"}))
        .await
        .unwrap();
    assert_eq!(c.connected["backpressurePolicy"], "drop");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_agent_fields_table() {
    let fake = FakeOllama::start(|_| Script::tokens(1, 1)).await;
    let gw = start(config_for(&fake.base_url())).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let tool = |name: &str| json!({"name": name, "parameters": {"type": "object"}});
    let many: Vec<Value> = (0..129).map(|i| tool(&format!("t{i}"))).collect();
    let huge = json!([{"name": "big", "parameters": {"type": "object", "description": "d".repeat(65 * 1024)}}]);
    let user_image = |image: Value| json!([{"role": "user", "content": [{"type": "text", "text": "see"}, image]}]);
    // (payload, field, a word the rule must contain)
    let table: Vec<(Value, &str, &str)> = vec![
        (
            json!({"prompt": "x", "tools": "read_file"}),
            "tools",
            "sequence",
        ),
        (
            json!({"prompt": "x", "tools": many}),
            "tools",
            "at most 128",
        ),
        (
            json!({"prompt": "x", "tools": [{"name": "read file"}]}),
            "tools[0].name",
            "[A-Za-z0-9_-]",
        ),
        (
            json!({"prompt": "x", "tools": [{"name": ""}]}),
            "tools[0].name",
            "1..=64",
        ),
        (
            json!({"prompt": "x", "tools": [{"parameters": {}}]}),
            "tools[0].name",
            "required",
        ),
        (
            json!({"prompt": "x", "tools": [tool("a"), tool("a")]}),
            "tools[1].name",
            "unique",
        ),
        (
            json!({"prompt": "x", "tools": [{"name": "a", "parameters": [1]}]}),
            "tools[0].parameters",
            "JSON Schema object",
        ),
        (
            json!({"prompt": "x", "tools": huge}),
            "tools[0].parameters",
            "65536 bytes",
        ),
        (
            json!({"prompt": "x", "tools": [tool("a")], "toolChoice": "sometimes"}),
            "toolChoice",
            "auto, none, required",
        ),
        (
            json!({"prompt": "x", "tools": [tool("a")], "toolChoice": {"name": "b"}}),
            "toolChoice.name",
            "one of tools",
        ),
        (
            json!({"prompt": "x", "toolChoice": "required"}),
            "toolChoice",
            "needs tools",
        ),
        (
            json!({"prompt": "x", "reasoning": {"effort": "extreme"}}),
            "reasoning.effort",
            "extreme",
        ),
        (
            json!({"prompt": "x", "reasoning": {"budgetTokens": 10}}),
            "reasoning.budgetTokens",
            "1024",
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "prompt",
            "tool results",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "42"}]}),
            "messages[0].toolCallId",
            "required",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "user", "content": "a", "toolCalls": [
            {"id": "c", "name": "a", "arguments": "{}"}]}]}),
            "messages[0].toolCalls",
            "assistant",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "assistant", "content": "", "toolCalls": [
            {"id": "c", "name": "a", "arguments": "{not json"}]}]}),
            "messages[0].toolCalls[0].arguments",
            "JSON object",
        ),
        (
            json!({"prompt": "x", "messages": [{"role": "assistant", "content": "", "toolCalls": [
            {"id": "", "name": "a", "arguments": "{}"}]}]}),
            "messages[0].toolCalls[0].id",
            "1..=256",
        ),
        (
            json!({"prompt": "x", "messages": user_image(json!({"type": "image", "mediaType": "image/tiff", "data": "AAAA"}))}),
            "messages[0].content[1].mediaType",
            "image/png",
        ),
        (
            json!({"prompt": "x", "messages": user_image(json!({"type": "image", "mediaType": "image/png", "data": "not base64!"}))}),
            "messages[0].content[1].data",
            "base64",
        ),
        (
            json!({"prompt": "x", "messages": user_image(json!({"type": "image", "url": "file:///etc/passwd"}))}),
            "messages[0].content[1].url",
            "http(s)",
        ),
        (
            json!({"prompt": "x", "messages": user_image(json!({"type": "image"}))}),
            "messages[0].content[1]",
            "data (with mediaType) or url",
        ),
        (
            json!({"prompt": "x", "messages": user_image(json!({"type": "video", "url": "https://x"}))}),
            "messages[0].content",
            "video",
        ),
        (
            json!({"prompt": "x", "sessionId": "s1", "messages": [{"role": "assistant", "content": "earlier"}]}),
            "messages",
            "sessionId",
        ),
    ];
    for (payload, field, word) in table {
        let ack = c.emit_ack("ai:stream", payload.clone()).await;
        assert_eq!(ack["ok"], false, "{payload}");
        assert_eq!(ack["error"]["code"], "invalid_request", "{payload}: {ack}");
        let ev = next_error(&mut c).await;
        assert_eq!(ev["details"]["field"], field, "{payload}: {ev}");
        let rule = ev["details"]["rule"].as_str().unwrap_or("");
        let msg = ev["error"].as_str().unwrap_or("");
        assert!(
            rule.contains(word) || msg.contains(word),
            "{payload}: {ev} lacks {word:?}"
        );
    }
    assert!(fake.log().is_empty(), "nothing reached the upstream");
    assert!(
        c.still_open(Duration::from_millis(200)).await,
        "connection dropped"
    );
    gw.shutdown().await.unwrap();
}
