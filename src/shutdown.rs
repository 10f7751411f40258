//! How the gateway stops: one cancellation tree and one place that knows
//! every task.
//!
//! [`Shutdown`] holds the root token (every client's token is its child,
//! every stream's a grandchild), the tracker every task is spawned on, a
//! and a second tracker for stream tasks alone. [`Shutdown::run`] is the
//! whole sequence, bounded as a whole by the grace period: cancel the root
//! (streams end with `shutdown` and queue their terminal events), wait for
//! the stream tasks, let the writers deliver what is queued (the caller
//! says how: it owns the clients), then wait for every task. What is still running at the deadline is left to the caller
//! to cut off.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Shutdown {
    /// Parent of every client's token: cancelled first.
    pub root: CancellationToken,
    tasks: TaskTracker,
    streams: TaskTracker,
    grace: Duration,
}

impl Shutdown {
    pub fn new(grace: Duration) -> Self {
        Self {
            root: CancellationToken::new(),
            tasks: TaskTracker::new(),
            streams: TaskTracker::new(),
            grace,
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Spawn a task that shutdown waits for.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Spawn a stream's task: shutdown waits for these first.
    pub fn spawn_stream(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(self.streams.track_future(task));
    }

    pub fn is_shutting_down(&self) -> bool {
        self.root.is_cancelled()
    }

    /// Stop everything within `within` from now (at most the grace
    /// period; the caller keeps the rest of it for closing sockets);
    /// `flush` is called once the streams are over, to make the writers
    /// finish. Returns the deadline, so the caller can bound what it
    /// still does.
    pub async fn run(&self, within: Duration, flush: impl FnOnce()) -> Instant {
        let deadline = Instant::now() + within.min(self.grace);
        self.root.cancel();
        self.streams.close();
        let _ = tokio::time::timeout_at(deadline, self.streams.wait()).await;
        flush();
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = self.grace.as_millis() as u64,
                "tasks still running at the end of the grace period"
            );
        }
        deadline
    }
}
