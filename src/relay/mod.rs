//! Streams: admitting a request and running it from the upstream to the
//! client's outbox.
//!
//! [`Relay::start`] is what every door calls with a validated
//! [`StreamRequest`]: the config-dependent limits, the session (when the
//! request names one: its owner, its one live stream, its history), the
//! orchestrator's [`Route`](crate::orchestrator::Route), the per-user
//! stream budget and the client's stream table decide whether it may run;
//! then a [`StreamTask`] is spawned on the shutdown tracker with a
//! [`StreamGuard`] that keeps the counters, the stream table and the
//! session's busy mark right however it ends. The relay pushes into the
//! client's outbox and never touches a transport: whichever door attached
//! a writer carries the events on.

mod finish;
mod guard;
mod open;
mod progress;
mod task;

pub use guard::{EndedAs, StreamGuard};
pub use task::StreamTask;

use crate::clients::{Client, random_hex};
use crate::error::GatewayError;
use crate::orchestrator::{Orchestrator, Route};
use crate::protocol::{ChatMessage, FieldError, RequestBounds, Role, StreamRequest};
use crate::rate_limit::RateLimits;
use crate::sessions::{SessionLease, SessionStore};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use crate::upstream::Provider;
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
    /// Where conversations (`sessionId`) are kept.
    pub sessions: Arc<dyn SessionStore>,
    pub settings: StreamSettings,
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
        self.rate_limits.stream_start(&client.rate_key())?;
        let id: Arc<str> = match &req.stream_id {
            Some(id) => id.as_str().into(),
            None => format!("s_{}", random_hex(8)).into(),
        };
        let control = client.add_stream(id.clone(), self.settings.max_concurrent_streams)?;
        let guard =
            StreamGuard::new(id.clone(), client.clone(), self.stats.clone()).with_session(session);
        let task = StreamTask {
            control,
            route,
            stats: self.stats.clone(),
            root: self.shutdown.root.clone(),
            stream_timeout: self.settings.stream_timeout,
            first_token_timeout: self.settings.first_token_timeout,
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
