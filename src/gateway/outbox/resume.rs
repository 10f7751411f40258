//! The outbox's side of a resume: holding back while detached, and
//! rewinding the streams so that what a client lacks is sent again first.

use super::{ClientOutbox, Outbound};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// A resumed stream, as `ai:reconnect:success` lists it.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub stream_id: Arc<str>,
    pub state: &'static str,
    pub token_count: u64,
    /// Tokens queued again because the client lacked them.
    pub replayed: u64,
}

impl ClientOutbox {
    /// Mark the client detached (no socket) or attached again.
    pub fn set_detached(&self, detached: bool) {
        self.lock().detached = detached;
        self.has_room.notify_waiters();
    }

    /// Wait until no drain task runs (the previous socket's has seen its
    /// attachment cancelled and stopped).
    pub async fn wait_for_drain_to_stop(&self) {
        drop(self.drain_lock.lock().await);
    }

    /// Prepare a resume: for each stream asked for (`None`: every stream
    /// this client has or recently had), put the events the client lacks,
    /// those after its `lastTokenCount`, back at the front of the stream's
    /// queue, so the next drain sends them first, then the rest in order.
    /// Returns the resumed streams and the ids that are unknown here.
    /// Call only while no drain runs.
    pub fn rewind(
        &self,
        wanted: Option<Vec<(String, Option<u64>)>>,
    ) -> (Vec<Resumed>, Vec<String>) {
        let mut s = self.lock();
        let wanted: Vec<(String, Option<u64>)> = match wanted {
            Some(w) => w,
            None => s.streams.keys().map(|k| (k.to_string(), None)).collect(),
        };
        let mut resumed = Vec::new();
        let mut unknown = Vec::new();
        for (id, last) in wanted {
            let Some((key, _)) = s.streams.get_key_value(id.as_str()) else {
                unknown.push(id);
                continue;
            };
            let key = key.clone();
            let mut lacking = s.replay.take_after(&key, last);
            let st = &mut *s;
            let Some(q) = st.streams.get_mut(&key) else {
                continue;
            };
            // Credits restart from what the client has.
            st.unacked = st.unacked.saturating_sub(q.emitted.saturating_sub(q.acked));
            // Queued tokens the client says it already has go too.
            if let Some(l) = last {
                let (mut gone, mut freed) = (0, 0);
                q.items.retain(|i| {
                    let had = matches!(i, Outbound::Token(t) if t.token_count <= l);
                    if had {
                        gone += 1;
                        freed += i.weight();
                    }
                    !had
                });
                st.events -= gone;
                st.bytes = st.bytes.saturating_sub(freed);
                self.stats.queued_events.fetch_sub(gone as u64, Relaxed);
            }
            // What the client says it has is where credits start again (a
            // terminal event may have written the acked mark forward).
            q.acked = last.unwrap_or(0).min(q.position);
            q.emitted = q.acked;
            let was_empty = q.items.is_empty();
            let replayed = lacking.iter().map(Outbound::tokens).sum();
            for item in lacking.drain(..).rev() {
                st.events += 1;
                st.bytes += item.weight();
                self.stats.queued_events.fetch_add(1, Relaxed);
                q.items.push_front(item);
            }
            if was_empty && !q.items.is_empty() {
                st.ring.push_back(key.clone());
            }
            if q.items.iter().any(Outbound::is_terminal) {
                st.ended.retain(|e| *e != key);
            }
            resumed.push(Resumed {
                stream_id: key,
                state: q.outcome.unwrap_or("streaming"),
                token_count: q.position,
                replayed,
            });
        }
        self.update_episode(&mut s);
        drop(s);
        self.wake_drain.notify_one();
        (resumed, unknown)
    }
}
