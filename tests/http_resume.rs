//! Resumable SSE: a `"resumable": true` stream survives its connection
//! and continues on `GET /api/chat/stream/{id}` with `Last-Event-ID`,
//! every position exactly once; refusals; window expiry; `DELETE`.

mod common;

use common::fake_ollama::{End, FakeOllama, Script};
use common::sse::{SseEvent, SseReader};
use common::*;
use serde_json::json;
use std::time::Duration;

const SECRET: &str = "an-HS256-secret-of-at-least-32-bytes!";

fn scripted(prompt: &str) -> Script {
    match prompt {
        "forever" => Script {
            end: End::Hang,
            ..Script::tokens(3, 5)
        },
        _ => Script::tokens(60, 10),
    }
}

fn config(fake: &FakeOllama, window_ms: u64) -> streamgate::Config {
    let mut c = config_for(&fake.base_url());
    c.session.reconnect_window_ms = window_ms;
    c.auth.jwt_secret = SECRET.into();
    c
}

async fn open(addr: std::net::SocketAddr, user: &str, message: &str) -> (String, SseReader) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/chat/stream"))
        .bearer_auth(common::jwt::hs256(SECRET, user))
        .json(&json!({"message": message, "use_orchestrator": false, "resumable": true}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-stream-id"].to_str().unwrap().to_string();
    (id, SseReader::new(r))
}

async fn resume(
    addr: std::net::SocketAddr,
    user: &str,
    id: &str,
    last: Option<u64>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("http://{addr}/api/chat/stream/{id}"))
        .bearer_auth(common::jwt::hs256(SECRET, user));
    if let Some(n) = last {
        req = req.header("Last-Event-ID", n.to_string());
    }
    req.send().await.expect("GET")
}

fn counts(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.json["count"].as_u64())
        .collect()
}

fn text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter_map(|e| e.json["token"].as_str())
        .collect()
}

#[tokio::test]
async fn a_cut_stream_resumes_after_last_event_id_exactly_once() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config(&fake, 5_000)).await;
    let (id, mut reader) = open(gw.addr, "alice", "cut").await;
    let mut seen = Vec::new();
    while counts(&seen).len() < 7 {
        seen.push(reader.next().await.expect("event"));
    }
    drop(reader);
    let last = *counts(&seen).last().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = resume(gw.addr, "alice", &id, Some(last)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-stream-id"], id.as_str());
    let rest = SseReader::new(r).all().await;
    let mut all = seen.clone();
    all.extend(rest.iter().cloned());
    // Tokens already queued when the writer takes are sent as one event
    // (the coalesced form): positions only grow, the text is exact.
    let positions = counts(&all);
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions only grow: {positions:?}"
    );
    assert_eq!(positions[..7], [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(positions.last(), Some(&60));
    assert_eq!(
        text(&all),
        Script::tokens(60, 10).text(),
        "every token once"
    );
    assert_eq!(rest.last().unwrap().json["done"], true);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn refusals_another_user_unknown_stream_and_after_the_window() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config(&fake, 300)).await;
    let (id, mut reader) = open(gw.addr, "alice", "short").await;
    reader.next().await.expect("start");
    drop(reader);
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(resume(gw.addr, "mallory", &id, Some(0)).await), 404);
    assert_eq!(
        status(resume(gw.addr, "alice", "s_nosuch", Some(0)).await),
        404
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let late = resume(gw.addr, "alice", &id, Some(0)).await;
    assert_eq!(late.status(), 404);
    let body: serde_json::Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_stream");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_window_running_out_closes_the_upstream() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config(&fake, 300)).await;
    let (_, mut reader) = open(gw.addr, "alice", "forever").await;
    reader.next().await.expect("start");
    drop(reader);
    let served = fake.wait_for("forever", |s| s.closed_early).await;
    assert!(!served.finished);
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["streams"]["active"], 0, "{stats}");
    assert_eq!(stats["clients"]["detached"], 0, "{stats}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn delete_cancels_and_only_the_owner_may() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config(&fake, 5_000)).await;
    let (id, mut reader) = open(gw.addr, "alice", "forever").await;
    reader.next().await.expect("start");
    let delete = |user: &str| {
        reqwest::Client::new()
            .delete(format!("http://{}/api/chat/stream/{id}", gw.addr))
            .bearer_auth(common::jwt::hs256(SECRET, user))
            .send()
    };
    let theirs = delete("mallory").await.unwrap();
    assert_eq!(theirs.status(), 403);
    let body: serde_json::Value = theirs.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(delete("alice").await.unwrap().status(), 204);
    let rest = reader.all().await;
    let last = &rest.last().expect("a last event").json;
    assert_eq!(last["error"]["code"], "cancelled", "{last}");
    assert_eq!(last["error"]["reason"], "client");
    fake.wait_for("forever", |s| s.closed_early).await;
    assert_eq!(delete("alice").await.unwrap().status(), 404, "already over");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_plain_stream_is_not_resumable() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config(&fake, 5_000)).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/chat/stream", gw.addr))
        .bearer_auth(common::jwt::hs256(SECRET, "alice"))
        .json(&json!({"message": "forever", "use_orchestrator": false}))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-stream-id"].to_str().unwrap().to_string();
    let mut reader = SseReader::new(r);
    reader.next().await.expect("start");
    assert_eq!(resume(gw.addr, "alice", &id, Some(0)).await.status(), 404);
    drop(reader);
    fake.wait_for("forever", |s| s.closed_early).await;
    gw.shutdown().await.unwrap();
}
