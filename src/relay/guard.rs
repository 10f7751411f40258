//! [`StreamGuard`]: what must hold however a stream ends.
//!
//! A live stream is counted in `/stats` (started, active), has an entry in
//! its client's stream table and owes its client exactly one terminal
//! event. The guard is made when the stream is admitted and is the only
//! thing that undoes that: [`StreamGuard::finish`] queues the terminal
//! events and counts how the stream ended; its `Drop` (which also runs when
//! the task panics or is dropped unfinished) queues `ai:stream:error`
//! `internal` if no terminal event was queued, then lowers the active
//! gauge and removes the stream's entry. A stream that is a turn of a
//! session also holds the session's [`SessionLease`]: the finish ends it
//! with the turn ([`StreamGuard::end_turn`], before the terminal events
//! are queued, so the next turn finds the session free and up to date),
//! and an unfinished drop appends the prompt as an errored turn and
//! releases it. So every exit path is right by construction, no session
//! stays busy after its stream, and nothing of a stream can follow its
//! terminal event (the entry goes only after it is queued).

use crate::clients::Client;
use crate::error::GatewayError;
use crate::outbox::StreamEvent;
use crate::protocol::{StreamError, TurnStatus};
use crate::sessions::{SessionLease, TurnReply};
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
    /// The session this stream is a turn of, until the turn is ended.
    session: Option<SessionLease>,
    /// Kept after the lease is ended, for `ai:done`.
    session_turn: Option<(Arc<str>, u64)>,
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
            session: None,
            session_turn: None,
            finished: false,
        }
    }

    /// Hold `session`'s lease for this stream (a turn of that session).
    pub fn with_session(mut self, session: Option<SessionLease>) -> Self {
        self.session_turn = session.as_ref().map(|s| (s.id().clone(), s.turn()));
        self.session = session;
        self
    }

    /// The session's id and this turn's number, when the stream is a turn.
    pub fn session_turn(&self) -> Option<(&Arc<str>, u64)> {
        self.session_turn.as_ref().map(|(id, turn)| (id, *turn))
    }

    /// Is this stream a turn of a session (so its reply text is kept)?
    pub fn has_session(&self) -> bool {
        self.session_turn.is_some()
    }

    /// Append the turn to the session and release it; a no-op without one.
    pub async fn end_turn(&mut self, reply: Option<TurnReply>, status: TurnStatus) {
        if let Some(lease) = self.session.take() {
            lease.end(reply, status).await;
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
            // The session first, so it is free when the client hears.
            if let Some(lease) = self.session.take() {
                lease.fail_now();
            }
            let err = GatewayError::Internal("stream task ended unfinished".into());
            let wire = err.wire();
            self.client
                .outbox
                .push_stream_event(StreamEvent::Failed(StreamError {
                    stream_id: self.id.clone(),
                    code: wire.code,
                    error: wire.message,
                    retryable: wire.retryable,
                    status: wire.status,
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
    use crate::config::SessionsConfig;
    use crate::outbox::{ClientOutbox, OutboxSettings};
    use crate::protocol::BackpressurePolicy;
    use crate::protocol::{ChatMessage, Role};
    use crate::rate_limit::ClientBudget;
    use crate::sessions::{MemoryStore, SessionStore};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    fn client(stats: &Arc<Stats>) -> Arc<Client> {
        let limits = OutboxSettings {
            threshold: 100,
            max_bytes: 1 << 20,
            ack_window: 256,
            policy: BackpressurePolicy::Coalesce,
            slow_timeout: std::time::Duration::from_secs(30),
            replay_tokens: 16,
            replay_bytes: 4096,
            replay_unacked_bytes: 4096,
            replay_bytes_per_client: 0,
            max_replay_bytes: 0,
        };
        let outbox = Arc::new(ClientOutbox::new(limits, stats.clone()));
        let root = CancellationToken::new();
        Arc::new(Client::new(
            None,
            None,
            ClientBudget::unlimited(),
            &root,
            outbox,
        ))
    }

    #[tokio::test]
    async fn a_panicking_stream_task_ends_only_its_stream() {
        let stats = Arc::new(Stats::default());
        let client = client(&stats);
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

    #[tokio::test]
    async fn a_dead_stream_task_frees_its_session_and_keeps_the_prompt() {
        let stats = Arc::new(Stats::default());
        let client = client(&stats);
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(&SessionsConfig::default()));
        let (lease, _) = SessionLease::begin(
            &store,
            None,
            "chat",
            vec![ChatMessage::text(Role::User, "why?")],
        )
        .await
        .unwrap();
        client.add_stream("a".into(), 10).unwrap();
        let guard = StreamGuard::new("a".into(), client.clone(), stats).with_session(Some(lease));
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("boom");
        });
        assert!(task.await.is_err());
        let detail = store.get(None, "chat").await.unwrap();
        assert_eq!(detail.messages.len(), 1);
        let m = &detail.messages[0];
        assert_eq!((m.role, m.content.as_str()), (Role::User, "why?"));
        assert_eq!(m.status, Some(TurnStatus::Error));
        assert!(store.begin(None, "chat").await.is_ok(), "not busy any more");
    }
}
