//! The core relay end to end: the gateway on a port, a fake Ollama speaking
//! NDJSON, and a raw Socket.IO client.

mod common;

use common::fake_ollama::{End, FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use serde_json::json;
use std::time::Duration;

fn scripted(prompt: &str) -> Script {
    match prompt {
        "split" => Script {
            split_lines: true,
            ..Script::tokens(12, 5)
        },
        "batched" => Script {
            one_write: true,
            ..Script::tokens(30, 0)
        },
        "error-line" => Script {
            end: End::ErrorLine("model 'x' not found"),
            ..Script::tokens(3, 5)
        },
        "abrupt" => Script {
            end: End::Abrupt,
            ..Script::tokens(3, 5)
        },
        "stall" => Script {
            first_delay: Duration::from_secs(20),
            ..Script::tokens(3, 5)
        },
        "slow" => Script::tokens(400, 20),
        "hang" => Script {
            end: End::Hang,
            ..Script::tokens(2, 5)
        },
        // Five tokens, then nothing (the connection stays open).
        "stall-after-5" => Script {
            end: End::Hang,
            ..Script::tokens(5, 5)
        },
        "503" => Script {
            status: 503,
            ..Script::tokens(1, 0)
        },
        "404" => Script {
            status: 404,
            ..Script::tokens(1, 0)
        },
        "length" => Script {
            end: End::Done("length"),
            ..Script::tokens(5, 2)
        },
        _ => Script::tokens(8, 5),
    }
}

async fn setup() -> (FakeOllama, streamgate::Running) {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    (fake, gw)
}

#[tokio::test]
async fn three_streams_at_once_and_one_cancelled() {
    let (fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    assert!(c.connected["clientId"].as_str().unwrap().starts_with("c_"));
    assert_eq!(c.connected["maxConcurrentStreams"], 10);
    assert!(c.connected["resumeToken"].as_str().unwrap().len() >= 32);

    for (id, prompt) in [("a", "hello"), ("b", "slow"), ("c", "split")] {
        // "a" goes straight to the provider; the others through the agents.
        let direct = id == "a";
        let ack = c
            .emit_ack(
                "ai:stream",
                json!({"prompt": prompt, "streamId": id, "model": "llama3", "useOrchestrator": !direct}),
            )
            .await;
        assert_eq!(ack, json!({"ok": true, "streamId": id}));
    }
    // Let the slow stream produce a little, then cancel it.
    let mut events = c
        .events_until(|n, p| n == "ai:token" && p["streamId"] == "b" && p["tokenCount"] == 3)
        .await;
    c.emit("ai:cancel", json!({"streamId": "b"})).await;
    let mut terminals = events.iter().filter(|e| is_terminal(&e.0)).count();
    while terminals < 3 {
        let ev = c
            .next_event_within(Duration::from_secs(10))
            .await
            .expect("event");
        if is_terminal(&ev.0) {
            terminals += 1;
        }
        events.push(ev);
    }
    let streams = by_stream(&events);
    let (text_a, end_a) = check_stream_order(&streams["a"]);
    assert_eq!(text_a, scripted("hello").text());
    assert_eq!(end_a, "ai:done");
    let (text_c, end_c) = check_stream_order(&streams["c"]);
    assert_eq!(
        text_c,
        scripted("split").text(),
        "lines split across writes"
    );
    assert_eq!(end_c, "ai:done");
    let (_, end_b) = check_stream_order(&streams["b"]);
    assert_eq!(end_b, "ai:stream:cancelled");
    let cancelled = &streams["b"].last().unwrap().1;
    assert_eq!(cancelled["reason"], "client");
    assert!(cancelled["tokenCount"].as_u64().unwrap() >= 3);

    let start = &streams["a"][0].1;
    assert_eq!(start["provider"], "ollama");
    assert_eq!(start["model"], "llama3");
    assert!(start["agent"].is_null() && start["intent"].is_null());
    let complete = &streams["a"][streams["a"].len() - 2].1;
    assert!(complete["agent"].is_null() && complete["confidence"].is_null());
    assert!(
        streams["c"][0].1["agent"].is_string(),
        "orchestrated stream names its agent"
    );
    let done = &streams["a"].last().unwrap().1;
    assert_eq!(done["totalTokens"], 8);
    assert_eq!(done["finishReason"], "stop");
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 3, "completionTokens": 8})
    );
    assert_eq!(done["droppedTokens"], 0);

    // The cancelled stream's upstream saw its connection closed early.
    let served = fake.wait_for("slow", |s| s.closed_early).await;
    assert!(served.tokens_written < 400, "{served:?}");
    // And cancelling it again is an unknown stream.
    c.emit("ai:cancel", json!({"streamId": "b"})).await;
    let (name, err) = c.next_event().await.unwrap();
    assert_eq!(
        (name.as_str(), err["code"].as_str()),
        ("ai:error", Some("unknown_stream"))
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_lines_in_one_read() {
    let (_fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "batched", "streamId": "x"}))
        .await;
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let (text, end) = check_stream_order(&of_stream(&events, "x"));
    assert_eq!(text, scripted("batched").text());
    assert_eq!(end, "ai:done");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn upstream_failures_become_stream_errors() {
    let (_fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for (prompt, code) in [
        ("error-line", "upstream_error"),
        ("abrupt", "upstream_error"),
        ("404", "upstream_error"),
        ("503", "upstream_unavailable"),
        ("stall", "timeout"),
    ] {
        c.emit("ai:stream", json!({"prompt": prompt, "streamId": prompt}))
            .await;
        let events = c
            .events_until(|n, p| is_terminal(n) && p["streamId"] == prompt)
            .await;
        let mine = of_stream(&events, prompt);
        let (_, end) = check_stream_order(&mine);
        assert_eq!(end, "ai:stream:error", "{prompt}");
        let err = &mine.last().unwrap().1;
        assert_eq!(err["code"], code, "{prompt}: {err}");
        assert_eq!(err["retryable"], true);
        let msg = err["error"].as_str().unwrap();
        assert!(
            !msg.contains("127.0.0.1") && !msg.contains("http"),
            "leaks detail: {msg}"
        );
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreachable_ollama_falls_back_to_simulated_and_says_so() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut config = config_for(&base);
    config.providers.get_mut("ollama").unwrap().fallback = vec!["simulated".into()];
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit(
        "ai:stream",
        json!({"prompt": "hi", "streamId": "f", "maxTokens": 6}),
    )
    .await;
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let mine = of_stream(&events, "f");
    let (text, end) = check_stream_order(&mine);
    assert_eq!(end, "ai:done");
    assert_eq!(mine[0].1["provider"], "simulated");
    assert_eq!(mine[0].1["model"], "simulated-1");
    assert_eq!(text.split_whitespace().count(), 6);
    assert_eq!(mine.last().unwrap().1["finishReason"], "length");
    let (status, ready) = get_json(gw.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["providers"]["ollama"]["reachable"], false);
    assert_eq!(ready["providers"]["simulated"]["reachable"], true);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn stalled_first_token_falls_back_when_configured() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.streams.first_token_timeout_ms = 300;
    config.providers.get_mut("ollama").unwrap().fallback = vec!["simulated".into()];
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "stall", "streamId": "s"}))
        .await;
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let mine = of_stream(&events, "s");
    assert_eq!(check_stream_order(&mine).1, "ai:done");
    assert_eq!(mine[0].1["provider"], "simulated");
    // The stalled upstream request was abandoned, connection closed.
    fake.wait_for("stall", |s| s.closed_early).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn stream_timeout_cancels_and_closes_upstream() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.streams.stream_timeout_ms = 400;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "hang", "streamId": "t"}))
        .await;
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let mine = of_stream(&events, "t");
    assert_eq!(check_stream_order(&mine).1, "ai:stream:cancelled");
    assert_eq!(mine.last().unwrap().1["reason"], "timeout");
    assert_eq!(mine.last().unwrap().1["tokenCount"], 2);
    fake.wait_for("hang", |s| s.closed_early).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_stream_times_out_and_is_closed() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.streams.idle_timeout_ms = 300;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let started = std::time::Instant::now();
    c.emit(
        "ai:stream",
        json!({"prompt": "stall-after-5", "streamId": "i"}),
    )
    .await;
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let took = started.elapsed();
    let mine = of_stream(&events, "i");
    let (text, end) = check_stream_order(&mine);
    assert_eq!(text, scripted("stall-after-5").text());
    assert_eq!(end, "ai:stream:error");
    let err = &mine.last().unwrap().1;
    assert_eq!(err["code"], "timeout", "{err}");
    assert_eq!(err["retryable"], true);
    assert!(err["error"].as_str().unwrap().contains("300 ms"), "{err}");
    assert!(took < Duration::from_secs(2), "ended after {took:?}");
    let served = fake.wait_for("stall-after-5", |s| s.closed_early).await;
    assert_eq!(served.tokens_written, 5);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn disconnect_cancels_streams_and_closes_upstream() {
    let (fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "slow", "streamId": "d"}))
        .await;
    c.events_until(|n, _| n == "ai:token").await;
    c.close().await;
    fake.wait_for("slow", |s| s.closed_early).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, stats) = get_json(gw.addr, "/stats").await;
        if stats["streams"]["active"] == 0 && stats["clients"]["connected"] == 0 {
            assert_eq!(stats["streams"]["cancelled"], 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stats: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_streams_with_reason_shutdown() {
    let (fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit("ai:stream", json!({"prompt": "slow", "streamId": "z"}))
        .await;
    c.events_until(|n, _| n == "ai:token").await;
    let stopping = tokio::spawn(gw.shutdown());
    let events = c.events_until(|n, _| is_terminal(n)).await;
    let last = events.last().unwrap();
    assert_eq!(last.0, "ai:stream:cancelled");
    assert_eq!(last.1["reason"], "shutdown");
    fake.wait_for("slow", |s| s.closed_early).await;
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn heartbeat_is_answered_and_a_silent_client_is_dropped() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = config_for(&fake.base_url());
    config.session.heartbeat_interval_ms = 200;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    assert_eq!(c.connected["heartbeatIntervalMs"], 200);
    c.emit("ai:stream", json!({"prompt": "slow", "streamId": "h"}))
        .await;
    c.emit("ai:heartbeat", json!({})).await;
    let events = c.events_until(|n, _| n == "ai:heartbeat:ack").await;
    let ack = &events.last().unwrap().1;
    assert_eq!(ack["activeStreams"], 1);
    assert!(ack["queueSize"].is_u64() && ack["timestamp"].is_u64());
    // Keep reading (transport alive) but send nothing: stale after 3 intervals.
    let started = tokio::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        c.next_event_within(Duration::from_millis(100)).await;
        if c.disconnected {
            closed = true;
            break;
        }
    }
    assert!(closed, "stale client still connected");
    assert!(started.elapsed() >= Duration::from_millis(500));
    fake.wait_for("slow", |s| s.closed_early).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn ops_endpoints_count_truly() {
    let (_fake, gw) = setup().await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for i in 0..3 {
        c.emit(
            "ai:stream",
            json!({"prompt": "hello", "streamId": format!("o{i}")}),
        )
        .await;
    }
    let mut done = 0;
    while done < 3 {
        let (n, _) = c.next_event().await.unwrap();
        if n == "ai:done" {
            done += 1;
        }
    }
    let (status, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["clients"]["connected"], 1);
    assert_eq!(stats["streams"]["started"], 3);
    assert_eq!(stats["streams"]["completed"], 3);
    assert_eq!(stats["streams"]["active"], 0);
    assert_eq!(stats["tokens"]["relayed"], 24);
    assert_eq!(stats["providers"]["ollama"]["requests"], 3);
    assert_eq!(
        stats["providers"]["ollama"]["timeToFirstTokenMs"]["count"],
        3
    );
    let (status, health) = get_json(gw.addr, "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = get_json(gw.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["providers"]["ollama"]["reachable"], true);
    let metrics = get_text(gw.addr, "/metrics").await;
    assert!(
        metrics.contains("streamgate_tokens_relayed_total 24"),
        "{metrics}"
    );
    assert!(metrics.contains("streamgate_streams_completed_total 3"));
    assert!(metrics.contains("streamgate_provider_requests_total{provider=\"ollama\"} 3"));
    gw.shutdown().await.unwrap();
}
