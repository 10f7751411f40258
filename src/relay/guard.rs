//! [`StreamGuard`]: what must hold however a stream ends.
//!
//! A live stream is counted in `/stats` (started, active), has an entry in
//! its client's stream table and owes its client exactly one terminal
//! event. The guard is made when the stream is admitted and is the only
//! thing that undoes that: [`StreamGuard::finish`] queues the terminal
//! events and counts how the stream ended; its `Drop` (which also runs when
//! the task panics or is dropped unfinished) queues `ai:stream:error`
//! `internal` if no terminal event was queued, then lowers the active
//! gauge and removes the stream's entry. So every exit path is right by
//! construction, and nothing of a stream can follow its terminal event
//! (the entry goes only after it is queued).

use crate::clients::Client;
use crate::error::GatewayError;
use crate::outbox::StreamEvent;
use crate::protocol::StreamError;
use crate::telemetry::Stats;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// How a stream ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedAs {
    Completed,
    Cancelled,
    Failed,
}

pub struct StreamGuard {
    id: Arc<str>,
    client: Arc<Client>,
    stats: Arc<Stats>,
    finished: bool,
}

impl StreamGuard {
    /// Count a stream that was just admitted.
    pub fn new(id: Arc<str>, client: Arc<Client>, stats: Arc<Stats>) -> Self {
        stats.streams_started.fetch_add(1, Relaxed);
        stats.streams_active.fetch_add(1, Relaxed);
        Self {
            id,
            client,
            stats,
            finished: false,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Queue the stream's last events and count how it ended.
    pub fn finish(mut self, events: Vec<StreamEvent>, ended: EndedAs) {
        for event in events {
            self.client.outbox.push_stream_event(event);
        }
        self.counter(ended).fetch_add(1, Relaxed);
        self.finished = true;
    }

    fn counter(&self, ended: EndedAs) -> &AtomicU64 {
        match ended {
            EndedAs::Completed => &self.stats.streams_completed,
            EndedAs::Cancelled => &self.stats.streams_cancelled,
            EndedAs::Failed => &self.stats.streams_failed,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            tracing::error!(
                panicking = std::thread::panicking(),
                "stream task ended without a terminal event"
            );
            let err = GatewayError::Internal("stream task ended unfinished".into());
            let wire = err.wire();
            self.client
                .outbox
                .push_stream_event(StreamEvent::Failed(StreamError {
                    stream_id: self.id.clone(),
                    code: wire.code,
                    error: wire.message,
                    retryable: wire.retryable,
                }));
            self.counter(EndedAs::Failed).fetch_add(1, Relaxed);
        }
        self.stats.streams_active.fetch_sub(1, Relaxed);
        self.client.remove_stream(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{ClientOutbox, OutboxSettings};
    use crate::protocol::BackpressurePolicy;
    use crate::rate_limit::ClientBudget;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    #[tokio::test]
    async fn a_panicking_stream_task_ends_only_its_stream() {
        let stats = Arc::new(Stats::default());
        let limits = OutboxSettings {
            threshold: 100,
            max_bytes: 1 << 20,
            ack_window: 256,
            policy: BackpressurePolicy::Coalesce,
            slow_timeout: std::time::Duration::from_secs(30),
            replay_tokens: 16,
            replay_bytes: 4096,
            replay_bytes_per_client: 0,
            max_replay_bytes: 0,
        };
        let outbox = Arc::new(ClientOutbox::new(limits, stats.clone()));
        let root = CancellationToken::new();
        let client = Arc::new(Client::new(None, ClientBudget::unlimited(), &root, outbox));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        client.add_stream(a.clone(), 10).unwrap();
        client.add_stream(b.clone(), 10).unwrap();
        let guard_a = StreamGuard::new(a.clone(), client.clone(), stats.clone());
        let _guard_b = StreamGuard::new(b.clone(), client.clone(), stats.clone());
        let tracker = TaskTracker::new();
        tracker.spawn(async move {
            let _guard = guard_a;
            panic!("boom in /src/upstream/x.rs");
        });
        tracker.close();
        tracker.wait().await;
        assert!(!client.has_stream(&a), "the panicked stream is gone");
        assert!(client.has_stream(&b), "the other stream lives on");
        assert_eq!(client.outbox.len(), 1, "one terminal event queued");
        assert_eq!(stats.streams_failed.load(Relaxed), 1);
        assert_eq!(stats.streams_active.load(Relaxed), 1);
    }
}
