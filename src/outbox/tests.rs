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
            replay_tokens: 64,
            replay_bytes: 1 << 16,
            replay_unacked_bytes: 1 << 16,
            replay_bytes_per_client: 0,
            max_replay_bytes: 0,
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

/// Random interleavings of pushes, takes, refusals, acks, stream ends and
/// reused stream ids: once the client has caught up, every `engaged` it
/// was told is followed by a `relieved`, and nothing is left counted.
#[tokio::test(start_paused = true)]
async fn every_engaged_is_followed_by_relieved_once_caught_up() {
    use crate::protocol::BackpressureState;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    let mut episodes = 0;
    for seed in 0..300u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let stats = Arc::new(Stats::default());
        let o = Arc::new(ClientOutbox::new(
            OutboxSettings {
                threshold: 8,
                ack_window: 6,
                ..outbox(6).settings.clone()
            },
            stats.clone(),
        ));
        o.ack("none", 0);
        let stop = CancellationToken::new();
        let mut r = o.reader().await;
        let mut live: HashMap<String, u64> = HashMap::new();
        let mut received: HashMap<String, u64> = HashMap::new();
        let mut last_notice = None;
        for _ in 0..400 {
            let id = format!("s{}", rng.random_range(0..40));
            match rng.random_range(0..10) {
                0 if !live.contains_key(&id) => {
                    o.push_stream_event(start(&id));
                    live.insert(id, 0);
                }
                1..=3 => {
                    if let Some(n) = live.get_mut(&id) {
                        *n += 1;
                        o.push_token(token(&id, *n, "x")).await.unwrap();
                    }
                }
                4 => {
                    if let Some(n) = live.remove(&id) {
                        o.push_stream_event(done(&id, n));
                    }
                }
                5 => tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await,
                6 => {
                    for (id, n) in &received {
                        o.ack(id, *n);
                    }
                }
                _ => {
                    let next = tokio::time::timeout(Duration::from_millis(1), r.next(&stop));
                    if let Ok(Some(item)) = next.await {
                        if rng.random_bool(0.1) {
                            r.put_back(item);
                            continue;
                        }
                        note(&item, &mut received, &mut last_notice);
                        r.sent(item);
                    }
                }
            }
        }
        for (id, n) in live.drain() {
            o.push_stream_event(done(&id, n));
        }
        // Catch up: read everything, ack everything, until nothing comes
        // for longer than the notice gap.
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(1_500), r.next(&stop)).await
        {
            note(&item, &mut received, &mut last_notice);
            r.sent(item);
            for (id, n) in &received {
                o.ack(id, *n);
            }
        }
        assert_eq!(o.len(), 0, "seed {seed}: events left counted");
        assert_ne!(
            last_notice,
            Some(BackpressureState::Engaged),
            "seed {seed}: engaged, never relieved"
        );
        assert_eq!(
            stats
                .backpressure_engaged
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        episodes += stats
            .backpressure_episodes
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    println!("{episodes} backpressure episodes over 300 runs");
    assert!(episodes > 300, "the runs fall behind often: {episodes}");

    fn note(
        item: &Outbound,
        received: &mut HashMap<String, u64>,
        last: &mut Option<BackpressureState>,
    ) {
        match item {
            Outbound::Notice(n) => *last = Some(n.state),
            Outbound::Stream(StreamEvent::Token(t)) => {
                received.insert(t.stream_id.to_string(), t.token_count);
            }
            _ => {}
        }
    }
}

/// A stream id used again while other streams end: its new queue is never
/// forgotten as an ended one, so nothing stays counted that cannot be
/// sent (which would keep the client behind, and engaged, for good).
#[tokio::test]
async fn a_reused_stream_id_keeps_its_queue_however_many_streams_end_meanwhile() {
    let o = outbox(256);
    let stop = CancellationToken::new();
    let mut r = o.reader().await;
    o.push_stream_event(start("a"));
    o.push_stream_event(done("a", 0));
    for _ in 0..2 {
        let item = r.next(&stop).await.unwrap();
        r.sent(item);
    }
    // More ended streams than are kept end while "a" runs again.
    for i in 0..super::queue::ENDED_KEPT {
        o.push_stream_event(done(&format!("b{i}"), 0));
    }
    o.push_stream_event(start("a"));
    o.push_token(token("a", 1, "again")).await.unwrap();
    let mut again = None;
    while !o.is_empty() {
        let next = tokio::time::timeout(Duration::from_millis(100), r.next(&stop));
        let item = next
            .await
            .unwrap_or_else(|_| panic!("{} events counted that are not there", o.len()))
            .unwrap();
        if let Some(t) = text(&item) {
            again = Some(t.to_string());
        }
        r.sent(item);
    }
    assert_eq!(again.as_deref(), Some("again"));
}
