//! The binary as a deployer runs it: where its logs go and in what form,
//! what a bad environment value is told as, and how long a stop takes
//! with peers that have stopped reading.

mod common;

use common::binary::{self, Binary};
use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn logs_go_to_stderr_without_colour_when_redirected() {
    let gw = Binary::spawn(&[], &[]).await;
    SioClient::connect_ok(gw.addr).await.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = gw.lines();
    assert!(
        lines.iter().any(|l| l.text.contains("client connected")),
        "{}",
        gw.log()
    );
    assert!(
        lines.iter().all(|l| l.stream == "stderr"),
        "log lines on stdout:\n{}",
        gw.log()
    );
    assert!(
        lines.iter().all(|l| !l.coloured),
        "ANSI colour into a pipe:\n{}",
        gw.log()
    );
    gw.kill().await;
}

#[tokio::test]
async fn log_format_json_prints_one_object_a_line() {
    for (args, env) in [
        (vec!["--log-format", "json"], vec![]),
        (vec![], vec![("STREAMGATE_LOG_FORMAT", "json")]),
    ] {
        let gw = Binary::spawn(&args, &env).await;
        SioClient::connect_ok(gw.addr).await.close().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = gw.lines();
        assert!(lines.len() >= 3, "{}", gw.log());
        for l in &lines {
            let v: Value = serde_json::from_str(&l.text)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", l.text));
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        }
        let listening = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(&l.text).unwrap())
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("listening"))
            })
            .expect("the listening line");
        assert_eq!(listening["fields"]["addr"], gw.addr.to_string());
        gw.kill().await;
    }
}

/// Run the binary with `env` until it exits (it must, on a bad config).
async fn refused_config(env: &[(&str, &str)]) -> String {
    let out = tokio::time::timeout(Duration::from_secs(20), binary::command(&[], env).output())
        .await
        .expect("exits")
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_environment_value_names_the_variable_and_the_key() {
    let cases = [
        (
            "MAX_CONCURRENT_STREAMS",
            "0",
            "streams.max_concurrent_streams",
            "at least 1",
        ),
        (
            "STREAM_TIMEOUT",
            "soon",
            "streams.stream_timeout_ms",
            "soon",
        ),
        (
            "STREAMGATE_LIMITS__EVENTS_BURST",
            "many",
            "limits.events_burst",
            "many",
        ),
        (
            "STREAMGATE_SERVER__TRUSTED_PROXIES",
            "[\"10.0.0.0/33\"]",
            "server.trusted_proxies",
            "10.0.0.0/33",
        ),
    ];
    for (var, value, key, words) in cases {
        let err = refused_config(&[(var, value)]).await;
        assert!(err.contains(&format!("{var}={value}")), "{var}: {err}");
        assert!(err.contains(key), "{var}: {err}");
        assert!(err.contains(words), "{var}: {err}");
        assert!(
            !err.contains(&key.to_uppercase()),
            "{var}: internal key in {err}"
        );
        println!("{var}={value}: {}", err.trim());
    }
}

/// Clients that stopped reading (their TCP windows full, their writers
/// stuck) and a stream held back by one of them do not stretch a stop past
/// the grace period.
#[tokio::test]
async fn shutdown_with_stalled_peers_ends_within_the_grace_period() {
    let fake = FakeOllama::start(|_| Script::sized(5_000, 4_096, 0)).await;
    let grace = Duration::from_millis(1_000);
    let gw = Binary::spawn(
        &[],
        &[
            ("OLLAMA_BASE_URL", fake.base_url().as_str()),
            ("STREAMGATE_PROVIDERS__OLLAMA__FALLBACK", "[]"),
            ("STREAMGATE_SERVER__SHUTDOWN_GRACE_MS", "1000"),
            ("STREAMGATE_LIMITS__CONNECTIONS_PER_MINUTE", "0"),
        ],
    )
    .await;
    let mut stalled = Vec::new();
    for i in 0..8 {
        let policy = if i % 2 == 0 { "coalesce" } else { "slow" };
        let mut c = SioClient::connect(gw.addr, json!({"backpressurePolicy": policy}))
            .await
            .expect("connect");
        c.emit("ai:stream", json!({"prompt": format!("flood-{i}")}))
            .await;
        stalled.push(c);
    }
    // And HTTP peers that stalled: one half-way through a request head, one
    // in the middle of its body.
    let mut half_head = tokio::net::TcpStream::connect(gw.addr).await.expect("tcp");
    half_head
        .write_all(b"GET /stats HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .expect("write");
    let mut half_body = tokio::net::TcpStream::connect(gw.addr).await.expect("tcp");
    half_body
        .write_all(b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: gateway\r\ncontent-length: 100\r\n\r\n42")
        .await
        .expect("write");
    // Long enough for the socket buffers and queues to fill.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut gw = gw;
    let pid = gw.child.id().expect("running").to_string();
    let t0 = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("exits within 10 s")
        .expect("wait");
    let took = t0.elapsed();
    println!("stop with 10 stalled peers took {took:?} (grace {grace:?}), {exited}");
    assert!(
        took < grace + Duration::from_millis(200),
        "stop took {took:?} with a grace of {grace:?}"
    );
    drop((stalled, half_head, half_body));
}

/// With no model server, the default config falls back to `simulated`:
/// that is said once (at startup), not twice for every stream.
#[tokio::test]
async fn a_missing_model_server_is_warned_once_not_per_stream() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let gw = Binary::spawn(&[], &[("OLLAMA_BASE_URL", base.as_str())]).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for i in 0..3 {
        let id = format!("w{i}");
        c.emit(
            "ai:stream",
            json!({"prompt": "hi", "streamId": id, "maxTokens": 2}),
        )
        .await;
        c.events_until(|n, p| n == "ai:done" && p["streamId"] == id.as_str())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let warnings: Vec<_> = gw
        .lines()
        .into_iter()
        .filter(|l| l.text.contains("WARN") && !l.text.contains("AUTH IS OFF"))
        .map(|l| l.text)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("ollama"), "{warnings:#?}");
    gw.kill().await;
}
