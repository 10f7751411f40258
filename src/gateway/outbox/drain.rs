//! The drain task: moves a client's queued events into its socket.
//!
//! It takes control events first, then the streams round-robin, holding
//! tokens back while the client's credits are spent, and records each
//! emitted stream event for a resume. socketioxide's emit only reserves a
//! slot in a bounded per-socket channel that the Engine.IO ping also needs,
//! so on a refusal the drain keeps the event and paces itself instead of
//! keeping the channel full.

use super::{ClientOutbox, ENDED_KEPT, Outbound, State, stream_of};
use crate::gateway::backpressure::Notice;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a drain task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Its attachment was cancelled (disconnect handled, or shutdown).
    Detached,
    /// socketioxide says the socket is closed.
    Closed,
    /// The transport refused everything for longer than its liveness window.
    TransportDead,
}

impl ClientOutbox {
    /// Take the next event the drain may emit now, or the time to look
    /// again (a notice falling due).
    fn take(&self, sent: Option<Outbound>) -> Result<Outbound, Option<Instant>> {
        let mut s = self.lock();
        if let Some(item) = sent {
            self.record_sent(&mut s, item);
        }
        let now = Instant::now();
        let due = match s.episode.notice(now) {
            Ok(Some(n)) => return Ok(Outbound::Backpressure(self.notice(&s, n))),
            Ok(None) => None,
            Err(due) => Some(due),
        };
        if let Some(item) = s.control.pop_front() {
            return Ok(self.took(&mut s, item));
        }
        let credits_left = !s.credit_aware || s.unacked < self.limits.ack_window;
        for _ in 0..s.ring.len() {
            let Some(id) = s.ring.pop_front() else { break };
            let Some(q) = s.streams.get_mut(&id) else {
                continue;
            };
            let blocked = matches!(q.items.front(), Some(Outbound::Token(_))) && !credits_left;
            if blocked {
                s.ring.push_back(id);
                continue;
            }
            let Some(item) = q.items.pop_front() else {
                continue;
            };
            let restarted = matches!(item, Outbound::Start(_));
            if restarted {
                // A stream id may be used again once its stream ended: the
                // new stream starts from zero, not from the old one's
                // credit marks (which would leak credits on every reuse).
                q.emitted = 0;
                q.acked = 0;
            }
            if let Outbound::Token(t) = &item {
                q.emitted = t.token_count;
            }
            let more = !q.items.is_empty();
            if item.is_terminal() {
                // Credits of an ended stream are forgotten with it; its
                // record stays a while for a resume.
                let unacked = q.emitted.saturating_sub(q.acked);
                q.acked = q.emitted;
                s.unacked = s.unacked.saturating_sub(unacked);
                if !s.ended.contains(&id) {
                    s.ended.push_back(id.clone());
                }
                if s.ended.len() > ENDED_KEPT
                    && let Some(old) = s.ended.pop_front()
                {
                    s.streams.remove(&old);
                    s.replay.forget(&old);
                }
            } else if more {
                s.ring.push_back(id.clone());
            }
            if restarted {
                // It is live again: not to be forgotten as an ended one,
                // and the old stream's tokens are not its own to replay.
                s.ended.retain(|e| *e != id);
                s.replay.forget(&id);
            }
            s.unacked += item.tokens();
            return Ok(self.took(&mut s, item));
        }
        // Nothing may be sent now; look again when a notice falls due.
        Err(due)
    }

    /// Remember an emitted stream event for a resume.
    fn record_sent(&self, s: &mut State, item: Outbound) {
        if let Some(id) = stream_of(&item) {
            s.replay.record(&id, item);
        }
    }

    fn took(&self, s: &mut State, item: Outbound) -> Outbound {
        s.events -= 1;
        s.bytes = s.bytes.saturating_sub(item.weight());
        self.stats.queued_events.fetch_sub(1, Relaxed);
        self.update_episode(s);
        self.has_room.notify_waiters();
        item
    }

    fn notice(&self, s: &State, n: Notice) -> crate::protocol::Backpressure {
        n.into_event(
            s.events,
            self.limits.threshold,
            self.limits.policy,
            s.dropped,
        )
    }

    /// The next event to emit, recording `sent` (the last one emitted).
    async fn next(
        &self,
        cancel: &CancellationToken,
        mut sent: Option<Outbound>,
    ) -> Option<Outbound> {
        loop {
            if cancel.is_cancelled() {
                if let Some(item) = sent {
                    self.record_sent(&mut self.lock(), item);
                }
                return None;
            }
            let wake = self.wake_drain.notified();
            let due = match self.take(sent.take()) {
                Ok(item) => return Some(item),
                Err(due) => due,
            };
            // A timer only when a notice falls due: this wait happens
            // once per token when the client keeps up.
            match due {
                Some(at) => tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep_until(at) => {}
                    _ = cancel.cancelled() => return None,
                },
                None => tokio::select! {
                    _ = wake => {}
                    _ = cancel.cancelled() => return None,
                },
            }
        }
    }

    /// Move events into `socket` until `cancel` fires or the socket closes.
    ///
    /// socketioxide's emit only reserves a slot in a bounded channel; when
    /// it is full the drain keeps the event and slows down: the pause
    /// doubles on each refusal and shrinks by a tenth on each success
    /// (additive-increase/multiplicative-decrease, like TCP), so the channel
    /// spends little time full and the Engine.IO ping is rarely refused.
    /// An event that could not be emitted because the socket closed goes
    /// back to the front of its queue.
    ///
    /// Returns [`DrainEnd::TransportDead`] when socketioxide refused every
    /// emit for longer than `liveness` (the Engine.IO ping interval plus
    /// timeout): by then the engine has dropped the connection, but its
    /// writer may be stuck on a peer that stopped reading, and then no
    /// disconnect handler runs; the caller cleans up instead.
    pub async fn drain(
        self: Arc<Self>,
        socket: SocketRef,
        cancel: CancellationToken,
        liveness: Duration,
    ) -> DrainEnd {
        let _running = self.drain_lock.lock().await;
        let mut pace: Option<Duration> = None;
        let mut refused_since: Option<Instant> = None;
        let mut sent = None;
        while let Some(item) = self.next(&cancel, sent.take()).await {
            loop {
                if let Some(p) = pace {
                    tokio::select! {
                        _ = tokio::time::sleep(p) => {}
                        _ = cancel.cancelled() => {
                            self.put_back(item);
                            return DrainEnd::Detached;
                        }
                    }
                }
                match item.emit(&socket) {
                    Ok(()) => {
                        refused_since = None;
                        pace = pace
                            .map(|p| p.mul_f64(0.9))
                            .filter(|p| *p >= Duration::from_micros(500));
                        sent = Some(item);
                        break;
                    }
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                        self.stats.transport_refusals.fetch_add(1, Relaxed);
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > liveness {
                            self.put_back(item);
                            return DrainEnd::TransportDead;
                        }
                        pace = Some(pace.map_or(Duration::from_millis(2), |p| {
                            (p * 2).min(Duration::from_secs(1))
                        }));
                    }
                    Err(SendError::Socket(SocketError::Closed)) => {
                        self.put_back(item);
                        return DrainEnd::Closed;
                    }
                    Err(SendError::Serialize(e)) => {
                        tracing::error!(error = ?e, event = item.event(), "event did not serialize");
                        break;
                    }
                }
            }
        }
        DrainEnd::Detached
    }

    /// Return an event the socket did not take to the front of its queue.
    fn put_back(&self, item: Outbound) {
        let mut s = self.lock();
        let stream = stream_of(&item);
        s.events += 1;
        s.bytes += item.weight();
        self.stats.queued_events.fetch_add(1, Relaxed);
        match stream {
            None => s.control.push_front(item),
            Some(id) => {
                s.unacked = s.unacked.saturating_sub(item.tokens());
                if item.is_terminal() {
                    s.ended.retain(|e| *e != id);
                }
                let q = s.streams.entry(id.clone()).or_default();
                if let Outbound::Token(t) = &item {
                    // Not emitted after all.
                    q.emitted = t.token_count.saturating_sub(item.tokens());
                }
                let was_empty = q.items.is_empty();
                q.items.push_front(item);
                if was_empty {
                    s.ring.push_front(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::OutboxLimits;
    use super::*;
    use crate::protocol::{BackpressurePolicy, Done, StreamStart, Token};
    use crate::telemetry::Stats;

    fn outbox(ack_window: u64) -> ClientOutbox {
        ClientOutbox::new(
            OutboxLimits {
                threshold: 100,
                max_bytes: 1 << 20,
                ack_window,
                policy: BackpressurePolicy::Coalesce,
                slow_timeout: Duration::from_secs(30),
                replay_tokens: 64,
                replay_bytes: 1 << 16,
            },
            Arc::new(Stats::default()),
        )
    }

    /// Found by tests/fuzz_events.rs: a stream id used again after its
    /// stream ended inherited the old record's credit marks, so each
    /// reuse leaked credits until a credit-aware client was stalled.
    #[test]
    fn reusing_an_ended_stream_id_leaks_no_credits() {
        let o = outbox(4);
        let id: Arc<str> = "f3".into();
        o.ack("other", 0); // the client counts credits
        for round in 0..50 {
            o.push_stream_event(
                &id,
                Outbound::Start(StreamStart {
                    stream_id: id.clone(),
                    provider: "p".into(),
                    model: "m".into(),
                    agent: None,
                    intent: None,
                    timestamp: 0,
                }),
            );
            for n in 1..=2 {
                let mut s = o.lock();
                let token = Token {
                    stream_id: id.clone(),
                    data: "x".into(),
                    token_count: n,
                    agent: None,
                    metadata: None,
                };
                o.add(&mut s, Some(&id), Outbound::Token(token));
            }
            o.push_stream_event(
                &id,
                Outbound::Done(Done {
                    stream_id: id.clone(),
                    total_tokens: 2,
                    duration: 0,
                    finish_reason: "stop".into(),
                    usage: None,
                    dropped_tokens: 0,
                    full_response: None,
                }),
            );
            let mut sent = None;
            for _ in 0..4 {
                let item = o
                    .take(sent.take())
                    .unwrap_or_else(|_| panic!("round {round}: held back for want of credits"));
                sent = Some(item);
            }
            o.take(sent).unwrap_err();
            // The client acks the last token only after the stream ended
            // (or never: credits of an ended stream are forgotten).
            if round % 2 == 0 {
                o.ack(&id, 2);
            }
        }
    }
}
