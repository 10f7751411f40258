//! `StreamTask`: one per stream, from the upstream request to the terminal
//! event, in three steps.
//!
//! 1. **open**: let the LLM router refine the route (when pending), then
//!    open the route's providers until one yields a first chunk; announce
//!    `ai:stream:start` naming the provider that serves.
//! 2. **relay**: move chunks into the client's outbox, racing the stream's
//!    cancellation and deadline (one waiter and one timer for the whole
//!    relay, not per token). The upstream response is dropped explicitly
//!    when the loop ends, so its connection is closed (and the upstream
//!    stops generating) before the terminal event is queued.
//! 3. **finish**: append the turn to the stream's session, if it is one
//!    (the reply as the client received it, and how it ended), then turn
//!    how it ended into terminal events and hand them to the
//!    [`StreamGuard`], which also keeps the counters, the client's stream
//!    table and the session's busy mark right on every exit path, panics
//!    included.

use super::guard::{EndedAs, StreamGuard};
use super::open::{Opened, open};
use crate::clients::StreamControl;
use crate::error::{GatewayError, ProviderError};
use crate::orchestrator::Route;
use crate::outbox::{Pushed, StreamEvent, TooSlow};
use crate::protocol::{
    BackpressurePolicy, CancelReason, Done, StreamCancelled, StreamComplete, StreamError,
    StreamStart, Token, TurnStatus, Usage, now_ms,
};
use crate::telemetry::Stats;
use crate::upstream::Chunk;
use futures_util::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub struct StreamTask {
    pub control: Arc<StreamControl>,
    pub route: Route,
    pub stats: Arc<Stats>,
    /// The server's root token: a cancel with no reason during shutdown
    /// is reported as `shutdown`.
    pub root: CancellationToken,
    pub stream_timeout: Duration,
    pub first_token_timeout: Duration,
}

/// How a stream ended, before it is turned into events.
enum Ending {
    Completed {
        finish_reason: String,
        usage: Option<Usage>,
    },
    Cancelled(CancelReason),
    Failed(GatewayError),
}

/// What the relay has done so far.
#[derive(Default)]
struct Progress {
    /// Upstream pieces seen (the stream's position, `tokenCount`).
    position: u64,
    /// Pieces the `drop` policy dropped.
    dropped: u64,
    /// The whole text, kept only under `drop` so that `ai:done` can carry
    /// `fullResponse` when something was dropped.
    full: Option<String>,
    /// The text the outbox took (what the client receives, up to the
    /// terminal event), kept only when the stream is a session's turn.
    reply: Option<String>,
    /// `reply`'s length before the last piece, to take that piece back if
    /// the outbox did not deliver it.
    reply_mark: usize,
}

impl StreamTask {
    pub async fn run(mut self, guard: StreamGuard) {
        let started = Instant::now();
        let deadline = started + self.stream_timeout;
        let mut progress = Progress {
            full: (guard.client().outbox.policy() == BackpressurePolicy::Drop).then(String::new),
            reply: guard.has_session().then(String::new),
            ..Progress::default()
        };
        let ending = match self.open_step(&guard, deadline, started).await {
            Ok(opened) => {
                self.relay_step(&guard, opened, deadline, &mut progress)
                    .await
            }
            Err(ending) => ending,
        };
        self.finish_step(guard, ending, progress, started).await;
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
            .push_stream_event(StreamEvent::Start(StreamStart {
                stream_id: guard.id().clone(),
                provider,
                model,
                agent: self.route.agent.clone(),
                intent: self.route.intent.clone(),
                session_id: guard.session_turn().map(|(id, _)| id.clone()),
                timestamp: now_ms(),
            }));
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
            ..
        } = opened;
        let cancelled = self.control.cancel.clone().cancelled_owned();
        let expired = sleep_until(deadline);
        tokio::pin!(cancelled, expired);
        let mut next = Some(first);
        let ending = loop {
            let item = match next.take() {
                Some(item) => Some(item),
                None => tokio::select! {
                    biased;
                    _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                    _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                    item = stream.next() => item,
                },
            };
            let data = match item {
                Some(Ok(Chunk::Token(data))) => data,
                Some(Ok(Chunk::Done {
                    finish_reason,
                    usage,
                })) => {
                    break Ending::Completed {
                        finish_reason,
                        usage,
                    };
                }
                Some(Err(e)) => {
                    provider.stats().errors.fetch_add(1, Relaxed);
                    break Ending::Failed(e.into());
                }
                None => {
                    break Ending::Failed(GatewayError::Provider(ProviderError::Upstream {
                        provider: provider.name().to_string(),
                        detail: "stream ended without a finish".into(),
                    }));
                }
            };
            let push = self.push_token(guard, progress, data);
            let pushed = tokio::select! {
                biased;
                _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                pushed = push => pushed,
            };
            if let Err(ending) = self.count_pushed(progress, pushed) {
                break ending;
            }
        };
        // Closing the upstream connection before the terminal event is
        // queued: by the time the client hears the stream ended, the
        // upstream has stopped generating.
        drop(stream);
        ending
    }

    /// Queue one piece of text at the next position.
    fn push_token(
        &self,
        guard: &StreamGuard,
        progress: &mut Progress,
        data: String,
    ) -> impl Future<Output = Result<Pushed, TooSlow>> + use<> {
        if let Some(full) = progress.full.as_mut() {
            full.push_str(&data);
        }
        if let Some(reply) = progress.reply.as_mut() {
            progress.reply_mark = reply.len();
            reply.push_str(&data);
        }
        progress.position += 1;
        let token = Token {
            stream_id: guard.id().clone(),
            data,
            token_count: progress.position,
            agent: self.route.agent.clone(),
            metadata: None,
        };
        let outbox = guard.client().outbox.clone();
        async move { outbox.push_token(token).await }
    }

    fn count_pushed(
        &self,
        progress: &mut Progress,
        pushed: Result<Pushed, TooSlow>,
    ) -> Result<(), Ending> {
        let undelivered = |progress: &mut Progress| {
            let mark = progress.reply_mark;
            if let Some(reply) = progress.reply.as_mut() {
                reply.truncate(mark);
            }
        };
        match pushed {
            Ok(Pushed::Dropped) => {
                progress.dropped += 1;
                undelivered(progress);
            }
            Ok(Pushed::Queued | Pushed::Coalesced) => {
                self.stats.tokens_relayed.fetch_add(1, Relaxed);
            }
            Err(TooSlow) => {
                // This piece was not delivered.
                progress.position -= 1;
                undelivered(progress);
                return Err(Ending::Cancelled(CancelReason::ClientTooSlow));
            }
        }
        Ok(())
    }

    fn cancel_reason(&self) -> CancelReason {
        self.control
            .reason()
            .unwrap_or(if self.root.is_cancelled() {
                CancelReason::Shutdown
            } else {
                CancelReason::Disconnect
            })
    }

    /// The session's turn, then the terminal events for `ending`, handed
    /// to the guard.
    async fn finish_step(
        &self,
        mut guard: StreamGuard,
        ending: Ending,
        mut progress: Progress,
        started: Instant,
    ) {
        let (reply, status) = turn_of(&ending, &mut progress);
        guard.end_turn(reply, status).await;
        let session = guard.session_turn().map(|(id, turn)| (id.clone(), turn));
        let id = guard.id().clone();
        let tokens = progress.position;
        let (events, ended) = match ending {
            Ending::Completed {
                finish_reason,
                usage,
            } => {
                tracing::info!(tokens, %finish_reason, "stream completed");
                let complete = StreamEvent::Complete(StreamComplete {
                    stream_id: id.clone(),
                    agent: self.route.agent.clone(),
                    intent: self.route.intent.clone(),
                    confidence: self.route.confidence,
                });
                let done = StreamEvent::Done(Done {
                    stream_id: id,
                    total_tokens: tokens,
                    duration: started.elapsed().as_millis() as u64,
                    finish_reason,
                    usage,
                    dropped_tokens: progress.dropped,
                    full_response: progress.full.filter(|_| progress.dropped > 0),
                    session_id: session.as_ref().map(|(id, _)| id.clone()),
                    turn: session.map(|(_, turn)| turn),
                });
                (vec![complete, done], EndedAs::Completed)
            }
            Ending::Cancelled(reason) => {
                tracing::info!(tokens, ?reason, "stream cancelled");
                let cancelled = StreamEvent::Cancelled(StreamCancelled {
                    stream_id: id,
                    reason,
                    token_count: tokens,
                });
                (vec![cancelled], EndedAs::Cancelled)
            }
            Ending::Failed(err) => {
                tracing::warn!(tokens, error = %err, "stream failed");
                let wire = err.wire();
                let failed = StreamEvent::Failed(StreamError {
                    stream_id: id,
                    code: wire.code,
                    error: wire.message,
                    retryable: wire.retryable,
                    status: wire.status,
                });
                (vec![failed], EndedAs::Failed)
            }
        };
        guard.finish(events, ended);
    }
}

/// The reply a session keeps for this stream, and the turn's status: the
/// text the client received; on a completion with drops, the whole text,
/// which `ai:done.fullResponse` gave the client.
fn turn_of(ending: &Ending, progress: &mut Progress) -> (Option<String>, TurnStatus) {
    let status = match ending {
        Ending::Completed { .. } => TurnStatus::Complete,
        Ending::Cancelled(_) => TurnStatus::Cancelled,
        Ending::Failed(_) => TurnStatus::Error,
    };
    let repaired = matches!(ending, Ending::Completed { .. }) && progress.dropped > 0;
    let reply = match (progress.reply.take(), &progress.full) {
        (Some(_), Some(full)) if repaired => Some(full.clone()),
        (reply, _) => reply,
    };
    (reply, status)
}
