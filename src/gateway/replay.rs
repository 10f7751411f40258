//! What a stream has already emitted and the client may not have received,
//! kept so a resumed client can be sent it again.
//!
//! The drain records every event it emits (start, tokens, terminal). An
//! `ai:ack` trims a stream's record up to the acknowledged `tokenCount`;
//! with credits on, that bounds a record by the ack window. Without acks a
//! record keeps the newest `max_tokens` tokens / `max_bytes` bytes; older
//! ones are taken as delivered. Entries are stored exactly as emitted
//! (coalesced events included), so a client's `lastTokenCount`, which is
//! always the `tokenCount` of an event it received, falls on an entry
//! boundary. The store is a trait so that a shared store (Redis) can hold
//! it when resume has to work across gateway nodes.

use super::outbox::Outbound;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Per-stream records of emitted events.
pub trait ReplayStore: Send {
    /// The drain emitted `item` for `stream`.
    fn record(&mut self, stream: &Arc<str>, item: Outbound);
    /// The client has rendered `stream` up to `token_count`.
    fn trim(&mut self, stream: &str, token_count: u64);
    /// Take the events of `stream` the client may lack: those after
    /// `last` (a `tokenCount`), or everything when `last` is `None`
    /// (including `ai:stream:start`). The record is emptied: the caller
    /// queues them again and the drain records them anew.
    fn take_after(&mut self, stream: &str, last: Option<u64>) -> Vec<Outbound>;
    /// Drop the record of `stream`.
    fn forget(&mut self, stream: &str);
    /// Bytes held, for `/stats`.
    fn bytes(&self) -> usize;
}

#[derive(Default)]
struct Record {
    items: VecDeque<Outbound>,
    tokens: usize,
    bytes: usize,
}

/// The in-memory store of one client.
pub struct MemoryReplay {
    records: HashMap<Arc<str>, Record>,
    max_tokens: usize,
    max_bytes: usize,
    bytes: usize,
}

impl MemoryReplay {
    pub fn new(max_tokens: usize, max_bytes: usize) -> Self {
        Self {
            records: HashMap::new(),
            max_tokens,
            max_bytes,
            bytes: 0,
        }
    }
}

fn size(item: &Outbound) -> usize {
    match item {
        Outbound::Token(t) => t.data.len() + 64,
        _ => 128,
    }
}

impl ReplayStore for MemoryReplay {
    fn record(&mut self, stream: &Arc<str>, item: Outbound) {
        let r = self.records.entry(stream.clone()).or_default();
        let n = size(&item);
        r.bytes += n;
        self.bytes += n;
        if matches!(item, Outbound::Token(_)) {
            r.tokens += 1;
        }
        r.items.push_back(item);
        // Keep the newest: evict the oldest tokens past the caps (a start
        // or terminal event is never evicted; there is one of each).
        while r.tokens > self.max_tokens || r.bytes > self.max_bytes {
            let Some(pos) = r.items.iter().position(|i| matches!(i, Outbound::Token(_))) else {
                break;
            };
            if let Some(old) = r.items.remove(pos) {
                let n = size(&old);
                r.bytes -= n;
                self.bytes -= n;
                r.tokens -= 1;
            }
        }
    }

    fn trim(&mut self, stream: &str, token_count: u64) {
        let Some(r) = self.records.get_mut(stream) else {
            return;
        };
        // An ack means the client has the start too.
        r.items.retain(|i| {
            let keep = match i {
                Outbound::Start(_) => false,
                Outbound::Token(t) => t.token_count > token_count,
                _ => true,
            };
            if !keep {
                let n = size(i);
                r.bytes -= n;
                self.bytes -= n;
                if matches!(i, Outbound::Token(_)) {
                    r.tokens -= 1;
                }
            }
            keep
        });
    }

    fn take_after(&mut self, stream: &str, last: Option<u64>) -> Vec<Outbound> {
        let Some(r) = self.records.remove(stream) else {
            return Vec::new();
        };
        self.bytes -= r.bytes;
        r.items
            .into_iter()
            .filter(|i| match (i, last) {
                (Outbound::Start(_), Some(_)) => false,
                (Outbound::Token(t), Some(l)) => t.token_count > l,
                _ => true,
            })
            .collect()
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

    fn token(n: u64, data: &str) -> Outbound {
        Outbound::Token(Token {
            stream_id: "s".into(),
            data: data.into(),
            token_count: n,
            agent: None,
            metadata: None,
        })
    }

    fn counts(items: &[Outbound]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|i| match i {
                Outbound::Token(t) => Some(t.token_count),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replays_after_the_last_count_and_trims_on_ack() {
        let id: Arc<str> = "s".into();
        let mut r = MemoryReplay::new(100, 1 << 20);
        for n in 1..=5 {
            r.record(&id, token(n, "x"));
        }
        r.trim("s", 2);
        assert_eq!(counts(&r.take_after("s", Some(3))), vec![4, 5]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn keeps_the_newest_tokens_under_the_caps() {
        let id: Arc<str> = "s".into();
        let mut r = MemoryReplay::new(3, 1 << 20);
        for n in 1..=10 {
            r.record(&id, token(n, "x"));
        }
        assert_eq!(counts(&r.take_after("s", None)), vec![8, 9, 10]);
    }
}
