//! The first event after connecting is never lost: many fast raw clients
//! emit `ai:heartbeat` and `ai:stream` (with an acknowledgement) the moment
//! the connect packet arrives, before reading anything else, and every one
//! of them is answered.
//!
//! socketioxide sends the connect packet and only then runs the connect
//! handler; handlers registered there missed an event that arrived in
//! between (15 of 300 in the field trial). The gateway registers them in
//! the handshake middleware, before the connect packet. This test runs the
//! real binary; `TEST_STREAMGATE_BIN=/path/to/streamgate` runs another
//! build (an older checkout's, say) against the same test.

mod common;

use common::binary::Binary;
use common::sio::SioClient;
use serde_json::json;
use std::time::Duration;

/// Connect, emit at once, and say which answers never came.
async fn one_client(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut c = SioClient::join(addr, json!({}), &[])
        .await
        .expect("join /ai");
    c.emit("ai:heartbeat", json!({})).await;
    let stream = json!({"prompt": "hi", "provider": "simulated", "useOrchestrator": false,
                        "maxTokens": 1, "streamId": format!("first-{n}")});
    let ack_id = c.send_with_ack("ai:stream", stream).await;
    let mut missing = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), c.ack_of(ack_id)).await {
        Ok(ack) if ack["ok"] == true => {}
        Ok(ack) => missing.push(format!("ai:stream refused: {ack}")),
        Err(_) => missing.push("ai:stream ack".into()),
    }
    let mut heartbeat = false;
    while let Some((name, _)) = c.next_event_within(Duration::from_secs(3)).await {
        if name == "ai:heartbeat:ack" {
            heartbeat = true;
            break;
        }
    }
    if !heartbeat {
        missing.push("ai:heartbeat:ack".into());
    }
    c.close().await;
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_sent_right_after_the_connect_packet_is_answered() {
    let gw = Binary::spawn(
        &[],
        &[
            ("STREAMGATE_LIMITS__EVENTS_PER_MINUTE", "0"),
            ("STREAMGATE_LIMITS__STREAMS_PER_MINUTE", "0"),
            ("STREAMGATE_LIMITS__CONNECTIONS_PER_MINUTE", "0"),
        ],
    )
    .await;
    let (rounds, at_once) = (5, 60);
    let mut lost = Vec::new();
    for round in 0..rounds {
        let clients = (0..at_once).map(|i| tokio::spawn(one_client(gw.addr, round * at_once + i)));
        for c in clients {
            lost.extend(c.await.expect("client task"));
        }
    }
    println!(
        "{} clients emitted at once after the connect packet; {} answers missing",
        rounds * at_once,
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    gw.kill().await;
}
