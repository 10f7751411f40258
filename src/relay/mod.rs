//! Streams: admitting a request and running it from the upstream to the
//! client's outbox.
//!
//! [`Relay::start`] is what every door calls with a validated
//! [`StreamRequest`]. In the order a client should hear about a refusal:
//! the owner's token must not have expired since the handshake, the
//! config-dependent limits, the orchestrator's
//! [`Route`](crate::orchestrator::Route), then what the stream would hold
//! ([`admission`]: the client's stream table, the process's and the
//! providers' live-stream caps), the replay memory of the process, and
//! last the per-user stream budget, so that a request refused for any
//! other reason spends none of it. Then a [`StreamTask`] is spawned on
//! the shutdown tracker with a [`StreamGuard`] that keeps the counters and
//! the stream table right however it ends. The relay pushes into the
//! client's outbox and never touches a transport: whichever door attached
//! a writer carries the events on.

pub mod admission;
mod guard;
mod open;
mod task;

pub use admission::{ProviderSlot, StreamSlot, StreamSlots};
pub use guard::{EndedAs, StreamGuard};
pub use open::unreachable as note_unreachable;
pub use task::StreamTask;

use crate::clients::{Client, random_hex};
use crate::error::{Capacity, GatewayError};
use crate::orchestrator::Orchestrator;
use crate::protocol::{RequestBounds, StreamRequest, now_ms};
use crate::rate_limit::RateLimits;
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use admission::Reservation;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tracing::Instrument;

/// Settings every stream runs under.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub max_concurrent_streams: usize,
    pub stream_timeout: Duration,
    pub first_token_timeout: Duration,
    /// Once streaming: the longest wait for the upstream's next chunk.
    pub idle_timeout: Duration,
    pub request_bounds: RequestBounds,
    /// Clock skew allowed on the owner's token `exp` (`auth.leeway_secs`).
    pub token_leeway_secs: u64,
    /// Replay bytes of the process at which new streams wait (0: never).
    pub max_replay_bytes: usize,
}

/// Admits streams and spawns their tasks.
pub struct Relay {
    pub orchestrator: Arc<Orchestrator>,
    pub rate_limits: Arc<RateLimits>,
    pub settings: StreamSettings,
    /// The process's live streams (`limits.max_live_streams`).
    pub slots: StreamSlots,
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
        if client.token_expired(now_ms() / 1_000, self.settings.token_leeway_secs) {
            return Err(GatewayError::Unauthorized(
                "token expired; connect again with a fresh token to start streams".into(),
            ));
        }
        req.check_bounds(&self.settings.request_bounds)?;
        let route = self.orchestrator.route(&req)?;
        let id: Arc<str> = match &req.stream_id {
            Some(id) => id.as_str().into(),
            None => format!("s_{}", random_hex(8)).into(),
        };
        let reserved = self.reserve(client, id.clone(), &route.chain)?;
        self.rate_limits.stream_start(&client.rate_key())?;
        let (control, slot) = reserved.keep();
        let guard = StreamGuard::new(id.clone(), client.clone(), self.stats.clone());
        let task = StreamTask {
            control,
            route,
            slot,
            stats: self.stats.clone(),
            root: self.shutdown.root.clone(),
            stream_timeout: self.settings.stream_timeout,
            first_token_timeout: self.settings.first_token_timeout,
            idle_timeout: self.settings.idle_timeout,
        };
        let span = tracing::info_span!("stream", client = %client.id(), stream = %id);
        self.shutdown.spawn_stream(task.run(guard).instrument(span));
        Ok(id)
    }
}

impl Relay {
    /// What the stream will hold (see [`admission`]), and room in the
    /// process's replay memory; refusals by a cap are counted.
    fn reserve(
        &self,
        client: &Arc<Client>,
        id: Arc<str>,
        chain: &[Arc<dyn crate::upstream::Provider>],
    ) -> Result<Reservation, GatewayError> {
        let max = self.settings.max_concurrent_streams;
        let reserved = Reservation::take(client, id, max, &self.slots, chain).inspect_err(|e| {
            if matches!(e, GatewayError::StreamCapacity { .. }) {
                self.stats.refused.capacity.fetch_add(1, Relaxed);
            }
        })?;
        let cap = self.settings.max_replay_bytes;
        // New streams wait at 90% of the cap: past it, recording evicts
        // what clients hold for a resume.
        if cap != 0 && self.stats.replay_bytes.load(Relaxed) >= (cap as u64) / 10 * 9 {
            self.stats.refused.capacity.fetch_add(1, Relaxed);
            return Err(GatewayError::ServerBusy {
                limit: Capacity::ReplayBytes,
                max: cap,
            });
        }
        Ok(reserved)
    }
}
