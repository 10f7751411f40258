//! What the gateway holds as a whole, and what one client may hold: the
//! replay record of a client that never acks (bounded in bytes across all
//! its streams, ended ones included, and shown in `/stats`), and the
//! process-wide caps on clients, replay bytes and live streams (per
//! provider too), each refused with a clear code when reached.

mod common;

use common::fake_ollama::{End, FakeOllama, Script};
use common::sio::{ConnectError, SioClient};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn scripted(prompt: &str) -> Script {
    match prompt {
        p if p.starts_with("hang") => Script {
            end: End::Hang,
            ..Script::tokens(1, 1)
        },
        // 400 tokens of ~100 bytes, fast.
        "huge" => Script::sized(400, 100, 0),
        // 200 tokens of ~100 bytes, fast.
        _ => Script::sized(200, 100, 0),
    }
}

/// Run streams `ids` of `prompt` at once, reading everything until each
/// has ended, acking nothing.
/// Run the streams `ids` of `prompt` at once; the events received.
async fn run_batch(c: &mut SioClient, ids: &[String], prompt: &str) -> Vec<(String, Value)> {
    for id in ids {
        let ack = c
            .emit_ack("ai:stream", json!({"prompt": prompt, "streamId": id}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let mut open = ids.len();
    let mut events = Vec::new();
    while open > 0 {
        let (name, p) = c.next_event().await.expect("connected");
        if is_terminal(&name) && ids.iter().any(|id| p["streamId"] == id.as_str()) {
            open -= 1;
        }
        events.push((name, p));
    }
    events
}

/// The positions and the text of the `ai:token`s of `stream` in `events`.
fn tokens_of(events: &[(String, Value)], stream: &str) -> (Vec<u64>, String) {
    let tokens = events
        .iter()
        .filter(|(n, p)| n == "ai:token" && p["streamId"] == stream);
    let positions = tokens.clone().filter_map(|(_, p)| p["tokenCount"].as_u64());
    let text = tokens.filter_map(|(_, p)| p["data"].as_str()).collect();
    (positions.collect(), text)
}

/// Run `n` streams of `prompt`, ten at a time (the most a client may run).
async fn run_prompt(c: &mut SioClient, prefix: &str, n: usize, prompt: &str) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for batch in ids.chunks(10) {
        run_batch(c, batch, prompt).await;
    }
}

#[tokio::test]
async fn a_client_that_never_acks_holds_a_bounded_replay_and_stats_show_it() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.session.replay_bytes_per_client = 64 * 1024;
    // The per-client cap is under test, not the smaller per-stream one a
    // client that never acked has (which alone would keep 32 KiB a stream).
    config.session.replay_unacked_bytes = config.session.replay_buffer_bytes;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    // 40 streams of ~20 KB of text each; the client never acks, so before
    // a resume everything sent might be asked for again.
    run_prompt(&mut c, "r", 39, "big").await;
    let newest = run_batch(&mut c, &["r39".to_string()], "big").await;
    let (_, stats) = get_json(gw.addr, "/stats").await;
    let replay = stats["queues"]["replayBytes"]
        .as_u64()
        .expect("replayBytes");
    let largest = stats["queues"]["largestReplayBytes"]
        .as_u64()
        .expect("largestReplayBytes");
    println!("replay held for a client that never acked 40 streams: {replay} bytes");
    assert!(replay > 32 * 1024, "what it holds is shown: {stats}");
    // The cap, plus a start and a terminal event of each stream kept.
    assert!(replay <= 64 * 1024 + 33 * 2 * 512, "bounded: {replay}");
    assert_eq!(largest, replay, "one client holds it all");
    let metrics = metrics_text(gw.addr).await;
    assert!(
        metrics.contains(&format!("streamgate_replay_bytes_largest {largest}")),
        "{metrics}"
    );
    // Resume still works for what is kept: the newest stream is replayed
    // from a position the client received (events may carry several
    // tokens each; the replay gives back the same events).
    let (sent, _) = tokens_of(&newest, "r39");
    let cut = sent.len().saturating_sub(4);
    let last = sent[cut - 1];
    let id = c.connected["clientId"].as_str().unwrap().to_string();
    let token = c.connected["resumeToken"].as_str().unwrap().to_string();
    c.close().await;
    let mut back = SioClient::connect_ok(gw.addr).await;
    back.emit(
        "ai:reconnect",
        json!({"previousClientId": id, "resumeToken": token,
               "streams": [{"streamId": "r39", "lastTokenCount": last}]}),
    )
    .await;
    let events = back
        .events_until(|n, p| is_terminal(n) && p["streamId"] == "r39")
        .await;
    // Sent again, they may merge into fewer events (the writer's take
    // merges what is queued): the same text, ending at the same position.
    let (replayed, text) = tokens_of(&events, "r39");
    assert!(
        replayed.iter().all(|&p| p > last),
        "{replayed:?} after {last}"
    );
    assert_eq!(replayed.last(), sent.last(), "up to the end");
    let followed: String = newest
        .iter()
        .filter(|(n, p)| {
            n == "ai:token" && p["streamId"] == "r39" && p["tokenCount"].as_u64() > Some(last)
        })
        .filter_map(|(_, p)| p["data"].as_str())
        .collect();
    assert_eq!(text, followed, "exactly what followed {last}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_process_caps_replay_bytes_and_says_so() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.limits.max_replay_bytes = 48 * 1024;
    config.session.replay_unacked_bytes = config.session.replay_buffer_bytes;
    let gw = start(config).await;
    let mut a = SioClient::connect_ok(gw.addr).await;
    let mut b = SioClient::connect_ok(gw.addr).await;
    // ~90 KB sent, nothing acked: the record gives up its oldest entries
    // to stay under the process's cap.
    run_prompt(&mut a, "a", 1, "huge").await;
    let (_, stats) = get_json(gw.addr, "/stats").await;
    let replay = stats["queues"]["replayBytes"].as_u64().unwrap();
    println!("replay held after ~90 KB unacked under a 48 KiB cap: {replay} bytes");
    assert!(replay > 40 * 1024, "{stats}");
    assert!(
        replay <= 48 * 1024,
        "the process total stays at its cap: {replay}"
    );
    // Nearly full: new streams are refused, with the cap named.
    let ack = b.emit_ack("ai:stream", json!({"prompt": "big"})).await;
    assert_eq!(ack["error"]["code"], "server_busy", "{ack}");
    assert_eq!(
        ack["error"]["details"]["limit"], "max_replay_bytes",
        "{ack}"
    );
    let e = b.events_until(|n, _| n == "ai:error").await;
    assert_eq!(e.last().unwrap().1["code"], "server_busy");
    // Once the client acks, the memory is free and streams start again.
    a.emit("ai:ack", json!({"streamId": "a0", "tokenCount": 400}))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ack = b.emit_ack("ai:stream", json!({"prompt": "big"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_process_caps_clients() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.limits.max_clients = 3;
    config.session.reconnect_window_ms = 300;
    let gw = start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(SioClient::connect_ok(gw.addr).await);
    }
    let refused = match SioClient::connect(gw.addr, json!({})).await {
        Err(ConnectError::Refused(m)) => m,
        other => panic!("a 4th client: {:?}", other.map(|c| c.connected)),
    };
    assert!(refused.starts_with("server_busy:"), "{refused}");
    assert!(refused.contains('3'), "{refused}");
    // A detached client still counts (its streams and replay are held)
    // until its reconnect window ends.
    held.pop().unwrap().close().await;
    assert!(SioClient::connect(gw.addr, json!({})).await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    SioClient::connect(gw.addr, json!({}))
        .await
        .expect("room once the window ended");
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert!(
        stats["refused"]["capacity"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    gw.shutdown().await.unwrap();
}

async fn hang(c: &mut SioClient, id: &str) -> Value {
    c.emit_ack(
        "ai:stream",
        json!({"prompt": format!("hang-{id}"), "streamId": id}),
    )
    .await
}

#[tokio::test]
async fn the_process_and_each_provider_cap_live_streams() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.limits.max_live_streams = 3;
    let gw = start(config).await;
    let mut a = SioClient::connect_ok(gw.addr).await;
    let mut b = SioClient::connect_ok(gw.addr).await;
    for id in ["1", "2"] {
        assert_eq!(hang(&mut a, id).await["ok"], true);
    }
    assert_eq!(hang(&mut b, "3").await["ok"], true);
    let ack = hang(&mut b, "4").await;
    assert_eq!(ack["error"]["code"], "too_many_streams", "{ack}");
    let msg = ack["error"]["message"].as_str().unwrap();
    assert!(msg.contains("gateway") && msg.contains('3'), "{msg}");
    let e = b.events_until(|n, _| n == "ai:error").await;
    assert_eq!(e.last().unwrap().1["details"]["scope"], "gateway");
    // One ends: room for one more.
    a.emit("ai:cancel", json!({"streamId": "1"})).await;
    a.events_until(|n, _| n == "ai:stream:cancelled").await;
    assert_eq!(hang(&mut b, "5").await["ok"], true);
    gw.shutdown().await.unwrap();

    // Per provider: ollama takes 2; the third falls back when the route
    // has a fallback, and is refused when it has none.
    let mut config = config_for(&fake.base_url());
    config.providers.get_mut("ollama").unwrap().max_streams = 2;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for id in ["p1", "p2"] {
        assert_eq!(hang(&mut c, id).await["ok"], true);
    }
    let ack = hang(&mut c, "p3").await;
    assert_eq!(ack["error"]["code"], "too_many_streams", "{ack}");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("ollama"),
        "{ack}"
    );
    gw.shutdown().await.unwrap();

    let mut config = config_for(&fake.base_url());
    config.providers.get_mut("ollama").unwrap().max_streams = 2;
    config.providers.get_mut("ollama").unwrap().fallback = vec!["simulated".into()];
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for id in ["q1", "q2", "q3"] {
        assert_eq!(hang(&mut c, id).await["ok"], true);
    }
    let events = c
        .events_until(|n, p| n == "ai:stream:start" && p["streamId"] == "q3")
        .await;
    assert_eq!(events.last().unwrap().1["provider"], "simulated");
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["providers"]["ollama"]["liveStreams"], 2, "{stats}");
    gw.shutdown().await.unwrap();
}
