//! Engine.IO sessions, below `/ai`: bare handshakes (which never join a
//! namespace, so no namespace middleware sees them) are limited per real
//! client address and per process, counted in `/stats` while they live and
//! released when they end; behind a trusted reverse proxy the real client
//! address is the one its `X-Forwarded-For` / `Forwarded` header names, for
//! every per-address limit.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sio::{ConnectError, SioClient};
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// A bare polling handshake (what the field trial sent 60,000 times), with
/// optional extra headers: the status and the body.
async fn handshake(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let client = reqwest::Client::new();
    let mut req = client.get(format!("http://{addr}/socket.io/?EIO=4&transport=polling"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("handshake request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, r.text().await.unwrap_or_default(), retry)
}

async fn connections_live(addr: SocketAddr) -> u64 {
    let (_, stats) = get_json(addr, "/stats").await;
    stats["connections"]["live"]
        .as_u64()
        .expect("connections.live in /stats")
}

/// Wait until `/stats` shows `n` live sessions.
async fn until_live(addr: SocketAddr, n: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let live = connections_live(addr).await;
        if live == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections.live stayed {live}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(fake: &FakeOllama) -> streamgate::Config {
    let mut c = config_for(&fake.base_url());
    c.limits.max_connections_per_address = 20;
    c.limits.max_connections = 30;
    // A session that joins no namespace is closed after this.
    c.server.connect_timeout_ms = 400;
    c
}

#[tokio::test]
async fn bare_handshakes_are_capped_per_address_counted_and_freed() {
    let fake = FakeOllama::start(|_| Script::tokens(3, 1)).await;
    let gw = start(config(&fake)).await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..100 {
        let (status, body, retry) = handshake(gw.addr, &[]).await;
        if status == 200 {
            assert!(body.starts_with('0') && body.contains("\"sid\""), "{body}");
            accepted += 1;
        } else {
            refused.push((status, body, retry));
        }
    }
    println!(
        "100 bare handshakes from one address: {accepted} accepted, {} refused",
        refused.len()
    );
    assert_eq!(accepted, 20, "the per-address cap");
    let (status, body, retry) = &refused[0];
    assert_eq!(*status, 429, "{body}");
    let body: Value = serde_json::from_str(body).expect("a JSON refusal");
    assert_eq!(body["code"], "server_busy", "{body}");
    assert!(body["message"].as_str().unwrap().contains("20"), "{body}");
    assert!(retry.is_some(), "Retry-After");

    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["connections"]["live"], 20, "{stats}");
    assert_eq!(stats["connections"]["largestPerAddress"], 20, "{stats}");
    assert_eq!(stats["refused"]["connections"], 80, "{stats}");
    let metrics = metrics_text(gw.addr).await;
    assert!(
        metrics.contains("streamgate_connections_live 20"),
        "{metrics}"
    );

    // Nobody joined /ai: the connect timeout closes them, and what they
    // held is given back (the count follows the sessions' own memory).
    until_live(gw.addr, 0, Duration::from_secs(5)).await;
    let (status, _, _) = handshake(gw.addr, &[]).await;
    assert_eq!(status, 200, "room again once they ended");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn websocket_sessions_and_ai_clients_count_until_they_close() {
    let fake = FakeOllama::start(|_| Script::tokens(3, 1)).await;
    let mut config = config(&fake);
    config.server.connect_timeout_ms = 10_000;
    let gw = start(config).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(SioClient::connect_ok(gw.addr).await);
    }
    assert_eq!(connections_live(gw.addr).await, 5);
    for c in clients.drain(..3) {
        c.close().await;
    }
    until_live(gw.addr, 2, Duration::from_secs(5)).await;
    // The cap counts WebSocket sessions too.
    for _ in 0..18 {
        clients.push(SioClient::connect_ok(gw.addr).await);
    }
    match SioClient::connect(gw.addr, json!({})).await {
        Err(ConnectError::Other(e)) => assert!(e.contains("429"), "{e}"),
        Err(ConnectError::Refused(m)) => panic!("refused at /ai, not at the handshake: {m}"),
        Ok(_) => panic!("a 21st session from one address was accepted"),
    }
    for c in clients {
        c.close().await;
    }
    until_live(gw.addr, 0, Duration::from_secs(5)).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_an_untrusted_one_does_not() {
    let fake = FakeOllama::start(|_| Script::tokens(3, 1)).await;
    // Untrusted (the default): every request is the proxy's own.
    let gw = start(config(&fake)).await;
    let mut accepted = 0;
    for i in 0..40 {
        let xff = format!("203.0.113.{}", i % 4);
        if handshake(gw.addr, &[("x-forwarded-for", &xff)]).await.0 == 200 {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted, 20,
        "an untrusted peer's X-Forwarded-For is ignored"
    );
    gw.shutdown().await.unwrap();

    // Trusted: each client address has its own cap, and the process cap
    // holds across them.
    let mut config = config(&fake);
    config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    let gw = start(config).await;
    let a = [("x-forwarded-for", "198.51.100.7, 203.0.113.1")];
    let b = [("forwarded", "for=\"[2001:db8::5]:4711\";proto=https")];
    let statuses_a: Vec<u16> = futures_for(gw.addr, &a, 21).await;
    assert_eq!(statuses_a.iter().filter(|s| **s == 200).count(), 20);
    assert_eq!(statuses_a[20], 429, "the 21st from one client address");
    let statuses_b: Vec<u16> = futures_for(gw.addr, &b, 11).await;
    assert_eq!(statuses_b.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses_b[10], 503, "the process cap of 30");
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["connections"]["addresses"], 2, "{stats}");
    gw.shutdown().await.unwrap();
}

async fn futures_for(addr: SocketAddr, headers: &[(&str, &str)], n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(handshake(addr, headers).await.0);
    }
    out
}

#[tokio::test]
async fn per_address_limits_of_ai_use_the_forwarded_address() {
    let fake = FakeOllama::start(|_| Script::tokens(3, 1)).await;
    let mut config = config_for(&fake.base_url());
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    // One per minute: nothing refills while the test runs.
    config.limits.connections_per_minute = 1;
    config.limits.connections_burst = 2;
    config.limits.streams_per_minute = 1;
    config.limits.streams_burst = 2;
    let gw = start(config).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut a1 = SioClient::connect_with_headers(gw.addr, json!({}), &from("198.51.100.1"))
        .await
        .expect("a first connection");
    let mut a2 = SioClient::connect_with_headers(gw.addr, json!({}), &from("198.51.100.1"))
        .await
        .expect("a second connection");
    // The third from that address is refused, at the Engine.IO handshake.
    let third = SioClient::connect_with_headers(gw.addr, json!({}), &from("198.51.100.1")).await;
    assert!(
        third.is_err(),
        "third connection from one client address accepted"
    );
    let mut b = SioClient::connect_with_headers(gw.addr, json!({}), &from("198.51.100.2"))
        .await
        .expect("another client address has its own budget");

    // With auth off, the stream budget is the address's, not the
    // connection's: a second connection does not get a fresh one.
    for c in [&mut a1, &mut a2] {
        let ack = c.emit_ack("ai:stream", json!({"prompt": "x"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = a2.emit_ack("ai:stream", json!({"prompt": "x"})).await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    let msg = ack["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("address"),
        "auth is off: the message names the address: {msg}"
    );
    assert!(
        ack["error"]["details"]["retryAfterMs"].as_u64().unwrap() > 0,
        "{ack}"
    );
    let ack = b.emit_ack("ai:stream", json!({"prompt": "x"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The limiters' state is shown too: two addresses, each with a
    // session, a join and a stream budget.
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["limits"]["trackedKeys"], 6, "{stats}");
    gw.shutdown().await.unwrap();
}
