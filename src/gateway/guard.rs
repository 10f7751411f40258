//! Panics stop at the request or stream that hit them.
//!
//! socketioxide runs each handler on its own task and tokio would only log
//! a panic there, so the client would never hear back. Handlers run their
//! fallible part through [`catch`] (synchronous) or [`catch_async`]; a panic
//! is logged with its message and becomes [`GatewayError::Internal`], whose
//! wire text is only "internal error", for that one request. Stream tasks
//! are spawned through [`spawn_stream`]: a panic inside ends that stream
//! with `ai:stream:error` `internal` (if it had not ended yet) and leaves
//! the client and its other streams running.

use super::outbox::Outbound;
use super::registry::Client;
use crate::error::GatewayError;
use crate::protocol::StreamError;
use crate::telemetry::Stats;
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The text of a panic payload, for the log only.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

fn internal(what: &str, payload: &(dyn Any + Send)) -> GatewayError {
    tracing::error!(
        handler = what,
        panic = panic_message(payload),
        "handler panicked"
    );
    GatewayError::Internal(format!("{what} panicked"))
}

/// Run `f`; a panic becomes `internal`.
pub fn catch<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| Err(internal(what, &*p)))
}

/// Await `fut`; a panic becomes `internal`.
pub async fn catch_async<T>(
    what: &str,
    fut: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| Err(internal(what, &*p)))
}

/// Spawn a stream's task on `tracker`; if it panics before its terminal
/// event, the stream ends with `ai:stream:error` `internal`.
pub fn spawn_stream(
    tracker: &TaskTracker,
    client: Arc<Client>,
    id: Arc<str>,
    stats: Arc<Stats>,
    span: tracing::Span,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let guarded = async move {
        if let Err(p) = AssertUnwindSafe(task).catch_unwind().await {
            tracing::error!(panic = panic_message(&*p), "stream task panicked");
            fail_after_panic(&client, &id, &stats);
        }
    };
    tracker.spawn(guarded.instrument(span));
}

/// End a stream whose task died: the terminal event, the counters, and
/// its registry entry. Nothing to do if it had already ended (the task
/// removes its entry right after queuing its terminal event).
fn fail_after_panic(client: &Client, id: &Arc<str>, stats: &Stats) {
    if !client.has_stream(id) {
        return;
    }
    let err = GatewayError::Internal("stream task panicked".into());
    client.outbox.push_stream_event(
        id,
        Outbound::StreamError(StreamError {
            stream_id: id.clone(),
            code: err.code(),
            error: err.client_message(),
            retryable: err.retryable(),
        }),
    );
    stats.streams_failed.fetch_add(1, Relaxed);
    stats.streams_active.fetch_sub(1, Relaxed);
    client.remove_stream(id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::outbox::{ClientOutbox, OutboxLimits};
    use crate::protocol::BackpressurePolicy;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn a_panic_becomes_internal_and_says_nothing_more() {
        let r: Result<(), _> = catch("ai:cancel", || {
            panic!("index out of bounds at /home/dev/src/secret.rs:12 key=sk-123")
        });
        let e = r.unwrap_err();
        assert_eq!(e.code(), "internal");
        assert_eq!(e.client_message(), "internal error");
        assert_eq!(e.details(), serde_json::json!({}));
    }

    #[tokio::test]
    async fn a_panicking_stream_task_ends_only_its_stream() {
        let stats = Arc::new(Stats::default());
        let limits = OutboxLimits {
            threshold: 100,
            max_bytes: 1 << 20,
            ack_window: 256,
            policy: BackpressurePolicy::Coalesce,
            slow_timeout: std::time::Duration::from_secs(30),
            replay_tokens: 16,
            replay_bytes: 4096,
        };
        let outbox = Arc::new(ClientOutbox::new(limits, stats.clone()));
        let root = CancellationToken::new();
        let client = Arc::new(Client::new(
            socketioxide::socket::Sid::new(),
            BackpressurePolicy::Coalesce,
            &root,
            outbox,
        ));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        client.add_stream(a.clone(), 10).unwrap();
        client.add_stream(b.clone(), 10).unwrap();
        stats.streams_active.fetch_add(2, Relaxed);
        let tracker = TaskTracker::new();
        spawn_stream(
            &tracker,
            client.clone(),
            a.clone(),
            stats.clone(),
            tracing::Span::none(),
            async { panic!("boom in /src/providers/x.rs") },
        );
        tracker.close();
        tracker.wait().await;
        assert!(!client.has_stream(&a), "the panicked stream is gone");
        assert!(client.has_stream(&b), "the other stream lives on");
        assert_eq!(client.outbox.len(), 1, "one terminal event queued");
        assert_eq!(stats.streams_failed.load(Relaxed), 1);
        assert_eq!(stats.streams_active.load(Relaxed), 1);
    }
}
