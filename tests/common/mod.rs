//! Shared test harness: the whole gateway on `127.0.0.1:0`, a fake Ollama
//! on loopback, and a raw Socket.IO client.
#![allow(dead_code)]

pub mod binary;
pub mod fake_ollama;
pub mod jwt;
pub mod node;
pub mod python;
pub mod sio;
pub mod sse;

use serde_json::Value;
use std::collections::BTreeMap;
use streamgate::{Config, Running};

/// A test config: ephemeral port, the fake upstream as `ollama`, no
/// fallback (tests that want one set it), fast simulated provider.
pub fn config_for(ollama_base: &str) -> Config {
    let mut c = Config::default();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.server.shutdown_grace_ms = 500;
    c.streams.first_token_timeout_ms = 2_000;
    // A dropped client's streams live on this long before they are
    // cancelled (tests of resume set it longer).
    c.session.reconnect_window_ms = 300;
    let o = c.providers.get_mut("ollama").expect("ollama");
    o.base_url = ollama_base.into();
    o.fallback.clear();
    let s = c.providers.get_mut("simulated").expect("simulated");
    s.tokens_per_second = 500.0;
    // Tests connect, emit and ack far faster than a person; the abuse
    // limits are tested on their own (tests/security.rs).
    c.limits = unlimited();
    c
}

/// Every rate limit and cap off.
pub fn unlimited() -> streamgate::config::RateLimitConfig {
    streamgate::config::RateLimitConfig {
        events_per_minute: 0,
        events_burst: 0,
        acks_per_minute: 0,
        acks_burst: 0,
        streams_per_minute: 0,
        streams_burst: 0,
        connections_per_minute: 0,
        connections_burst: 0,
        max_connections_per_address: 0,
        max_connections: 0,
        max_clients: 0,
        max_live_streams: 0,
        max_replay_bytes: 0,
    }
}

pub async fn start(config: Config) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        streamgate::telemetry::init_tracing();
    }
    streamgate::start(config).await.expect("gateway starts")
}

/// Events of one stream, in order, from a list of events.
pub fn of_stream<'a>(events: &'a [(String, Value)], id: &str) -> Vec<&'a (String, Value)> {
    events.iter().filter(|(_, p)| p["streamId"] == id).collect()
}

/// Check the protocol's order for one stream: start, tokens with counts
/// 1, 2, 3…, then exactly one terminal group, nothing after. Returns the
/// concatenated token text and the name of the terminal event.
pub fn check_stream_order(events: &[&(String, Value)]) -> (String, String) {
    assert!(!events.is_empty(), "no events for stream");
    assert_eq!(
        events[0].0, "ai:stream:start",
        "first event: {:?}",
        events[0]
    );
    let mut text = String::new();
    let mut count = 0u64;
    let mut i = 1;
    while i < events.len() && events[i].0 == "ai:token" {
        let p = &events[i].1;
        let tc = p["tokenCount"].as_u64().expect("tokenCount");
        assert!(tc > count, "tokenCount must grow: {count} then {tc}");
        count = tc;
        text.push_str(p["data"].as_str().expect("data"));
        i += 1;
    }
    let rest: Vec<&str> = events[i..].iter().map(|e| e.0.as_str()).collect();
    let terminal = match rest.as_slice() {
        ["ai:stream:complete", "ai:done"] => "ai:done",
        ["ai:stream:cancelled"] => "ai:stream:cancelled",
        ["ai:stream:error"] => "ai:stream:error",
        other => panic!("bad terminal sequence {other:?}"),
    };
    (text, terminal.to_string())
}

/// Group events by stream id.
pub fn by_stream(events: &[(String, Value)]) -> BTreeMap<String, Vec<&(String, Value)>> {
    let mut m: BTreeMap<String, Vec<&(String, Value)>> = BTreeMap::new();
    for e in events {
        if let Some(id) = e.1["streamId"].as_str() {
            m.entry(id.to_string()).or_default().push(e);
        }
    }
    m
}

pub fn is_terminal(name: &str) -> bool {
    matches!(name, "ai:done" | "ai:stream:cancelled" | "ai:stream:error")
}

pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_text(addr: std::net::SocketAddr, path: &str) -> String {
    let r = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    r.text().await.expect("body")
}

/// `/metrics` as text.
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    get_text(addr, "/metrics").await
}

/// The value of an unlabelled series in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}
