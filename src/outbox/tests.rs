//! Unit tests of the outbox as a writer sees it, with no transport at all:
//! a reader taking, sending, giving back and rewinding.

use super::*;
use crate::protocol::{BackpressurePolicy, Done, StreamStart, Token};
use crate::telemetry::Stats;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn outbox(ack_window: u64) -> Arc<ClientOutbox> {
    outbox_with(ack_window, BackpressurePolicy::Coalesce)
}

/// An outbox under `policy`; `slow` and `drop` take one token per event,
/// which the tests of order, credits and rewind count on.
pub fn outbox_with(ack_window: u64, policy: BackpressurePolicy) -> Arc<ClientOutbox> {
    Arc::new(ClientOutbox::new(
        OutboxSettings {
            threshold: 100,
            max_bytes: 1 << 20,
            ack_window,
            policy,
            slow_timeout: Duration::from_secs(30),
            replay: replay::ReplayCaps {
                deltas: 64,
                bytes: 1 << 16,
                unacked_bytes: 1 << 16,
            },
        },
        Arc::new(Stats::default()),
    ))
}

pub fn start(id: &str) -> StreamEvent {
    StreamEvent::Start(Box::new(StreamStart {
        stream_id: id.into(),
        provider: "p".into(),
        model: "m".into(),
        agent: None,
        intent: None,
        session_id: None,
        timestamp: 0,
    }))
}

pub fn token(id: &str, n: u64, data: &str) -> Token {
    Token {
        stream_id: id.into(),
        data: data.into(),
        token_count: n,
        agent: None,
        metadata: None,
    }
}

pub fn done(id: &str, n: u64) -> StreamEvent {
    StreamEvent::Done(Box::new(Done {
        stream_id: id.into(),
        total_tokens: n,
        duration: 0,
        finish_reason: "stop".into(),
        usage: None,
        dropped_tokens: 0,
        full_response: None,
        session_id: None,
        turn: None,
        tool_calls: Vec::new(),
        reasoning: None,
    }))
}

fn text(item: &Outbound) -> Option<&str> {
    match item {
        Outbound::Stream(StreamEvent::Token(t)) => Some(&t.data),
        _ => None,
    }
}

#[tokio::test]
async fn streams_are_served_in_turn_and_a_refused_event_keeps_its_place() {
    let o = outbox_with(256, BackpressurePolicy::Slow);
    let stop = CancellationToken::new();
    for id in ["a", "b"] {
        o.push_stream_event(start(id));
        for n in 1..=2 {
            o.push_token(token(id, n, &format!("{id}{n}")))
                .await
                .unwrap();
        }
    }
    let mut r = o.reader().await;
    let mut seen = Vec::new();
    let mut refused = false;
    while !o.is_empty() {
        let item = r.next(&stop).await.unwrap();
        if !refused && text(&item) == Some("a1") {
            // The transport refused it once: it stays first in its stream.
            refused = true;
            r.put_back(item);
            continue;
        }
        seen.push(text(&item).unwrap_or("start").to_string());
        r.sent(item);
    }
    assert_eq!(seen, ["start", "start", "b1", "a1", "b2", "a2"]);
    assert!(o.is_empty());
}

#[tokio::test]
async fn a_rewind_sends_again_what_the_client_lacks_exactly_once() {
    let o = outbox_with(256, BackpressurePolicy::Slow);
    let stop = CancellationToken::new();
    o.push_stream_event(start("s"));
    for n in 1..=5 {
        o.push_token(token("s", n, &n.to_string())).await.unwrap();
    }
    {
        let mut r = o.reader().await;
        for _ in 0..4 {
            let item = r.next(&stop).await.unwrap();
            r.sent(item);
        }
        // The connection dies here: start and tokens 1..=3 were sent, the
        // client only saw up to 2.
    }
    let mut r = o.reader().await;
    let (resumed, unknown) = r
        .rewind(Some(vec![("s".into(), Some(2)), ("x".into(), None)]))
        .await;
    assert_eq!(unknown, ["x"]);
    assert_eq!(resumed[0].token_count, 5);
    assert_eq!(resumed[0].replayed, 1);
    let mut got = String::new();
    while !o.is_empty() {
        let item = r.next(&stop).await.unwrap();
        got.push_str(text(&item).unwrap_or("?"));
        r.sent(item);
    }
    assert_eq!(got, "345");
}

#[tokio::test]
async fn credits_hold_deltas_until_acked() {
    let o = outbox_with(2, BackpressurePolicy::Slow);
    let stop = CancellationToken::new();
    o.ack("s", 0);
    o.push_stream_event(start("s"));
    for n in 1..=3 {
        o.push_token(token("s", n, "x")).await.unwrap();
    }
    let mut r = o.reader().await;
    for _ in 0..3 {
        let item = r.next(&stop).await.unwrap();
        r.sent(item);
    }
    let held = tokio::time::timeout(Duration::from_millis(50), r.next(&stop)).await;
    assert!(held.is_err(), "the third token waits for credits");
    o.ack("s", 2);
    let item = r.next(&stop).await.unwrap();
    assert_eq!(text(&item), Some("x"));
}

fn coalesced(item: &Outbound) -> (u64, Option<u64>) {
    match item {
        Outbound::Stream(StreamEvent::Token(t)) => {
            (t.token_count, t.metadata.as_ref().map(|m| m.coalesced))
        }
        _ => (0, None),
    }
}

#[tokio::test]
async fn tokens_queued_when_the_writer_takes_go_as_one_event_and_a_lone_one_as_it_is() {
    let o = outbox(256);
    let stop = CancellationToken::new();
    o.push_stream_event(start("s"));
    for n in 1..=3 {
        o.push_token(token("s", n, &n.to_string())).await.unwrap();
    }
    let mut r = o.reader().await;
    let item = r.next(&stop).await.unwrap();
    assert!(matches!(item, Outbound::Stream(StreamEvent::Start(_))));
    r.sent(item);
    let item = r.next(&stop).await.unwrap();
    assert_eq!(text(&item), Some("123"));
    assert_eq!(coalesced(&item), (3, Some(3)));
    r.sent(item);
    assert!(o.is_empty() && o.bytes() == 0, "counts follow the merge");
    o.push_token(token("s", 4, "4")).await.unwrap();
    let item = r.next(&stop).await.unwrap();
    assert_eq!(coalesced(&item), (4, None), "alone: sent as it is");
}

/// The next item, or a panic if none comes within a second.
async fn take(r: &mut OutboxReader, stop: &CancellationToken) -> Outbound {
    tokio::time::timeout(Duration::from_secs(1), r.next(stop))
        .await
        .expect("an item within a second")
        .expect("an item")
}

#[tokio::test]
async fn a_take_merges_no_more_than_the_credits_left() {
    let o = outbox(3);
    let stop = CancellationToken::new();
    o.ack("s", 0);
    o.push_stream_event(start("s"));
    for n in 1..=5 {
        o.push_token(token("s", n, "x")).await.unwrap();
    }
    let mut r = o.reader().await;
    let item = take(&mut r, &stop).await;
    r.sent(item);
    let item = take(&mut r, &stop).await;
    assert_eq!(coalesced(&item), (3, Some(3)), "window 3");
    r.sent(item);
    let held = tokio::time::timeout(Duration::from_millis(50), r.next(&stop)).await;
    assert!(held.is_err(), "the window is full");
    o.ack("s", 3);
    let item = take(&mut r, &stop).await;
    assert_eq!(coalesced(&item), (5, Some(2)));
}

#[tokio::test]
async fn a_take_merges_only_within_one_stream() {
    let o = outbox(256);
    let stop = CancellationToken::new();
    for id in ["s", "t"] {
        o.push_stream_event(start(id));
    }
    o.push_token(token("s", 1, "s1")).await.unwrap();
    o.push_token(token("t", 1, "t1")).await.unwrap();
    o.push_token(token("s", 2, "s2")).await.unwrap();
    let mut r = o.reader().await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let item = take(&mut r, &stop).await;
        got.push(text(&item).unwrap_or("start").to_string());
        r.sent(item);
    }
    assert_eq!(got, ["start", "start", "s1s2", "t1"]);
}

#[tokio::test]
async fn a_rewind_after_merged_sends_falls_on_their_boundaries() {
    let o = outbox(256);
    let stop = CancellationToken::new();
    o.push_stream_event(start("s"));
    let mut r = o.reader().await;
    for n in 1..=2 {
        o.push_token(token("s", n, &n.to_string())).await.unwrap();
    }
    for _ in 0..2 {
        let item = take(&mut r, &stop).await;
        r.sent(item); // start, then "12" as one event (position 2)
    }
    for n in 3..=5 {
        o.push_token(token("s", n, &n.to_string())).await.unwrap();
    }
    let item = r.next(&stop).await.unwrap();
    assert_eq!(coalesced(&item), (5, Some(3)));
    r.sent(item);
    drop(r);
    // The client saw the first merged event only: position 2.
    let mut r = o.reader().await;
    r.rewind(Some(vec![("s".into(), Some(2))])).await;
    let item = r.next(&stop).await.unwrap();
    assert_eq!(text(&item), Some("345"));
    r.sent(item);
    assert!(o.is_empty());
}

/// Queues hold many events: one must stay the size of a token event (the
/// rare and large ones are boxed), or every queued token pays for them.
#[test]
fn a_queued_event_is_the_size_of_a_token() {
    let token = std::mem::size_of::<crate::protocol::Token>();
    assert!(
        std::mem::size_of::<StreamEvent>() <= token + 8,
        "{}",
        std::mem::size_of::<StreamEvent>()
    );
}
