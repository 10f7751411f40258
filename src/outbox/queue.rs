//! The queues inside one client's outbox: control events first, then each
//! stream's own FIFO, served round-robin.
//!
//! One FIFO per stream keeps that stream's events in order; the ring of
//! streams with something queued lets a writer serve them in turn, so a
//! chatty stream cannot starve the others. Counts and bytes are kept here,
//! where items come and go, and nowhere else. A stream's queue outlives
//! its terminal event for a while (the newest [`ENDED_KEPT`] ended streams),
//! because a resume asks about it; only a queue with nothing in it is ever
//! forgotten, and a stream id started again is live again from the moment
//! its start is queued, so no counted event can be dropped unsent. This
//! module decides nothing about pressure or credits: callers say what may
//! be taken.

use super::credits::StreamCredits;
use super::event::{Control, Outcome, StreamEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Ended streams whose queues (and replay records) are kept for a resume,
/// per client.
pub const ENDED_KEPT: usize = 32;

/// Text bytes one merged event carries at most, whoever merges (the
/// coalesce policy at push, a writer's take): a frame stays a frame, not a
/// backlog, so what a transport buffers per event is small (hyper takes a
/// whole body frame however large, past its own buffer cap).
pub const MERGED_TEXT_MAX: usize = 16 * 1024;

/// How much a writer's take may merge into one event: the pieces it may
/// carry (the credits left) and the bytes of text.
#[derive(Debug, Clone, Copy)]
pub struct MergeLimit {
    pub pieces: u64,
    pub bytes: usize,
}

impl MergeLimit {
    /// Take one event as it was queued.
    pub const NONE: Self = Self {
        pieces: 0,
        bytes: 0,
    };

    /// May `event` absorb `next` and stay within the limit?
    fn allows(&self, event: &StreamEvent, next: &StreamEvent) -> bool {
        event.may_absorb(next)
            && event.pieces() + next.pieces() <= self.pieces
            && event.text_len() + next.text_len() <= self.bytes
    }
}

/// One stream's queue and what the outbox knows of the stream.
#[derive(Default)]
pub struct StreamQueue {
    pub items: VecDeque<StreamEvent>,
    /// Position of the last delta queued.
    pub position: u64,
    /// How the stream ended, once its terminal event was queued.
    pub outcome: Option<Outcome>,
    pub credits: StreamCredits,
}

#[derive(Default)]
pub struct Queues {
    control: VecDeque<Control>,
    streams: HashMap<Arc<str>, StreamQueue>,
    /// Streams with queued items, in round-robin order.
    ring: VecDeque<Arc<str>>,
    /// Ended streams, oldest first, whose queues are still kept.
    ended: VecDeque<Arc<str>>,
    events: usize,
    bytes: usize,
}

impl Queues {
    pub fn events(&self) -> usize {
        self.events
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn control_len(&self) -> usize {
        self.control.len()
    }

    pub fn stream(&self, id: &str) -> Option<&StreamQueue> {
        self.streams.get(id)
    }

    pub fn stream_mut(&mut self, id: &str) -> Option<&mut StreamQueue> {
        self.streams.get_mut(id)
    }

    /// Ids of every stream the outbox knows (live or recently ended).
    pub fn stream_ids(&self) -> Vec<Arc<str>> {
        self.streams.keys().cloned().collect()
    }

    pub fn push_control(&mut self, c: Control) {
        self.count_in(c.weight());
        self.control.push_back(c);
    }

    pub fn push_control_front(&mut self, c: Control) {
        self.count_in(c.weight());
        self.control.push_front(c);
    }

    pub fn pop_control(&mut self) -> Option<Control> {
        let c = self.control.pop_front()?;
        self.count_out(c.weight());
        Some(c)
    }

    pub fn push_stream(&mut self, event: StreamEvent) {
        self.count_in(event.weight());
        let id = event.stream_id().clone();
        if matches!(event, StreamEvent::Start(_)) {
            self.ended.retain(|e| *e != id);
        }
        let q = self.streams.entry(id.clone()).or_default();
        match &event {
            StreamEvent::Start(_) => q.outcome = None,
            e => {
                if let Some(p) = e.position() {
                    q.position = p;
                }
                if let Some(o) = e.outcome() {
                    q.outcome = Some(o);
                }
            }
        }
        let was_empty = q.items.is_empty();
        q.items.push_back(event);
        if was_empty {
            self.ring.push_back(id);
        }
    }

    /// Merge the delta `event` into its stream's last queued event, if
    /// that may absorb it ([`StreamEvent::may_absorb`]); otherwise hand it
    /// back.
    pub fn merge_into_last(&mut self, event: StreamEvent) -> Result<(), StreamEvent> {
        let Some(q) = self.streams.get_mut(event.stream_id()) else {
            return Err(event);
        };
        let Some(last) = q.items.back_mut() else {
            return Err(event);
        };
        let added = event.text_len();
        if last.text_len() + added > MERGED_TEXT_MAX {
            return Err(event);
        }
        let position = event.position();
        last.absorb(event)?;
        if let Some(p) = position {
            q.position = p;
        }
        self.bytes += added;
        Ok(())
    }

    /// The next stream event in round-robin order; a stream whose next
    /// event is a delta is skipped unless `deltas_allowed`. The deltas
    /// queued right behind a taken delta are merged into it within
    /// `merge` (several tokens already waiting go out as one event).
    pub fn pop_stream(&mut self, deltas_allowed: bool, merge: MergeLimit) -> Option<StreamEvent> {
        for _ in 0..self.ring.len() {
            let id = self.ring.pop_front()?;
            let Some(q) = self.streams.get_mut(&id) else {
                continue;
            };
            if !deltas_allowed && q.items.front().is_some_and(StreamEvent::is_delta) {
                self.ring.push_back(id);
                continue;
            }
            let Some(mut event) = q.items.pop_front() else {
                continue;
            };
            let (mut events, mut weight) = (1, event.weight());
            while q
                .items
                .front()
                .is_some_and(|next| merge.allows(&event, next))
            {
                let Some(next) = q.items.pop_front() else {
                    break;
                };
                let w = next.weight();
                match event.absorb(next) {
                    Ok(()) => (events, weight) = (events + 1, weight + w),
                    Err(next) => {
                        q.items.push_front(next);
                        break;
                    }
                }
            }
            if !q.items.is_empty() {
                self.ring.push_back(id);
            }
            self.events -= events;
            self.bytes = self.bytes.saturating_sub(weight);
            return Some(event);
        }
        None
    }

    /// Put an event a writer could not send back at the front of its
    /// stream's queue.
    pub fn push_stream_front(&mut self, event: StreamEvent) {
        self.count_in(event.weight());
        let id = event.stream_id().clone();
        if event.is_terminal() {
            self.ended.retain(|e| *e != id);
        }
        let q = self.streams.entry(id.clone()).or_default();
        let was_empty = q.items.is_empty();
        q.items.push_front(event);
        if was_empty {
            self.ring.push_front(id);
        }
    }

    /// Events to send first after a resume go at the front of `id`'s queue,
    /// in order. Deltas the client already has (at or before `have`) are
    /// dropped from what was still queued. Counts are taken again after.
    pub fn requeue_front(&mut self, id: &Arc<str>, lacking: Vec<StreamEvent>, have: Option<u64>) {
        let Some(q) = self.streams.get_mut(id) else {
            return;
        };
        let was_empty = q.items.is_empty();
        if let Some(have) = have {
            q.items.retain(|e| e.position().is_none_or(|p| p > have));
        }
        for event in lacking.into_iter().rev() {
            q.items.push_front(event);
        }
        let has_terminal = q.items.iter().any(StreamEvent::is_terminal);
        let now_empty = q.items.is_empty();
        self.recount();
        if was_empty && !now_empty {
            self.ring.push_back(id.clone());
        }
        if has_terminal {
            self.ended.retain(|e| e != id);
        }
    }

    /// `id` ended (its terminal event was taken): keep its queue a while,
    /// unless a new stream under that id has queued events already.
    /// Returns the id of a stream forgotten to make room, if any: the
    /// oldest ended one whose queue is empty.
    pub fn ended(&mut self, id: &Arc<str>) -> Option<Arc<str>> {
        let idle = |q: Option<&StreamQueue>| q.is_none_or(|q| q.items.is_empty());
        if idle(self.streams.get(id)) && !self.ended.contains(id) {
            self.ended.push_back(id.clone());
        }
        if self.ended.len() <= ENDED_KEPT {
            return None;
        }
        let pos = self.ended.iter().position(|e| idle(self.streams.get(e)))?;
        let old = self.ended.remove(pos)?;
        self.streams.remove(&old);
        Some(old)
    }

    /// Know stream `id` before its first event. An ended stream's queue
    /// under that id, drained, gives way to the new stream; true then (its
    /// replay record is not the new stream's either).
    pub fn open(&mut self, id: &Arc<str>) -> bool {
        match self.streams.get_mut(id) {
            None => {
                self.streams.insert(id.clone(), StreamQueue::default());
                false
            }
            Some(q) if q.outcome.is_some() && q.items.is_empty() => {
                *q = StreamQueue::default();
                self.revived(id);
                true
            }
            Some(_) => false,
        }
    }

    /// `id` started again (a new stream under an ended one's id).
    pub fn revived(&mut self, id: &Arc<str>) {
        self.ended.retain(|e| e != id);
    }

    fn count_in(&mut self, weight: usize) {
        self.events += 1;
        self.bytes += weight;
    }

    fn count_out(&mut self, weight: usize) {
        self.events -= 1;
        self.bytes = self.bytes.saturating_sub(weight);
    }

    /// Count events and bytes again from the queues (after a rewind, which
    /// adds and removes in bulk).
    fn recount(&mut self) {
        let control = self.control.iter().map(|c| (1, c.weight()));
        let streams = self
            .streams
            .values()
            .flat_map(|q| q.items.iter().map(|e| (1, e.weight())));
        let (events, bytes) = control
            .chain(streams)
            .fold((0, 0), |(n, b), (dn, db)| (n + dn, b + db));
        self.events = events;
        self.bytes = bytes;
    }
}
