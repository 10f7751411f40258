//! Streams: admitting a request and running it from the upstream to the
//! client's outbox.
//!
//! [`Relay::start`] is what every door calls with a validated
//! [`StreamRequest`]. In the order a client should hear about a refusal:
//! the owner's token must not have expired since the handshake, the
//! config-dependent limits, the session (when the request names one: its
//! owner, its one live stream, its history), the orchestrator's
//! [`Route`](crate::orchestrator::Route) and whether its providers take
//! the request's tools and images, then what the stream would hold
//! ([`admission`]: the client's stream table, the process's and the
//! providers' live-stream caps), the replay memory of the process, and
//! last the per-user stream budget, so that a request refused for any
//! other reason spends none of it. Then a [`StreamTask`] is spawned on
//! the shutdown tracker with a [`StreamGuard`] that keeps the counters,
//! the stream table and the session's busy mark right however it ends.
//! The relay pushes into the client's outbox and never touches a
//! transport: whichever door attached a writer carries the events on.

pub mod admission;
mod finish;
mod guard;
mod open;
mod progress;
mod task;

pub use admission::{ProviderSlot, StreamSlot, StreamSlots};
pub use guard::{EndedAs, StreamGuard};
pub use open::unreachable as note_unreachable;
pub use task::StreamTask;

use crate::clients::{Client, random_hex};
use crate::error::{Capacity, GatewayError};
use crate::orchestrator::{Orchestrator, Route};
use crate::protocol::{ChatMessage, FieldError, RequestBounds, Role, StreamRequest, now_ms};
use crate::rate_limit::RateLimits;
use crate::sessions::{SessionLease, SessionStore};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use crate::upstream::Provider;
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
    /// Where conversations (`sessionId`) are kept.
    pub sessions: Arc<dyn SessionStore>,
    pub settings: StreamSettings,
    /// The process's live streams (`limits.max_live_streams`).
    pub slots: StreamSlots,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
}

impl Relay {
    /// Admit `req` for `client` and start it; returns the stream id. Only
    /// the session store is awaited (the in-memory one answers at once), so
    /// a door can acknowledge the request promptly.
    pub async fn start(
        &self,
        client: &Arc<Client>,
        mut req: StreamRequest,
    ) -> Result<Arc<str>, GatewayError> {
        if client.token_expired(now_ms() / 1_000, self.settings.token_leeway_secs) {
            return Err(GatewayError::Unauthorized(
                "token expired; connect again with a fresh token to start streams".into(),
            ));
        }
        req.check_bounds(&self.settings.request_bounds)?;
        let session = match req.session_id.as_deref() {
            Some(id) => {
                let owner = client.owner.as_ref();
                let input = turn_input(&req);
                let (lease, history) =
                    SessionLease::begin(&self.sessions, owner, id, input).await?;
                // A session request carries no `messages` but this turn's
                // tool results (checked above): the stored history goes
                // before them, so the route sends the agent's system
                // prompt, the history, the tool results, then the prompt.
                let results = std::mem::replace(&mut req.messages, history);
                req.messages.extend(results);
                Some(lease)
            }
            None => None,
        };
        // From here on, a refusal drops `session`, which releases it.
        let mut route = self.orchestrator.route(&req)?;
        keep_capable(&mut route, &req)?;
        let id: Arc<str> = match &req.stream_id {
            Some(id) => id.as_str().into(),
            None => format!("s_{}", random_hex(8)).into(),
        };
        let reserved = self.reserve(client, id.clone(), &route.chain)?;
        self.rate_limits.stream_start(&client.rate_key())?;
        let (control, slot) = reserved.keep();
        // Admitted: known to the outbox from now on, so a resume before
        // the stream's first event finds it live, not unknown.
        client.outbox.open_stream(&id);
        let guard =
            StreamGuard::new(id.clone(), client.clone(), self.stats.clone()).with_session(session);
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
        let span = tracing::info_span!(
            "stream",
            client = %client.id(),
            stream = %id,
            session = req.session_id.as_deref(),
        );
        self.shutdown.spawn_stream(task.run(guard).instrument(span));
        Ok(id)
    }
}

/// What a session's turn keeps as its input: the tool results it carries,
/// then the prompt.
fn turn_input(req: &StreamRequest) -> Vec<ChatMessage> {
    let mut input = req.messages.clone();
    if let Some(prompt) = &req.prompt {
        input.push(ChatMessage::text(Role::User, prompt.clone()));
    }
    input
}

/// Keep the providers of the route's chain that can take what the request
/// carries (tools, images); refuse, naming the field, when the provider
/// asked for cannot, before any upstream call.
fn keep_capable(route: &mut Route, req: &StreamRequest) -> Result<(), GatewayError> {
    let (tools, images) = (!route.tools.is_empty(), req.has_images());
    let can = |p: &Arc<dyn Provider>| {
        let a = p.accepts();
        (a.tools || !tools) && (a.images || !images)
    };
    if let Some(first) = route.chain.first()
        && !can(first)
    {
        let (field, what) = if tools && !first.accepts().tools {
            ("tools", "tools")
        } else {
            ("messages", "images")
        };
        let rule = format!(
            "cannot be sent to provider {} (it does not take {what})",
            first.name()
        );
        return Err(FieldError::new(field, rule).into());
    }
    route.chain.retain(can);
    Ok(())
}

impl Relay {
    /// What the stream will hold (see [`admission`]), and room in the
    /// process's replay memory; refusals by a cap are counted.
    fn reserve(
        &self,
        client: &Arc<Client>,
        id: Arc<str>,
        chain: &[Arc<dyn Provider>],
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
