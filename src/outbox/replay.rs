//! What a client's streams have already handed to a writer and the client
//! may not have received, kept so that a resumed client can be sent it
//! again.
//!
//! Writers report every stream event they sent; an `ai:ack` trims a
//! stream's record up to the acknowledged position (with credits on, that
//! bounds a record by the ack window). Without acks a record keeps the
//! newest `max_tokens` deltas / `max_bytes` bytes; older ones are taken as
//! delivered. A client that has never acked keeps less
//! (`max_unacked_bytes`): nothing it says bounds its records, so they are
//! only a guess at what a dropped connection swallowed, held for every
//! stream it has. Entries are stored exactly as sent (coalesced events
//! included) and keyed by position, so a client's `lastTokenCount`, which is
//! always the position of an event it received, falls on an entry boundary.
//!
//! [`ReplayLog`] is a trait, per client and per stream, whose reads are
//! asynchronous, so that a shared store (Redis) can hold the records when a
//! resume has to work across gateway nodes; [`MemoryReplay`] is the
//! in-process store.

use super::event::StreamEvent;
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
    /// Bytes held, for `/stats`.
    fn bytes(&self) -> usize;
}

#[derive(Default)]
struct Record {
    items: VecDeque<StreamEvent>,
    deltas: usize,
    bytes: usize,
}

/// How much one stream's record keeps.
#[derive(Debug, Clone, Copy)]
pub struct ReplayCaps {
    pub deltas: usize,
    pub bytes: usize,
    /// The byte cap while the client has never acked.
    pub unacked_bytes: usize,
}

/// The in-memory store of one client.
pub struct MemoryReplay {
    records: HashMap<Arc<str>, Record>,
    caps: ReplayCaps,
    /// The client has acked at least once (its acks trim the records).
    acked: bool,
    bytes: usize,
}

impl MemoryReplay {
    pub fn new(caps: ReplayCaps) -> Self {
        Self {
            records: HashMap::new(),
            caps,
            acked: false,
            bytes: 0,
        }
    }

    fn max_bytes(&self) -> usize {
        if self.acked {
            self.caps.bytes
        } else {
            self.caps.unacked_bytes.min(self.caps.bytes)
        }
    }
}

fn size(event: &StreamEvent) -> usize {
    event.delta_text().map_or(128, |t| t.len() + 64)
}

impl ReplayLog for MemoryReplay {
    fn record(&mut self, event: StreamEvent) {
        let (max_deltas, max_bytes) = (self.caps.deltas, self.max_bytes());
        let r = self.records.entry(event.stream_id().clone()).or_default();
        let n = size(&event);
        r.bytes += n;
        self.bytes += n;
        if event.is_delta() {
            r.deltas += 1;
        }
        r.items.push_back(event);
        // Keep the newest: evict the oldest deltas past the caps (a start
        // or terminal event is never evicted; there is one of each).
        while r.deltas > max_deltas || r.bytes > max_bytes {
            let Some(pos) = r.items.iter().position(StreamEvent::is_delta) else {
                break;
            };
            if let Some(old) = r.items.remove(pos) {
                let n = size(&old);
                r.bytes -= n;
                self.bytes -= n;
                r.deltas -= 1;
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
        let Some(r) = self.records.remove(stream) else {
            return Box::pin(std::future::ready(Vec::new()));
        };
        self.bytes -= r.bytes;
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
        if let Some(r) = self.records.remove(stream) {
            self.bytes -= r.bytes;
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

    fn caps(deltas: usize, bytes: usize) -> ReplayCaps {
        ReplayCaps {
            deltas,
            bytes,
            unacked_bytes: bytes,
        }
    }

    fn positions(events: &[StreamEvent]) -> Vec<u64> {
        events.iter().filter_map(StreamEvent::position).collect()
    }

    #[tokio::test]
    async fn replays_after_the_last_position_and_trims_on_ack() {
        let mut r = MemoryReplay::new(caps(100, 1 << 20));
        for n in 1..=5 {
            r.record(token(n, "x"));
        }
        r.trim("s", 2);
        assert_eq!(positions(&r.take_after("s", Some(3)).await), vec![4, 5]);
        assert_eq!(r.bytes(), 0);
    }

    #[tokio::test]
    async fn keeps_the_newest_deltas_under_the_caps() {
        let mut r = MemoryReplay::new(caps(3, 1 << 20));
        for n in 1..=10 {
            r.record(token(n, "x"));
        }
        assert_eq!(positions(&r.take_after("s", None).await), vec![8, 9, 10]);
    }

    #[tokio::test]
    async fn a_client_that_never_acked_keeps_less_until_it_acks() {
        // 10 bytes of text + 64 of accounting per token.
        let mut r = MemoryReplay::new(ReplayCaps {
            deltas: 100,
            bytes: 10 * 74,
            unacked_bytes: 2 * 74,
        });
        for n in 1..=5 {
            r.record(token(n, "0123456789"));
        }
        assert_eq!(r.bytes(), 2 * 74, "never acked: the newest two");
        r.trim("s", 4);
        for n in 6..=12 {
            r.record(token(n, "0123456789"));
        }
        assert_eq!(
            positions(&r.take_after("s", Some(4)).await),
            (5..=12).collect::<Vec<_>>()
        );
    }
}
