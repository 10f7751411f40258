//! What a client's streams have already handed to a writer and the client
//! may not have received, kept so that a resumed client can be sent it
//! again.
//!
//! Writers report every stream event they sent; an `ai:ack` trims a
//! stream's record up to the acknowledged position (with credits on, that
//! bounds a record by the ack window). Without acks a record keeps the
//! newest `max_tokens` deltas / `max_bytes` bytes; older ones are taken as
//! delivered. A client that has never acked keeps less per stream
//! (`max_unacked_bytes`): nothing it says bounds its records, so they are
//! only a guess at what a dropped connection swallowed, held for every
//! stream it has. Across a client's records (ended streams' included) the
//! outbox bounds the bytes with [`ReplayLog::shrink_to`], which gives up
//! the oldest deltas first, of ended streams before live ones; a stream's
//! start and terminal event are never given up, so a resume still learns
//! how every stream it asks about ended. Entries are stored exactly as
//! sent (coalesced events included) and keyed by position, so a client's
//! `lastTokenCount`, which is always the position of an event it received,
//! falls on an entry boundary. Bytes are counted as held in memory: the
//! event itself and the text it owns.
//!
//! [`ReplayLog`] is a trait, per client and per stream, whose reads are
//! asynchronous, so that a shared store (Redis) can hold the records when a
//! resume has to work across gateway nodes; [`MemoryReplay`] is the
//! in-process store.

use super::event::StreamEvent;
use crate::protocol::{Done, StreamCancelled, StreamStart, ToolCallDelta};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Per-stream records of sent events, keyed by position.
pub trait ReplayLog: Send {
    /// A writer sent `event`.
    fn record(&mut self, event: StreamEvent);
    /// The client has rendered `stream` up to `position`.
    fn trim(&mut self, stream: &str, position: u64);
    /// Take the events of `stream` the client may lack: those after
    /// `after` (a position), or everything when `after` is `None`
    /// (including the stream's start). The record is emptied: the caller
    /// queues them again and the writer records them anew.
    fn take_after(
        &mut self,
        stream: &str,
        after: Option<u64>,
    ) -> BoxFuture<'static, Vec<StreamEvent>>;
    /// Drop the record of `stream`.
    fn forget(&mut self, stream: &str);
    /// Give up the oldest deltas until at most `bytes` are held: those of
    /// ended streams first, then of live ones; starts and terminal events
    /// stay.
    fn shrink_to(&mut self, bytes: usize);
    /// Bytes held, for `/stats` and the caps.
    fn bytes(&self) -> usize;
}

#[derive(Default)]
struct Record {
    items: VecDeque<StreamEvent>,
    deltas: usize,
    bytes: usize,
    /// Its terminal event is recorded.
    ended: bool,
}

impl Record {
    /// Give up the oldest delta; its size, or `None` when there is none.
    fn evict_oldest_delta(&mut self) -> Option<usize> {
        let pos = self.items.iter().position(StreamEvent::is_delta)?;
        let old = self.items.remove(pos)?;
        let n = size(&old);
        self.bytes -= n;
        self.deltas -= 1;
        Some(n)
    }
}

/// The in-memory store of one client.
pub struct MemoryReplay {
    records: HashMap<Arc<str>, Record>,
    /// Stream ids in the order their records began (oldest first).
    order: VecDeque<Arc<str>>,
    max_deltas: usize,
    max_bytes: usize,
    /// The per-stream byte cap while the client has never acked.
    max_unacked_bytes: usize,
    /// The client has acked at least once (its acks trim the records).
    acked: bool,
    bytes: usize,
}

impl MemoryReplay {
    pub fn new(max_deltas: usize, max_bytes: usize) -> Self {
        Self {
            records: HashMap::new(),
            order: VecDeque::new(),
            max_deltas,
            max_bytes,
            max_unacked_bytes: max_bytes,
            acked: false,
            bytes: 0,
        }
    }

    /// Keep at most `bytes` per stream until the client first acks.
    pub fn with_unacked_cap(mut self, bytes: usize) -> Self {
        self.max_unacked_bytes = bytes;
        self
    }

    fn max_stream_bytes(&self) -> usize {
        if self.acked {
            self.max_bytes
        } else {
            self.max_unacked_bytes.min(self.max_bytes)
        }
    }

    fn remove(&mut self, stream: &str) -> Option<Record> {
        let r = self.records.remove(stream)?;
        self.order.retain(|id| &**id != stream);
        self.bytes -= r.bytes;
        Some(r)
    }

    /// Evict the oldest deltas of records that are `ended` (or not) until
    /// `target` bytes are held; whether it got there.
    fn shrink_records(&mut self, ended: bool, target: usize) -> bool {
        for id in &self.order {
            let Some(r) = self.records.get_mut(id).filter(|r| r.ended == ended) else {
                continue;
            };
            while self.bytes > target {
                match r.evict_oldest_delta() {
                    Some(n) => self.bytes -= n,
                    None => break,
                }
            }
            if self.bytes <= target {
                return true;
            }
        }
        false
    }
}

/// Bytes an event holds in memory: itself and the text it owns.
fn size(event: &StreamEvent) -> usize {
    use std::mem::size_of;
    let owned = match event {
        StreamEvent::Token(t) => t.data.capacity(),
        StreamEvent::Reasoning(r) => r.data.capacity(),
        StreamEvent::ToolCall(c) => size_of::<ToolCallDelta>() + c.arguments_delta.capacity(),
        StreamEvent::Start(_) => size_of::<StreamStart>(),
        StreamEvent::Done(d) => {
            size_of::<Done>()
                + d.finish_reason.capacity()
                + d.full_response.as_ref().map_or(0, String::capacity)
                + d.tool_calls
                    .iter()
                    .map(|c| c.arguments.capacity() + 64)
                    .sum::<usize>()
        }
        StreamEvent::Cancelled(_) => size_of::<StreamCancelled>(),
        StreamEvent::Failed(e) => e.error.capacity(),
        StreamEvent::Complete(_) => 0,
    };
    size_of::<StreamEvent>() + owned
}

impl ReplayLog for MemoryReplay {
    fn record(&mut self, event: StreamEvent) {
        let (max_deltas, max_bytes) = (self.max_deltas, self.max_stream_bytes());
        let id = event.stream_id().clone();
        if !self.records.contains_key(&id) {
            self.order.push_back(id.clone());
        }
        let r = self.records.entry(id).or_default();
        let n = size(&event);
        r.bytes += n;
        self.bytes += n;
        if event.is_delta() {
            r.deltas += 1;
        }
        r.ended |= event.is_terminal();
        r.items.push_back(event);
        // Keep the newest: evict the oldest deltas past the caps (a start
        // or terminal event is never evicted; there is one of each).
        while r.deltas > max_deltas || r.bytes > max_bytes {
            match r.evict_oldest_delta() {
                Some(n) => self.bytes -= n,
                None => break,
            }
        }
    }

    fn trim(&mut self, stream: &str, position: u64) {
        self.acked = true;
        let Some(r) = self.records.get_mut(stream) else {
            return;
        };
        // An ack means the client has the start too.
        r.items.retain(|e| {
            let keep = match e {
                StreamEvent::Start(_) => false,
                e => e.position().is_none_or(|p| p > position),
            };
            if !keep {
                let n = size(e);
                r.bytes -= n;
                self.bytes -= n;
                if e.is_delta() {
                    r.deltas -= 1;
                }
            }
            keep
        });
    }

    fn take_after(
        &mut self,
        stream: &str,
        after: Option<u64>,
    ) -> BoxFuture<'static, Vec<StreamEvent>> {
        let Some(r) = self.remove(stream) else {
            return Box::pin(std::future::ready(Vec::new()));
        };
        let lacking = r
            .items
            .into_iter()
            .filter(|e| match (e, after) {
                (StreamEvent::Start(_), Some(_)) => false,
                (e, Some(after)) => e.position().is_none_or(|p| p > after),
                _ => true,
            })
            .collect();
        Box::pin(std::future::ready(lacking))
    }

    fn forget(&mut self, stream: &str) {
        self.remove(stream);
    }

    fn shrink_to(&mut self, bytes: usize) {
        if self.bytes > bytes && !self.shrink_records(true, bytes) {
            self.shrink_records(false, bytes);
        }
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Token;

    fn token(n: u64, data: &str) -> StreamEvent {
        StreamEvent::Token(Token {
            stream_id: "s".into(),
            data: data.into(),
            token_count: n,
            agent: None,
            metadata: None,
        })
    }

    fn positions(events: &[StreamEvent]) -> Vec<u64> {
        events.iter().filter_map(StreamEvent::position).collect()
    }

    #[tokio::test]
    async fn replays_after_the_last_position_and_trims_on_ack() {
        let mut r = MemoryReplay::new(100, 1 << 20);
        for n in 1..=5 {
            r.record(token(n, "x"));
        }
        r.trim("s", 2);
        assert_eq!(positions(&r.take_after("s", Some(3)).await), vec![4, 5]);
        assert_eq!(r.bytes(), 0);
    }

    #[tokio::test]
    async fn shrinking_gives_up_ended_streams_deltas_first_and_keeps_their_ends() {
        use crate::protocol::StreamCancelled;
        let ev = |id: &str, n: u64| {
            StreamEvent::Token(Token {
                stream_id: id.into(),
                data: "x".repeat(100),
                token_count: n,
                agent: None,
                metadata: None,
            })
        };
        let mut r = MemoryReplay::new(1_000, 1 << 20);
        for n in 1..=10 {
            r.record(ev("old", n));
        }
        r.record(StreamEvent::Cancelled(Box::new(StreamCancelled {
            stream_id: "old".into(),
            reason: crate::protocol::CancelReason::Client,
            token_count: 10,
            usage: None,
        })));
        for n in 1..=10 {
            r.record(ev("live", n));
        }
        let one = size(&ev("x", 1));
        r.shrink_to(r.bytes() - 12 * one);
        // All ten of the ended stream went first, then two of the live one.
        assert_eq!(r.take_after("live", Some(0)).await.len(), 8);
        let old = r.take_after("old", None).await;
        assert_eq!(old.len(), 1, "its terminal event stays");
        assert!(old[0].is_terminal());
        assert_eq!(r.bytes(), 0);
    }

    #[tokio::test]
    async fn a_client_that_never_acked_keeps_less_until_it_acks() {
        let one = size(&token(1, "0123456789"));
        let mut r = MemoryReplay::new(100, 10 * one).with_unacked_cap(2 * one);
        for n in 1..=5 {
            r.record(token(n, "0123456789"));
        }
        assert_eq!(r.bytes(), 2 * one, "never acked: the newest two");
        r.trim("s", 4);
        for n in 6..=12 {
            r.record(token(n, "0123456789"));
        }
        assert_eq!(
            positions(&r.take_after("s", Some(4)).await),
            (5..=12).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn keeps_the_newest_deltas_under_the_caps() {
        let mut r = MemoryReplay::new(3, 1 << 20);
        for n in 1..=10 {
            r.record(token(n, "x"));
        }
        assert_eq!(positions(&r.take_after("s", None).await), vec![8, 9, 10]);
    }
}
