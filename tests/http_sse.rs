//! `POST /api/chat/stream` end to end with a real HTTP client: the gateway
//! on a port, a fake Ollama that is a real HTTP server writing NDJSON, and
//! the raw event stream read field by field (tests/common/sse.rs).

mod common;

use common::fake_ollama::{End, FakeOllama, Script};
use common::sse::SseReader;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn scripted(prompt: &str) -> Script {
    match prompt {
        "slow-first" => Script {
            first_delay: Duration::from_millis(1_200),
            ..Script::tokens(3, 5)
        },
        "breaks" => Script {
            end: End::ErrorLine("model crashed"),
            ..Script::tokens(4, 5)
        },
        "long" => Script::tokens(2_000, 5),
        "big" => Script::sized(2_000, 8_000, 0),
        _ => Script::tokens(8, 5),
    }
}

async fn post(addr: std::net::SocketAddr, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/chat/stream"))
        .json(&body)
        .send()
        .await
        .expect("POST")
}

fn tokens(events: &[common::sse::SseEvent]) -> (String, Vec<u64>) {
    let mut text = String::new();
    let mut ids = Vec::new();
    for e in events.iter().filter(|e| e.id.is_some()) {
        text.push_str(e.json["token"].as_str().expect("token"));
        let count = e.json["count"].as_u64().expect("count");
        assert_eq!(
            e.id.as_deref(),
            Some(count.to_string().as_str()),
            "id is the count"
        );
        ids.push(count);
    }
    (text, ids)
}

#[tokio::test]
async fn events_come_in_order_with_their_fields_and_headers() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let r = post(
        gw.addr,
        json!({"message": "hello", "use_orchestrator": false}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    let stream_id = h["x-stream-id"].to_str().unwrap().to_string();
    let events = SseReader::new(r).all().await;
    assert_eq!(events[0].event.as_deref(), Some("start"), "{events:?}");
    let start = &events[0].json;
    assert_eq!(start["stream_id"], stream_id.as_str());
    assert_eq!(start["provider"], "ollama");
    assert!(start["session_id"].is_null() && start["agent"].is_null() && start["intent"].is_null());
    let (text, ids) = tokens(&events);
    assert_eq!(text, Script::tokens(8, 5).text());
    assert_eq!(ids, (1..=8).collect::<Vec<u64>>());
    assert!(
        events.iter().all(|e| e.json.get("partial").is_none()),
        "partial is opt-in"
    );
    let done = &events.last().unwrap().json;
    assert_eq!(done["done"], true);
    assert_eq!(done["tokens"], 8);
    assert_eq!(done["finish_reason"], "stop");
    assert!(done["duration"].as_u64().is_some() && done["tokensPerSecond"].as_f64().is_some());
    assert!(done.get("usage").is_some() && done.get("session_id").is_some());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn partial_carries_the_text_so_far_when_asked() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let body = json!({"message": "hello", "use_orchestrator": false, "partial": true});
    let events = SseReader::new(post(gw.addr, body).await).all().await;
    let mut so_far = String::new();
    for e in events.iter().filter(|e| e.id.is_some()) {
        so_far.push_str(e.json["token"].as_str().unwrap());
        assert_eq!(e.json["partial"], so_far.as_str());
    }
    assert_eq!(so_far, Script::tokens(8, 5).text());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn keep_alive_comments_flow_while_the_first_token_is_slow() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.http.sse_keepalive_ms = 200;
    let gw = start(config).await;
    let body = json!({"message": "slow-first", "use_orchestrator": false});
    let mut reader = SseReader::new(post(gw.addr, body).await);
    let start = reader.next().await.expect("start");
    assert_eq!(start.event.as_deref(), Some("start"));
    let before = reader.comments.len();
    assert!(
        before >= 3,
        "keep-alives before the first token: {:?}",
        reader.comments
    );
    assert!(
        reader.comments.iter().all(|c| c == " keep-alive"),
        "{:?}",
        reader.comments
    );
    let rest = reader.all().await;
    assert_eq!(tokens(&rest).0, Script::tokens(3, 5).text());
    gw.shutdown().await.unwrap();
}

async fn refused(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert!(
        r.headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("application/json")),
        "a JSON refusal: {status} {:?}",
        r.headers()
    );
    (status, r.json().await.expect("JSON body"))
}

#[tokio::test]
async fn bad_requests_are_json_errors_naming_the_field() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.server.max_payload_bytes = 4_096;
    let gw = start(config).await;
    let url = format!("http://{}/api/chat/stream", gw.addr);
    let http = reqwest::Client::new();
    let raw = |body: &'static str, ct: &'static str| {
        http.post(&url).header("content-type", ct).body(body).send()
    };
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            raw("not json", "application/json").await.unwrap(),
            400,
            "body",
        ),
        (
            raw("{\"message\":\"x\"}", "text/plain").await.unwrap(),
            400,
            "content-type",
        ),
        (post(gw.addr, json!({})).await, 400, "message"),
        (post(gw.addr, json!({"message": ""})).await, 400, "message"),
        (
            post(gw.addr, json!({"message": "x", "temperature": 9})).await,
            400,
            "temperature",
        ),
        (
            post(gw.addr, json!({"message": "x", "max_tokens": 0})).await,
            400,
            "max_tokens",
        ),
        (
            post(gw.addr, json!({"message": "x".repeat(5_000)})).await,
            413,
            "body",
        ),
    ];
    for (r, status, field) in cases {
        let (got, body) = refused(r).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.limits.streams_per_minute = 1;
    config.limits.streams_burst = 1;
    config.auth.jwt_secret = "an-HS256-secret-of-at-least-32-bytes!".into();
    let gw = start(config).await;
    let token = common::jwt::hs256("an-HS256-secret-of-at-least-32-bytes!", "alice");
    let send = || {
        reqwest::Client::new()
            .post(format!("http://{}/api/chat/stream", gw.addr))
            .bearer_auth(&token)
            .json(&json!({"message": "hello", "use_orchestrator": false}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 200);
    SseReader::new(first).all().await;
    let second = send().await.unwrap();
    assert!(second.headers().get("retry-after").is_some(), "Retry-After");
    let (status, body) = refused(second).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bearer_token_is_required_when_auth_is_on() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.auth.jwt_secret = "an-HS256-secret-of-at-least-32-bytes!".into();
    let gw = start(config).await;
    let (status, body) = refused(post(gw.addr, json!({"message": "hello"})).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let bad = reqwest::Client::new()
        .post(format!("http://{}/api/chat/stream", gw.addr))
        .bearer_auth("not.a.jwt")
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(bad).await.0, 401);
    let token = common::jwt::hs256("an-HS256-secret-of-at-least-32-bytes!", "alice");
    let good = reqwest::Client::new()
        .post(format!("http://{}/api/chat/stream", gw.addr))
        .bearer_auth(token)
        .json(&json!({"message": "hello", "use_orchestrator": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    assert_eq!(
        tokens(&SseReader::new(good).all().await).0,
        Script::tokens(8, 5).text()
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failure_after_the_start_is_an_error_event_then_the_end() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let body = json!({"message": "breaks", "use_orchestrator": false});
    let events = SseReader::new(post(gw.addr, body).await).all().await;
    assert_eq!(events[0].event.as_deref(), Some("start"));
    assert_eq!(tokens(&events).0, Script::tokens(4, 5).text());
    let last = &events.last().unwrap().json;
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    assert_eq!(last["error"]["retryable"], true);
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ollama")
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn closing_the_connection_cancels_and_closes_the_upstream_at_once() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let body = json!({"message": "long", "use_orchestrator": false});
    let mut reader = SseReader::new(post(gw.addr, body).await);
    for _ in 0..4 {
        reader.next().await.expect("an event");
    }
    let closed_at = Instant::now();
    drop(reader);
    let served = fake.wait_for("long", |s| s.closed_early).await;
    let took = closed_at.elapsed();
    assert!(served.tokens_written < 2_000);
    assert!(
        took < Duration::from_secs(1),
        "upstream closed {took:?} after the client"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stats) = get_json(gw.addr, "/stats").await;
        if stats["streams"]["cancelled"] == 1 && stats["streams"]["active"] == 0 {
            assert_eq!(
                stats["clients"]["connected"], 0,
                "the HTTP client is forgotten"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_reader_stays_under_the_caps_and_gets_the_exact_text() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.backpressure.threshold = 8;
    config.backpressure.max_bytes_per_client = 64 * 1024;
    let gw = start(config).await;
    let body = json!({"message": "big", "use_orchestrator": false});
    let (head, mut reader) = SseReader::raw_post(gw.addr, "/api/chat/stream", &body, 4_096).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut events = vec![reader.next().await.expect("start")];
    // Stop reading: 16 MB are on their way, far more than the socket and
    // HTTP write buffers hold; the gateway must hold the rest within its
    // caps (coalescing, then holding the upstream back).
    let mut largest = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, stats) = get_json(gw.addr, "/stats").await;
        largest = largest.max(stats["queues"]["largestBytes"].as_u64().unwrap());
    }
    events.extend(reader.all().await);
    let (_, stats) = get_json(gw.addr, "/stats").await;
    // The cap is checked before each push: at most one token past it.
    assert!(
        largest > 0 && largest <= 64 * 1024 + 8_200,
        "queue bytes {largest}"
    );
    assert!(
        stats["tokens"]["coalesced"].as_u64().unwrap() > 0,
        "the policy engaged: {stats}"
    );
    let (text, ids) = tokens(&events);
    assert_eq!(
        text,
        Script::sized(2_000, 8_000, 0).text(),
        "nothing lost (coalesced)"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids.last() == Some(&2_000));
    assert!(ids.len() < 2_000, "fewer events than tokens: merged");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn session_id_keeps_the_conversation_and_a_busy_session_is_409() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let turn = |message: &'static str| {
        post(
            gw.addr,
            json!({"message": message, "session_id": "chat-1", "use_orchestrator": false}),
        )
    };
    let first = SseReader::new(turn("hello").await).all().await;
    assert_eq!(first[0].json["session_id"], "chat-1");
    assert_eq!(first.last().unwrap().json["session_id"], "chat-1");
    let mut live = SseReader::new(turn("long").await);
    live.next().await.expect("start");
    let busy = turn("again").await;
    let (status, body) = refused(busy).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("session_busy"))
    );
    drop(live);
    fake.wait_for("long", |s| s.closed_early).await;
    let (_, session) = get_json(gw.addr, "/api/chat/sessions/chat-1").await;
    let messages = session["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["content"], "hello");
    assert_eq!(messages[1]["content"], Script::tokens(8, 5).text());
    assert_eq!(messages[2]["content"], "long");
    gw.shutdown().await.unwrap();
}
