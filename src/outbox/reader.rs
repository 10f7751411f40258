//! The writer's side of an outbox: one [`OutboxReader`] at a time takes
//! events out, in the order the client must see them.
//!
//! `next` hands out a backpressure notice when one is due, then control
//! events, then the streams round-robin, holding deltas back while the
//! client's credits are spent, and waits when nothing may go. The writer
//! reports each event the transport took (`sent`, which records stream
//! events for a resume) or could not take (`put_back`, which returns it to
//! the front of its queue). Recording is deferred to the next `next`, so a
//! sent event costs no extra lock. Holding the reader is holding the
//! outbox's only read slot: a resume waits for the previous writer's
//! reader to be dropped before it rewinds.

use super::client_outbox::{ClientOutbox, State};
use super::event::{Outbound, StreamEvent};
use super::queue::{MERGED_TEXT_MAX, MergeLimit};
use crate::protocol::BackpressurePolicy;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The exclusive right to take events out of one outbox.
pub struct OutboxReader {
    outbox: Arc<ClientOutbox>,
    _slot: tokio::sync::OwnedMutexGuard<()>,
    /// The last event sent, recorded for replay on the next take.
    sent: Option<StreamEvent>,
}

impl ClientOutbox {
    /// Wait for the read slot (a previous writer may still hold it) and
    /// take it.
    pub async fn reader(self: &Arc<Self>) -> OutboxReader {
        let slot = self.reader_slot.clone().lock_owned().await;
        OutboxReader {
            outbox: self.clone(),
            _slot: slot,
            sent: None,
        }
    }

    /// Take the next event that may go now, or the instant to look again
    /// (a notice falling due; `None`: when woken).
    fn take(&self, sent: Option<StreamEvent>) -> Result<Outbound, Option<Instant>> {
        self.change(|s| {
            if let Some(event) = sent {
                s.replay.record(event);
            }
            let due = match self.due_notice(s) {
                Ok(notice) => return Ok(notice),
                Err(due) => due,
            };
            if let Some(c) = s.queues.pop_control() {
                return Ok(Outbound::Control(c));
            }
            match take_stream_event(s, self.take_merge(s)) {
                Some(event) => Ok(Outbound::Stream(event)),
                None => Err(due),
            }
        })
    }

    /// How much one take may merge: under `coalesce`, tokens of a stream
    /// already queued when the writer takes go out as one event (one
    /// frame, one write), within the credits left and [`MERGED_TEXT_MAX`];
    /// a token that is alone goes at once, as it is. The other policies
    /// send each token as its own event.
    fn take_merge(&self, s: &State) -> MergeLimit {
        match self.settings.policy {
            BackpressurePolicy::Coalesce => MergeLimit {
                pieces: s.credits.room(),
                bytes: MERGED_TEXT_MAX,
            },
            BackpressurePolicy::Slow | BackpressurePolicy::Drop => MergeLimit::NONE,
        }
    }

    /// A notice to send now, or when one falls due.
    fn due_notice(&self, s: &mut State) -> Result<Outbound, Option<Instant>> {
        if let Some(n) = s.returned_notice.take() {
            return Ok(Outbound::Notice(n));
        }
        match s.episode.notice(Instant::now()) {
            Ok(Some(n)) => Ok(Outbound::Notice(n.into_event(
                s.queues.events(),
                self.settings.threshold,
                self.settings.policy,
                s.dropped,
            ))),
            Ok(None) => Err(None),
            Err(due) => Err(Some(due)),
        }
    }
}

/// The next stream event credits allow (with the deltas queued behind it
/// merged in, within `merge`), with the bookkeeping of taking it.
fn take_stream_event(s: &mut State, merge: MergeLimit) -> Option<StreamEvent> {
    let event = s.queues.pop_stream(s.credits.allow_delta(), merge)?;
    let id = event.stream_id().clone();
    if let Some(q) = s.queues.stream_mut(&id) {
        s.credits.taken(&mut q.credits, &event);
    }
    if matches!(event, StreamEvent::Start(_)) {
        // Live again under an ended stream's id: not to be forgotten as an
        // ended one, and the old stream's events are not its own to replay.
        s.queues.revived(&id);
        s.replay.forget(&id);
    } else if event.is_terminal()
        && let Some(old) = s.queues.ended(&id)
    {
        s.replay.forget(&old);
    }
    Some(event)
}

impl OutboxReader {
    pub fn outbox(&self) -> &Arc<ClientOutbox> {
        &self.outbox
    }

    /// The next event to send, waiting until one may go; `None` once
    /// `stop` is cancelled, or once the outbox is flushing (shutdown) and
    /// nothing may go now: deliver what can be delivered, then stop.
    pub async fn next(&mut self, stop: &CancellationToken) -> Option<Outbound> {
        let mut woken = false;
        loop {
            if stop.is_cancelled() {
                return None;
            }
            if std::mem::take(&mut woken) {
                // Woken by a push: let the tasks already runnable (the
                // stream tasks, the upstream connections with data read)
                // run first, so that what they push goes in this take.
                // No timer: on an idle runtime this returns at once.
                tokio::task::yield_now().await;
            }
            let wake = self.outbox.wake_reader.notified();
            let due = match self.outbox.take(self.sent.take()) {
                Ok(item) => return Some(item),
                Err(due) => due,
            };
            if self.outbox.lock().flushing {
                return None;
            }
            // A timer only when a notice falls due: this wait happens once
            // per event when the client keeps up.
            match due {
                Some(at) => tokio::select! {
                    _ = wake => woken = true,
                    _ = tokio::time::sleep_until(at) => {}
                    _ = stop.cancelled() => return None,
                },
                None => tokio::select! {
                    _ = wake => woken = true,
                    _ = stop.cancelled() => return None,
                },
            }
        }
    }

    /// The transport took `item`.
    pub fn sent(&mut self, item: Outbound) {
        if let Outbound::Stream(event) = item {
            self.flush_sent();
            self.sent = Some(event);
        }
    }

    /// The transport did not take `item`: it goes back to the front.
    pub fn put_back(&mut self, item: Outbound) {
        self.outbox.change(|s| match item {
            Outbound::Notice(n) => s.returned_notice = Some(n),
            Outbound::Control(c) => s.queues.push_control_front(c),
            Outbound::Stream(event) => {
                if let Some(q) = s.queues.stream_mut(event.stream_id()) {
                    s.credits.returned(&mut q.credits, &event);
                }
                s.queues.push_stream_front(event);
            }
        });
    }

    /// Record a sent event still pending.
    fn flush_sent(&mut self) {
        if let Some(event) = self.sent.take() {
            self.outbox.change(|s| s.replay.record(event));
        }
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        self.flush_sent();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{done, outbox_with, start, token};
    use super::*;

    /// Found by tests/fuzz_events.rs: a stream id used again after its
    /// stream ended inherited the old record's credit marks, so each
    /// reuse leaked credits until a credit-aware client was stalled.
    #[tokio::test]
    async fn reusing_an_ended_stream_id_leaks_no_credits() {
        // One event per token (not coalesce): four takes per round.
        let o = outbox_with(4, BackpressurePolicy::Slow);
        o.ack("other", 0); // the client counts credits
        for round in 0..50 {
            o.push_stream_event(start("f3"));
            for n in 1..=2 {
                o.push_token(token("f3", n, "x")).await.unwrap();
            }
            o.push_stream_event(done("f3", 2));
            let mut sent = None;
            for _ in 0..4 {
                let item = o
                    .take(sent.take())
                    .unwrap_or_else(|_| panic!("round {round}: held back for want of credits"));
                let Outbound::Stream(event) = item else {
                    panic!("round {round}: a stream event")
                };
                sent = Some(event);
            }
            assert!(o.take(sent).is_err(), "round {round}: nothing left");
            // The client acks the last token only after the stream ended
            // (or never: credits of an ended stream are forgotten).
            if round % 2 == 0 {
                o.ack("f3", 2);
            }
        }
    }
}
