//! The outbox's side of a resume: rewinding the streams so that what the
//! client lacks is sent again first, then the rest in order.
//!
//! Only a reader may rewind, so no writer is running: the previous one is
//! gone (its reader dropped, recording what it sent) and the next one will
//! start with this reader.

use super::event::StreamEvent;
use super::reader::OutboxReader;
use std::sync::Arc;

/// A resumed stream, as `ai:reconnect:success` lists it.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub stream_id: Arc<str>,
    /// `streaming`, or how the stream ended.
    pub state: &'static str,
    /// The stream's position.
    pub token_count: u64,
    /// Upstream pieces queued again because the client lacked them.
    pub replayed: u64,
}

impl OutboxReader {
    /// For each stream asked for (`None`: every stream this client has or
    /// recently had) with the position the client has (`None`: nothing,
    /// not even the start), put the events it lacks back at the front of
    /// the stream's queue. Returns the resumed streams and the ids that are
    /// unknown here.
    pub async fn rewind(
        &mut self,
        wanted: Option<Vec<(String, Option<u64>)>>,
    ) -> (Vec<Resumed>, Vec<String>) {
        let outbox = self.outbox().clone();
        let (reads, unknown) = outbox.change(|s| {
            let wanted = wanted.unwrap_or_else(|| {
                s.queues
                    .stream_ids()
                    .into_iter()
                    .map(|id| (id.to_string(), None))
                    .collect()
            });
            let mut reads = Vec::new();
            let mut unknown = Vec::new();
            for (id, have) in wanted {
                let Some(key) = s.queues.stream(&id).map(|_| Arc::<str>::from(id.as_str())) else {
                    unknown.push(id);
                    continue;
                };
                let read = s.replay.take_after(&key, have);
                reads.push((key, have, read));
            }
            (reads, unknown)
        });
        let mut lacking = Vec::with_capacity(reads.len());
        for (key, have, read) in reads {
            lacking.push((key, have, read.await));
        }
        let resumed = outbox.change(|s| {
            lacking
                .into_iter()
                .filter_map(|(key, have, events)| {
                    let q = s.queues.stream_mut(&key)?;
                    // What the client says it has is where credits start
                    // again (a terminal event may have moved the marks).
                    s.credits
                        .rewound(&mut q.credits, have.unwrap_or(0).min(q.position));
                    let replayed = events.iter().map(StreamEvent::pieces).sum();
                    s.queues.requeue_front(&key, events, have);
                    let q = s.queues.stream(&key)?;
                    Some(Resumed {
                        state: q.outcome.map_or("streaming", |o| o.as_str()),
                        token_count: q.position,
                        stream_id: key,
                        replayed,
                    })
                })
                .collect()
        });
        (resumed, unknown)
    }
}
