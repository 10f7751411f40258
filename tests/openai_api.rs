//! `POST /v1/chat/completions` and `GET /v1/models` with a real HTTP
//! client: OpenAI's exact shapes (chunks, `[DONE]`, the usage chunk, the
//! error object), model routing, and the gateway's headers. The official
//! SDKs are driven in tests/openai_sdks.rs.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sse::SseReader;
use common::*;
use serde_json::{Value, json};

fn scripted(prompt: &str) -> Script {
    match prompt {
        "unknown-model" => Script {
            status: 404,
            ..Script::tokens(1, 0)
        },
        _ => Script::tokens(6, 2),
    }
}

async fn completions(addr: std::net::SocketAddr, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth("anything: auth is off")
        .json(&body)
        .send()
        .await
        .expect("POST")
}

fn user(text: &str) -> Value {
    json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}])
}

#[tokio::test]
async fn a_non_streaming_completion_has_openais_shape() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let r = completions(
        gw.addr,
        json!({"model": "ollama/llama3.2", "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-streamgate-provider"], "ollama");
    assert!(
        r.headers()["x-streamgate-stream-id"]
            .to_str()
            .unwrap()
            .starts_with("s_")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "ollama/llama3.2");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        Script::tokens(6, 2).text()
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let u = &body["usage"];
    assert_eq!(
        u["total_tokens"],
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    let log = fake.log();
    assert_eq!(
        log[0].model, "llama3.2",
        "the model after the provider prefix goes upstream"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_streaming_completion_sends_chunks_usage_and_done() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let body = json!({"model": "llama3.2", "messages": user("hi"), "stream": true,
                      "stream_options": {"include_usage": true}});
    let r = completions(gw.addr, body).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = SseReader::new(r).all().await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<&Value> = events[..events.len() - 1].iter().map(|e| &e.json).collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks.iter().all(|c| c["id"] == chunks[0]["id"]),
        "one id per completion"
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, Script::tokens(6, 2).text());
    let last = chunks[chunks.len() - 1];
    assert_eq!(last["choices"], json!([]), "the usage chunk has no choices");
    assert!(last["usage"]["completion_tokens"].as_u64().is_some());
    let finish = chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn models_name_routes_and_unknown_ones_are_404s() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let (status, models) = get_json(gw.addr, "/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in [
        "streamgate/auto",
        "ollama/llama3.2",
        "simulated/simulated-1",
        "agent:explainer",
    ] {
        assert!(ids.contains(&want), "{want} in {ids:?}");
    }
    let r = completions(
        gw.addr,
        json!({"model": "agent:nosuch", "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(e["error"].get("param").is_some() && e["error"].get("message").is_some());
    let r = completions(
        gw.addr,
        json!({"model": "no-such-model", "messages": user("unknown-model")}),
    )
    .await;
    assert_eq!(r.status(), 404, "the upstream's 404 for the model");
    let r = completions(
        gw.addr,
        json!({"model": "agent:explainer", "messages": user("explain this")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        Script::tokens(6, 2).text()
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_use_openais_shape_and_statuses() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.auth.jwt_secret = "an-HS256-secret-of-at-least-32-bytes!".into();
    let gw = start(config).await;
    let r = completions(
        gw.addr,
        json!({"model": "ollama/x", "messages": user("hi")}),
    )
    .await;
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["type"], "authentication_error");
    let token = common::jwt::hs256("an-HS256-secret-of-at-least-32-bytes!", "alice");
    let send = |body: Value| {
        reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", gw.addr))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for (body, param) in [
        (json!({"model": "ollama/x"}), "messages"),
        (json!({"model": "ollama/x", "messages": []}), "messages"),
        (
            json!({"model": "ollama/x", "messages": user("hi"), "temperature": 3}),
            "temperature",
        ),
        (
            json!({"model": "ollama/x", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "ollama/x", "messages": [{"role": "assistant", "content": "x"}]}),
            "messages",
        ),
    ] {
        let r = send(body).await.unwrap();
        assert_eq!(r.status(), 400);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["param"], param, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    gw.shutdown().await.unwrap();
}
