//! Streams: admitting a request and running it from the upstream to the
//! client's outbox.
//!
//! [`Relay::start`] is what every door calls with a validated
//! [`StreamRequest`]: the config-dependent limits, the orchestrator's
//! [`Route`](crate::orchestrator::Route), the per-user stream budget and the
//! client's stream table decide whether it may run; then a [`StreamTask`]
//! is spawned on the shutdown tracker with a [`StreamGuard`] that keeps the
//! counters and the stream table right however it ends. The relay pushes
//! into the client's outbox and never touches a transport: whichever door
//! attached a writer carries the events on.

mod guard;
mod open;
mod task;

pub use guard::{EndedAs, StreamGuard};
pub use task::StreamTask;

use crate::clients::{Client, random_hex};
use crate::error::GatewayError;
use crate::orchestrator::Orchestrator;
use crate::protocol::{RequestBounds, StreamRequest};
use crate::rate_limit::RateLimits;
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Settings every stream runs under.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub max_concurrent_streams: usize,
    pub stream_timeout: Duration,
    pub first_token_timeout: Duration,
    pub request_bounds: RequestBounds,
}

/// Admits streams and spawns their tasks.
pub struct Relay {
    pub orchestrator: Arc<Orchestrator>,
    pub rate_limits: Arc<RateLimits>,
    pub settings: StreamSettings,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
}

impl Relay {
    /// Admit `req` for `client` and start it; returns the stream id.
    pub fn start(
        &self,
        client: &Arc<Client>,
        req: StreamRequest,
    ) -> Result<Arc<str>, GatewayError> {
        req.check_bounds(&self.settings.request_bounds)?;
        let route = self.orchestrator.route(&req)?;
        self.rate_limits.stream_start(&client.rate_key())?;
        let id: Arc<str> = match &req.stream_id {
            Some(id) => id.as_str().into(),
            None => format!("s_{}", random_hex(8)).into(),
        };
        let control = client.add_stream(id.clone(), self.settings.max_concurrent_streams)?;
        let guard = StreamGuard::new(id.clone(), client.clone(), self.stats.clone());
        let task = StreamTask {
            control,
            route,
            stats: self.stats.clone(),
            root: self.shutdown.root.clone(),
            stream_timeout: self.settings.stream_timeout,
            first_token_timeout: self.settings.first_token_timeout,
        };
        let span = tracing::info_span!("stream", client = %client.id(), stream = %id);
        self.shutdown.spawn_stream(task.run(guard).instrument(span));
        Ok(id)
    }
}
