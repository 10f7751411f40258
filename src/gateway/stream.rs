//! `StreamTask`: one per stream, from the upstream request to the terminal
//! event.
//!
//! The task opens the route's providers in order until one yields a first
//! chunk (falling back on unreachable upstreams and first-token timeouts),
//! announces `ai:stream:start` naming the provider that really serves, then
//! moves chunks into the client's outbox. Every await races the stream's
//! cancellation token and its deadline; when either wins, the upstream
//! response is dropped first (closing its connection, so the upstream
//! stops generating) and the terminal event is queued after. The task
//! removes the stream from the client's registry as it ends, so nothing of
//! a stream follows its terminal event.

use super::outbox::{Outbound, Pushed, TooSlow};
use super::registry::{Client, StreamControl};
use crate::error::{GatewayError, ProviderError};
use crate::orchestrator::Route;
use crate::protocol::{
    BackpressurePolicy, CancelReason, Done, StreamCancelled, StreamComplete, StreamError,
    StreamStart, Token, now_ms,
};
use crate::providers::{Chunk, ChunkStream, Provider};
use crate::telemetry::Stats;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub struct StreamTask {
    pub id: Arc<str>,
    pub client: Arc<Client>,
    pub control: Arc<StreamControl>,
    pub route: Route,
    pub stats: Arc<Stats>,
    pub root: CancellationToken,
    pub stream_timeout: Duration,
    pub first_token_timeout: Duration,
}

/// How a stream ended, before it is turned into events.
enum Ending {
    Completed {
        finish_reason: String,
        usage: Option<crate::protocol::Usage>,
    },
    Cancelled(CancelReason),
    Failed(GatewayError),
}

/// What the relay loop has done so far.
#[derive(Default)]
struct Relay {
    /// Upstream tokens seen (the stream's position, `tokenCount`).
    position: u64,
    /// Tokens the `drop` policy dropped.
    dropped: u64,
    /// The whole text, kept only under `drop` so that `ai:done` can carry
    /// `fullResponse` when something was dropped.
    full: Option<String>,
}

/// A provider that has produced its first chunk.
struct Opened {
    provider: Arc<dyn Provider>,
    model: Arc<str>,
    stream: ChunkStream,
    first: Result<Chunk, ProviderError>,
}

impl StreamTask {
    /// Spawn the task; a panic inside it ends this stream only, with
    /// `ai:stream:error` `internal` (see [`super::guard`]).
    pub fn spawn(self, tracker: &tokio_util::task::TaskTracker) {
        let span = tracing::info_span!("stream", client = %self.client.id(), stream = %self.id);
        let (client, id, stats) = (self.client.clone(), self.id.clone(), self.stats.clone());
        super::guard::spawn_stream(tracker, client, id, stats, span, self.run());
    }

    async fn run(mut self) {
        let started = Instant::now();
        let deadline = started + self.stream_timeout;
        self.stats.streams_started.fetch_add(1, Relaxed);
        self.stats.streams_active.fetch_add(1, Relaxed);

        // The LLM router, when the rules were unsure and it is on; a cancel
        // or the deadline stops the wait and is seen just below.
        tokio::select! {
            biased;
            _ = self.control.cancel.cancelled() => {}
            _ = sleep_until(deadline) => {}
            _ = self.route.refine() => {}
        }

        let mut relay = Relay {
            full: (self.client.outbox.policy() == BackpressurePolicy::Drop).then(String::new),
            ..Relay::default()
        };
        let opened = tokio::select! {
            biased;
            _ = self.control.cancel.cancelled() => Err(Ending::Cancelled(self.cancel_reason())),
            _ = sleep_until(deadline) => Err(Ending::Cancelled(CancelReason::Timeout)),
            r = self.open() => r.map_err(|e| Ending::Failed(e.into())),
        };
        let ending = match opened {
            Err(ending) => {
                // Nothing served: name the first provider the route asked for.
                let first = self.route.chain.first().cloned();
                if let Some(p) = first {
                    let model = self.route.request_for(0, p.as_ref()).model;
                    self.push_start(p.name().clone(), model);
                }
                ending
            }
            Ok(opened) => {
                self.push_start(opened.provider.name().clone(), opened.model.clone());
                let Opened {
                    provider,
                    mut stream,
                    first,
                    ..
                } = opened;
                let ttft = started.elapsed();
                provider.stats().ttft.record(ttft);
                // One cancel waiter and one deadline timer for the whole
                // relay, not two of each per token: registering them is a
                // lock and a timer-wheel insert each time.
                let cancelled = self.control.cancel.clone().cancelled_owned();
                let expired = sleep_until(deadline);
                tokio::pin!(cancelled, expired);
                let mut next = Some(first);
                loop {
                    let item = match next.take() {
                        Some(item) => Some(item),
                        None => tokio::select! {
                            biased;
                            _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                            _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                            item = stream.next() => item,
                        },
                    };
                    match item {
                        Some(Ok(Chunk::Token(data))) => {
                            if let Some(full) = relay.full.as_mut() {
                                full.push_str(&data);
                            }
                            let token = Token {
                                stream_id: self.id.clone(),
                                data,
                                token_count: relay.position + 1,
                                agent: self.route.agent.clone(),
                                metadata: None,
                            };
                            let pushed = tokio::select! {
                                biased;
                                _ = &mut cancelled => break Ending::Cancelled(self.cancel_reason()),
                                _ = &mut expired => break Ending::Cancelled(CancelReason::Timeout),
                                pushed = self.client.outbox.push_token(&self.id, token) => pushed,
                            };
                            relay.position += 1;
                            match pushed {
                                Ok(Pushed::Dropped) => relay.dropped += 1,
                                Ok(Pushed::Queued | Pushed::Coalesced) => {
                                    self.stats.tokens_relayed.fetch_add(1, Relaxed);
                                }
                                Err(TooSlow) => {
                                    // This token was not delivered.
                                    relay.position -= 1;
                                    break Ending::Cancelled(CancelReason::ClientTooSlow);
                                }
                            }
                        }
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
                            break Ending::Failed(GatewayError::Provider(
                                ProviderError::Upstream {
                                    provider: provider.name().to_string(),
                                    detail: "stream ended without a finish".into(),
                                },
                            ));
                        }
                    }
                }
                // `stream` drops here, before the terminal event: the
                // upstream connection is closed by the time the client
                // hears the stream has ended.
            }
        };
        self.finish(ending, relay, started);
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

    /// Try each provider of the chain until one yields a first chunk.
    async fn open(&self) -> Result<Opened, ProviderError> {
        let mut last_err = None;
        for (attempt, provider) in self.route.chain.iter().enumerate() {
            if attempt > 0 {
                tracing::warn!(
                    provider = %provider.name(),
                    error = %last_err.as_ref().map(|e: &ProviderError| e.to_string()).unwrap_or_default(),
                    "falling back"
                );
                // The caller races this against cancel and the deadline.
                tokio::time::sleep(self.route.fallback_backoff * attempt as u32).await;
            }
            let request = self.route.request_for(attempt, provider.as_ref());
            let model = request.model.clone();
            provider.stats().requests.fetch_add(1, Relaxed);
            let first = tokio::time::timeout(self.first_token_timeout, async {
                let mut stream = provider.open(request).await?;
                let first = stream.next().await;
                Ok::<_, ProviderError>((stream, first))
            })
            .await;
            let err = match first {
                Ok(Ok((stream, Some(first)))) => match first {
                    Err(e) if e.can_fall_back() => e,
                    first => {
                        return Ok(Opened {
                            provider: provider.clone(),
                            model,
                            stream,
                            first,
                        });
                    }
                },
                Ok(Ok((_, None))) => ProviderError::Upstream {
                    provider: provider.name().to_string(),
                    detail: "empty response".into(),
                },
                Ok(Err(e)) => e,
                Err(_) => ProviderError::FirstTokenTimeout {
                    provider: provider.name().to_string(),
                    after: self.first_token_timeout,
                },
            };
            provider.stats().errors.fetch_add(1, Relaxed);
            tracing::warn!(provider = %provider.name(), error = %err, "upstream failed before its first token");
            if !err.can_fall_back() {
                return Err(err);
            }
            last_err = Some(err);
        }
        Err(last_err.unwrap_or_else(|| ProviderError::Unavailable {
            provider: "none".into(),
            detail: "no provider configured for this route".into(),
        }))
    }

    fn push_start(&self, provider: Arc<str>, model: Arc<str>) {
        self.client.outbox.push_stream_event(
            &self.id,
            Outbound::Start(StreamStart {
                stream_id: self.id.clone(),
                provider,
                model,
                agent: self.route.agent.clone(),
                intent: self.route.intent.clone(),
                timestamp: now_ms(),
            }),
        );
    }

    fn finish(&self, ending: Ending, relay: Relay, started: Instant) {
        let outbox = &self.client.outbox;
        let tokens = relay.position;
        let id = &self.id;
        match ending {
            Ending::Completed {
                finish_reason,
                usage,
            } => {
                self.stats.streams_completed.fetch_add(1, Relaxed);
                tracing::info!(tokens, %finish_reason, "stream completed");
                outbox.push_stream_event(
                    id,
                    Outbound::Complete(StreamComplete {
                        stream_id: self.id.clone(),
                        agent: self.route.agent.clone(),
                        intent: self.route.intent.clone(),
                        confidence: self.route.confidence,
                    }),
                );
                outbox.push_stream_event(
                    id,
                    Outbound::Done(Done {
                        stream_id: self.id.clone(),
                        total_tokens: tokens,
                        duration: started.elapsed().as_millis() as u64,
                        finish_reason,
                        usage,
                        dropped_tokens: relay.dropped,
                        full_response: relay.full.filter(|_| relay.dropped > 0),
                    }),
                );
            }
            Ending::Cancelled(reason) => {
                self.stats.streams_cancelled.fetch_add(1, Relaxed);
                tracing::info!(tokens, ?reason, "stream cancelled");
                outbox.push_stream_event(
                    id,
                    Outbound::Cancelled(StreamCancelled {
                        stream_id: self.id.clone(),
                        reason,
                        token_count: tokens,
                    }),
                );
            }
            Ending::Failed(err) => {
                self.stats.streams_failed.fetch_add(1, Relaxed);
                tracing::warn!(tokens, error = %err, "stream failed");
                outbox.push_stream_event(
                    id,
                    Outbound::StreamError(StreamError {
                        stream_id: self.id.clone(),
                        code: err.code(),
                        error: err.client_message(),
                        retryable: err.retryable(),
                    }),
                );
            }
        }
        self.stats.streams_active.fetch_sub(1, Relaxed);
        self.client.remove_stream(&self.id);
    }
}
