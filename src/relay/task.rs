//! `StreamTask`: one per stream, from the upstream request to the terminal
//! event, in three steps.
//!
//! 1. **open**: let the LLM router refine the route (when pending), then
//!    open the route's providers until one yields a first chunk; announce
//!    `ai:stream:start` naming the provider that serves.
//! 2. **relay**: move chunks into the client's outbox, racing the stream's
//!    cancellation, its deadline and the idle timeout (one waiter and one
//!    timer each for the whole relay, not per token: the idle timer is
//!    re-armed lazily, only when it fires early). Idle time is time spent
//!    waiting on the upstream; time the client holds the stream back (a
//!    push waiting for room) is not counted. The upstream response is
//!    dropped explicitly when the loop ends, so its connection is closed
//!    (and the upstream stops generating) before the terminal event is
//!    queued.
//! 3. **finish** (`finish.rs`): give back the stream's live-stream slot,
//!    append the turn to the stream's session, if it is one (the reply as
//!    the client received it, and how it ended), then turn how it ended
//!    into terminal events and hand them to the [`StreamGuard`], which
//!    also keeps the counters, the client's stream table and the session's
//!    busy mark right on every exit path, panics included.
//!
//! What the stream has produced so far is [`Progress`]'s (`progress.rs`).

use super::admission::StreamSlot;
use super::guard::StreamGuard;
use super::open::{Opened, open};
use super::progress::Progress;
use crate::clients::StreamControl;
use crate::error::{GatewayError, ProviderError};
use crate::orchestrator::Route;
use crate::outbox::{Pushed, StreamEvent, TooSlow};
use crate::protocol::{BackpressurePolicy, CancelReason, StreamStart, Usage, now_ms};
use crate::telemetry::Stats;
use crate::upstream::Chunk;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

pub struct StreamTask {
    pub control: Arc<StreamControl>,
    pub route: Route,
    /// Its place among the process's live streams.
    pub slot: StreamSlot,
    pub stats: Arc<Stats>,
    /// The server's root token: a cancel with no reason during shutdown
    /// is reported as `shutdown`.
    pub root: CancellationToken,
    pub stream_timeout: Duration,
    pub first_token_timeout: Duration,
    /// Once streaming, the longest wait for the next chunk.
    pub idle_timeout: Duration,
}

/// How a stream ended, before it is turned into events.
pub(super) enum Ending {
    Completed {
        finish_reason: String,
        usage: Option<Usage>,
    },
    Cancelled(CancelReason),
    Failed(GatewayError),
}

impl StreamTask {
    pub async fn run(mut self, guard: StreamGuard) {
        let started = Instant::now();
        let deadline = started + self.stream_timeout;
        let drop_policy = guard.client().outbox.policy() == BackpressurePolicy::Drop;
        let mut progress = Progress::new(drop_policy, guard.has_session());
        let ending = match self.open_step(&guard, deadline, started).await {
            Ok(opened) => {
                self.relay_step(&guard, opened, deadline, &mut progress)
                    .await
            }
            Err(ending) => ending,
        };
        self.slot.release();
        super::finish::finish(&self.route, guard, ending, progress, started).await;
    }

    /// Run `fut` unless the stream is cancelled or its deadline passes.
    async fn until<T>(&self, deadline: Instant, fut: impl Future<Output = T>) -> Result<T, Ending> {
        tokio::select! {
            biased;
            _ = self.control.cancel.cancelled() => Err(Ending::Cancelled(self.cancel_reason())),
            _ = sleep_until(deadline) => Err(Ending::Cancelled(CancelReason::Timeout)),
            out = fut => Ok(out),
        }
    }

    /// Refine the route, open a provider and announce the start.
    async fn open_step(
        &mut self,
        guard: &StreamGuard,
        deadline: Instant,
        started: Instant,
    ) -> Result<Opened, Ending> {
        // The LLM router, when the rules were unsure and it is on.
        let refinement = self.route.take_refinement();
        match self.until(deadline, refinement).await {
            Ok(Some(better)) => self.route = better,
            Ok(None) => {}
            Err(ending) => return Err(self.start_unserved(guard, ending)),
        }
        let opened = match self
            .until(deadline, open(&self.route, self.first_token_timeout))
            .await
        {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(self.start_unserved(guard, Ending::Failed(e.into()))),
            Err(ending) => return Err(self.start_unserved(guard, ending)),
        };
        self.push_start(guard, opened.provider.name().clone(), opened.model.clone());
        opened.provider.stats().ttft.record(started.elapsed());
        Ok(opened)
    }

    /// Nothing served: announce the first provider the route asked for, so
    /// every stream has the same shape (start, then its terminal).
    fn start_unserved(&self, guard: &StreamGuard, ending: Ending) -> Ending {
        if let Some(p) = self.route.chain.first() {
            let model = self.route.request_for(0, p.as_ref()).model;
            self.push_start(guard, p.name().clone(), model);
        }
        ending
    }

    fn push_start(&self, guard: &StreamGuard, provider: Arc<str>, model: Arc<str>) {
        guard
            .client()
            .outbox
            .push_stream_event(StreamEvent::Start(Box::new(StreamStart {
                stream_id: guard.id().clone(),
                provider,
                model,
                agent: self.route.agent.clone(),
                intent: self.route.intent.clone(),
                session_id: guard.session_turn().map(|(id, _)| id.clone()),
                timestamp: now_ms(),
            })));
    }

    /// Move chunks into the outbox until the upstream ends or the stream
    /// is stopped; the upstream connection is closed on return.
    async fn relay_step(
        &self,
        guard: &StreamGuard,
        opened: Opened,
        deadline: Instant,
        progress: &mut Progress,
    ) -> Ending {
        let Opened {
            provider,
            mut stream,
            first,
            slot,
            ..
        } = opened;
        let cancelled = self.control.cancel.clone().cancelled_owned();
        let expired = sleep_until(deadline);
        let idle = sleep(self.idle_timeout);
        tokio::pin!(cancelled, expired, idle);
        let mut next = Some(first);
        // When the relay last started waiting on the upstream.
        let mut waiting_since = Instant::now();
        let ending = loop {
            let item = match next.take() {
                Some(item) => Some(item),
                None => tokio::select! {
                    biased;
                    _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                    _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                    _ = &mut idle => {
                        let due = waiting_since + self.idle_timeout;
                        if Instant::now() >= due {
                            break self.idle_timed_out(provider.name());
                        }
                        idle.as_mut().reset(due);
                        continue;
                    }
                    item = stream.next() => item,
                },
            };
            let chunk = match chunk_of(provider.as_ref(), item) {
                Ok(chunk) => chunk,
                Err(ending) => break ending,
            };
            let Some(delta) = progress.delta(chunk, guard.id(), &self.route.agent) else {
                continue;
            };
            let push = guard.client().outbox.push_delta(delta);
            let pushed = tokio::select! {
                biased;
                _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                pushed = push => pushed,
            };
            if let Err(ending) = self.count_pushed(progress, pushed) {
                break ending;
            }
            waiting_since = Instant::now();
        };
        // Closing the upstream connection before the terminal event is
        // queued: by the time the client hears the stream ended, the
        // upstream has stopped generating (and the provider has room).
        drop(stream);
        drop(slot);
        ending
    }

    fn idle_timed_out(&self, provider: &Arc<str>) -> Ending {
        Ending::Failed(GatewayError::Provider(ProviderError::IdleTimeout {
            provider: provider.to_string(),
            after: self.idle_timeout,
        }))
    }

    fn count_pushed(
        &self,
        progress: &mut Progress,
        pushed: Result<Pushed, TooSlow>,
    ) -> Result<(), Ending> {
        match pushed {
            Ok(Pushed::Dropped) => {
                progress.dropped += 1;
                progress.undelivered();
            }
            Ok(Pushed::Queued | Pushed::Coalesced) => {
                self.stats.tokens_relayed.fetch_add(1, Relaxed);
            }
            Err(TooSlow) => {
                // This piece was not delivered.
                progress.position -= 1;
                progress.undelivered();
                return Err(Ending::Cancelled(CancelReason::ClientTooSlow));
            }
        }
        Ok(())
    }

    pub(super) fn cancel_reason(&self) -> CancelReason {
        self.control
            .reason()
            .unwrap_or(if self.root.is_cancelled() {
                CancelReason::Shutdown
            } else {
                CancelReason::Disconnect
            })
    }
}

/// An upstream chunk, or how its stream ended.
fn chunk_of(
    provider: &dyn crate::upstream::Provider,
    item: Option<Result<Chunk, ProviderError>>,
) -> Result<Chunk, Ending> {
    match item {
        Some(Ok(Chunk::Done {
            finish_reason,
            usage,
        })) => Err(Ending::Completed {
            finish_reason,
            usage,
        }),
        Some(Ok(chunk)) => Ok(chunk),
        Some(Err(e)) => {
            provider.stats().errors.fetch_add(1, Relaxed);
            Err(Ending::Failed(e.into()))
        }
        None => Err(Ending::Failed(GatewayError::Provider(
            ProviderError::Upstream {
                provider: provider.name().to_string(),
                detail: "stream ended without a finish".into(),
            },
        ))),
    }
}
