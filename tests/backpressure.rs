//! Backpressure end to end: slow, stalled and credit-starved clients over
//! real sockets, a fake Ollama that records how its writes were held back,
//! and `/stats` for what the gateway holds.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn scripted(prompt: &str) -> Script {
    match prompt {
        // 200 tokens/s each.
        p if p.starts_with("steady") => Script::tokens(300, 5),
        // Big tokens, as fast as TCP lets them go.
        p if p.starts_with("flood") => Script::sized(2_000, 4_096, 0),
        p if p.starts_with("heavy") => Script::sized(200, 8_192, 1),
        p if p.starts_with("normal") => Script::tokens(50, 5),
        _ => Script::tokens(10, 1),
    }
}

fn bp_config(fake: &FakeOllama) -> streamgate::Config {
    let mut c = config_for(&fake.base_url());
    c.backpressure.threshold = 20;
    c.backpressure.ack_window = 32;
    c.backpressure.max_bytes_per_client = 256 * 1024;
    c.server.ping_interval_ms = 300;
    c.server.ping_timeout_ms = 2_000;
    c.streams.stream_timeout_ms = 60_000;
    // Time the client holds a stream back is not upstream idleness: the
    // slow readers below would trip this otherwise.
    c.streams.idle_timeout_ms = 500;
    c
}

/// Read every event until each of `ids` has its terminal event, one
/// event per `every`, acking tokens as they are read.
async fn read_slowly(
    c: &mut SioClient,
    ids: &[&str],
    every: Duration,
    ack: bool,
) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut open: Vec<&str> = ids.to_vec();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "slow reader timed out");
        let (name, p) = c.next_event().await.expect("still connected");
        if name == "ai:token" && ack {
            c.ack_token(&p).await;
        }
        if is_terminal(&name) {
            open.retain(|id| p["streamId"] != *id);
        }
        events.push((name, p));
        tokio::time::sleep(every).await;
    }
    events
}

fn notices(events: &[(String, Value)]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e.0 == "ai:backpressure")
        .map(|e| &e.1)
        .collect()
}

#[tokio::test]
async fn coalesce_keeps_a_slow_reader_connected_and_loses_nothing() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(bp_config(&fake)).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    assert_eq!(c.connected["backpressurePolicy"], "coalesce");
    assert_eq!(c.connected["ackWindow"], 32);
    c.emit("ai:stream", json!({"prompt": "steady-1", "streamId": "a"}))
        .await;
    c.emit("ai:stream", json!({"prompt": "steady-2", "streamId": "b"}))
        .await;
    // Upstream: 2 × 200 tokens/s; the client reads 40 events/s, a tenth.
    let started = Instant::now();
    let mut events = read_slowly(&mut c, &["a", "b"], Duration::from_millis(25), true).await;
    // Stay around for the relieved notice (at most a second after engaged).
    while let Some(ev) = c.next_event_within(Duration::from_millis(1500)).await {
        events.push(ev);
    }
    assert!(
        started.elapsed() > Duration::from_millis(900),
        "ran past several ping intervals"
    );
    assert!(!c.disconnected && c.still_open(Duration::from_millis(700)).await);

    let streams = by_stream(&events);
    for id in ["a", "b"] {
        let (text, end) = check_stream_order(&streams[id]);
        assert_eq!(end, "ai:done");
        assert_eq!(
            text,
            Script::tokens(300, 5).text(),
            "stream {id} lost or reordered tokens"
        );
        assert_eq!(streams[id].last().unwrap().1["droppedTokens"], 0);
    }
    let merged: Vec<u64> = events
        .iter()
        .filter_map(|e| e.1["metadata"]["coalesced"].as_u64())
        .collect();
    assert!(!merged.is_empty(), "nothing was coalesced");
    let n = notices(&events);
    assert!(n.len() >= 2, "notices: {n:?}");
    assert_eq!(n[0]["state"], "engaged");
    assert_eq!(n[0]["policy"], "coalesce");
    assert_eq!(n[0]["threshold"], 20);
    assert!(n[0]["queueSize"].as_u64().unwrap() >= 20);
    assert_eq!(n.last().unwrap()["state"], "relieved");

    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert!(stats["tokens"]["coalesced"].as_u64().unwrap() > 0);
    assert!(stats["backpressure"]["events"].as_u64().unwrap() >= 1);
    assert_eq!(stats["backpressure"]["engagedClients"], 0);
    assert_eq!(stats["tokens"]["dropped"], 0);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn drop_counts_what_it_dropped_and_repairs_with_full_response() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(bp_config(&fake)).await;
    let mut c = SioClient::connect(gw.addr, json!({"backpressurePolicy": "drop"}))
        .await
        .unwrap();
    assert_eq!(c.connected["backpressurePolicy"], "drop");
    c.emit("ai:stream", json!({"prompt": "steady-d", "streamId": "d"}))
        .await;
    let events = read_slowly(&mut c, &["d"], Duration::from_millis(25), true).await;
    let mine = of_stream(&events, "d");
    let (text, end) = check_stream_order(&mine);
    assert_eq!(end, "ai:done");
    let done = &mine.last().unwrap().1;
    let dropped = done["droppedTokens"].as_u64().unwrap();
    assert!(dropped > 0, "nothing dropped: {done}");
    let full = Script::tokens(300, 5).text();
    assert_eq!(done["fullResponse"], full.as_str());
    assert_eq!(done["totalTokens"], 300);
    // What arrived is the upstream text minus exactly the dropped tokens.
    let received = mine.iter().filter(|e| e.0 == "ai:token").count() as u64;
    assert_eq!(received + dropped, 300);
    assert!(full.len() > text.len());
    let n = notices(&events);
    assert_eq!(n[0]["state"], "engaged");
    assert!(n.iter().any(|n| n["droppedTokens"].as_u64().unwrap() > 0) || dropped > 0);
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["tokens"]["dropped"], dropped);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_holds_the_upstream_back_and_loses_nothing() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(bp_config(&fake)).await;
    let mut c = SioClient::connect(gw.addr, json!({"backpressurePolicy": "slow"}))
        .await
        .unwrap();
    c.emit("ai:stream", json!({"prompt": "heavy", "streamId": "h"}))
        .await;
    // 200 tokens of 8 KiB the upstream could send in 0.2 s; the client
    // reads 50 events/s, so the stream takes about 4 s.
    let events = read_slowly(&mut c, &["h"], Duration::from_millis(20), true).await;
    let (text, end) = check_stream_order(&of_stream(&events, "h"));
    assert_eq!(end, "ai:done");
    assert_eq!(text, Script::sized(200, 8_192, 1).text());
    assert!(
        events.iter().all(|e| e.1["metadata"].is_null()),
        "slow must not coalesce"
    );
    let served = fake.wait_for("heavy", |s| s.finished).await;
    assert!(
        // Unhindered it writes in about 0.2 s; kernel buffers, the outbox
        // and the ack window absorb about 1 MB, the rest waits for the reader.
        served.write_span_ms > 1_000,
        "the upstream was not held back: it wrote everything in {} ms: {served:?}",
        served.write_span_ms
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stalled_client_is_capped_then_dropped_and_others_are_not_slowed() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = bp_config(&fake);
    config.backpressure.slow_client_timeout_ms = 3_000;
    let gw = start(config).await;
    // Ten clients that never read again after their first events.
    let mut stalled = Vec::new();
    for i in 0..10 {
        let mut c = SioClient::connect_ok(gw.addr).await;
        let ack = c
            .emit_ack(
                "ai:stream",
                json!({"prompt": format!("flood-{i}"), "streamId": "f"}),
            )
            .await;
        assert_eq!(ack["ok"], true);
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One normal client beside them: 50 tokens at 5 ms, about 0.25 s.
    let mut normal = SioClient::connect_ok(gw.addr).await;
    let t0 = Instant::now();
    normal
        .emit("ai:stream", json!({"prompt": "normal", "streamId": "n"}))
        .await;
    let events = normal.events_until(|n, _| is_terminal(n)).await;
    let took = t0.elapsed();
    let (text, end) = check_stream_order(&of_stream(&events, "n"));
    assert_eq!(
        (text.as_str(), end.as_str()),
        (Script::tokens(50, 5).text().as_str(), "ai:done")
    );
    assert!(
        took < Duration::from_secs(2),
        "normal client slowed to {took:?}"
    );

    // What the gateway holds for the stalled clients stays under the caps.
    let mut max_events = 0;
    let mut max_bytes = 0;
    let t1 = Instant::now();
    let mut connected = 11;
    while t1.elapsed() < Duration::from_secs(8) {
        let (_, stats) = get_json(gw.addr, "/stats").await;
        max_events = max_events.max(stats["queues"]["largest"].as_u64().unwrap());
        max_bytes = max_bytes.max(stats["queues"]["largestBytes"].as_u64().unwrap());
        connected = stats["clients"]["connected"].as_u64().unwrap();
        if connected <= 1 {
            break;
        }
        // The normal client keeps reading (and answering pings) meanwhile.
        assert!(normal.still_open(Duration::from_millis(50)).await);
    }
    // threshold + a start and a terminal event per stream + control events.
    assert!(max_events <= 20 + 2 + 64, "largest queue {max_events}");
    assert!(
        max_bytes <= 256 * 1024 + 2 * 8_192,
        "largest queue bytes {max_bytes}"
    );
    assert!(
        connected <= 1,
        "stalled clients still connected: {connected}"
    );
    // Their upstreams were closed.
    for i in 0..10 {
        fake.wait_for(&format!("flood-{i}"), |s| s.closed_early)
            .await;
    }
    assert!(
        normal.still_open(Duration::from_millis(400)).await,
        "the normal client was dropped"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn credits_engage_backpressure_without_transport_pressure() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(bp_config(&fake)).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "steady-c", "streamId": "c"}))
        .await;
    c.emit("ai:stream", json!({"prompt": "quick", "streamId": "q"}))
        .await;
    // Read everything at once, but ack only every 300 ms.
    let mut events = Vec::new();
    let mut last_ack = Instant::now();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut open = 2;
    while open > 0 {
        let Some((name, p)) = c.next_event_within(Duration::from_millis(50)).await else {
            if last_ack.elapsed() > Duration::from_millis(300) {
                for (id, n) in &seen {
                    c.emit("ai:ack", json!({"streamId": id, "tokenCount": n}))
                        .await;
                }
                last_ack = Instant::now();
            }
            continue;
        };
        if name == "ai:token" {
            seen.insert(
                p["streamId"].as_str().unwrap().into(),
                p["tokenCount"].as_u64().unwrap(),
            );
        }
        if last_ack.elapsed() > Duration::from_millis(300) {
            for (id, n) in &seen {
                c.emit("ai:ack", json!({"streamId": id, "tokenCount": n}))
                    .await;
            }
            last_ack = Instant::now();
        }
        if is_terminal(&name) {
            open -= 1;
        }
        events.push((name, p));
    }
    let streams = by_stream(&events);
    assert_eq!(
        check_stream_order(&streams["c"]).0,
        Script::tokens(300, 5).text()
    );
    assert_eq!(
        check_stream_order(&streams["q"]).0,
        Script::tokens(10, 1).text()
    );
    let n = notices(&events);
    assert!(
        !n.is_empty() && n[0]["state"] == "engaged",
        "credits did not engage backpressure: {n:?}"
    );
    // The short stream was not starved behind the long one.
    let q_done = events
        .iter()
        .position(|e| e.0 == "ai:done" && e.1["streamId"] == "q")
        .unwrap();
    let c_done = events
        .iter()
        .position(|e| e.0 == "ai:done" && e.1["streamId"] == "c")
        .unwrap();
    assert!(q_done < c_done);
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(
        stats["backpressure"]["transportRefusals"], 0,
        "the transport was never full"
    );
    // A bad ack is answered, a late one for an ended stream ignored.
    c.emit("ai:ack", json!({"streamId": "c"})).await;
    let (name, err) = c.next_event().await.unwrap();
    assert_eq!(
        (name.as_str(), err["details"]["field"].as_str()),
        ("ai:error", Some("tokenCount"))
    );
    c.emit("ai:ack", json!({"streamId": "c", "tokenCount": 300}))
        .await;
    assert!(
        c.next_event_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    gw.shutdown().await.unwrap();
}

/// Every `engaged` is followed by a `relieved` once the client has caught
/// up, even when the stream that caused it has ended meanwhile.
#[tokio::test]
async fn an_engaged_client_that_catches_up_hears_relieved_after_its_stream_ended() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(bp_config(&fake)).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:ack", json!({"streamId": "e", "tokenCount": 0}))
        .await;
    c.emit("ai:stream", json!({"prompt": "steady-e", "streamId": "e"}))
        .await;
    // Read everything but ack nothing: credits run out, the queue fills.
    let mut events = Vec::new();
    let mut seen = 0;
    loop {
        let (name, p) = c.next_event().await.expect("connected");
        if name == "ai:token" {
            seen = p["tokenCount"].as_u64().unwrap();
        }
        let engaged = name == "ai:backpressure" && p["state"] == "engaged";
        events.push((name, p));
        if engaged {
            break;
        }
    }
    // Let the upstream finish while the client is still behind.
    fake.wait_for("steady-e", |s| s.finished).await;
    // Catch up: ack what was read, and every token from now on.
    c.emit("ai:ack", json!({"streamId": "e", "tokenCount": seen}))
        .await;
    loop {
        let (name, p) = c.next_event().await.expect("connected");
        if name == "ai:token" {
            c.ack_token(&p).await;
        }
        let end = is_terminal(&name);
        events.push((name, p));
        if end {
            break;
        }
    }
    while let Some(ev) = c.next_event_within(Duration::from_millis(1_500)).await {
        events.push(ev);
    }
    let (text, end) = check_stream_order(&of_stream(&events, "e"));
    assert_eq!(
        (text, end.as_str()),
        (Script::tokens(300, 5).text(), "ai:done")
    );
    let states: Vec<&str> = notices(&events)
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.last(), Some(&"relieved"), "notices: {states:?}");
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["backpressure"]["engagedClients"], 0, "{stats}");
    gw.shutdown().await.unwrap();
}
