//! The [`App`]: every engine part, built once from a [`Config`].
//!
//! This is the one place where the engine's parts are made and given to
//! each other: providers, orchestrator, clients, the relay, the session
//! store, rate limits, authentication, counters and the shutdown tree, and
//! where the engine's periodic sweeps (rate-limit keys, idle sessions) are
//! started. Doors (the `/ai`
//! socket, ops endpoints, HTTP) receive an `Arc<App>` and call into its
//! parts; the app names no door, so nothing here depends on a transport.

use crate::auth::{AuthSetupError, Authenticator};
use crate::clients::Clients;
use crate::config::Config;
use crate::error::ProviderError;
use crate::orchestrator::Orchestrator;
use crate::orchestrator::agents::AgentsError;
use crate::outbox::OutboxSettings;
use crate::outbox::replay::ReplayCaps;
use crate::protocol::{BackpressurePolicy, RequestBounds};
use crate::rate_limit::RateLimits;
use crate::relay::{Relay, StreamSettings};
use crate::sessions::{MemoryStore, SessionStore};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use crate::upstream::ProviderSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct App {
    pub config: Arc<Config>,
    pub providers: Arc<ProviderSet>,
    pub orchestrator: Arc<Orchestrator>,
    pub clients: Clients,
    pub relay: Relay,
    /// Conversations kept for `sessionId` (in memory by default; the same
    /// store the relay holds).
    pub sessions: Arc<dyn SessionStore>,
    /// Rate limits shared by all connections (per IP, per user).
    pub rate_limits: Arc<RateLimits>,
    /// Handshake token check; `None` when auth is off.
    pub auth: Option<Authenticator>,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
    pub started: Instant,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("provider setup failed: {0}")]
    Provider(#[from] ProviderError),
    #[error("agents: {0}")]
    Agents(#[from] AgentsError),
    #[error("auth: {0}")]
    Auth(#[from] AuthSetupError),
}

impl App {
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let providers = Arc::new(ProviderSet::from_config(&config)?);
        let orchestrator = Arc::new(Orchestrator::new(providers.clone(), &config)?);
        let auth = Authenticator::from_config(&config.auth)?;
        log_auth(auth.as_ref());
        let shutdown = Shutdown::new(Duration::from_millis(config.server.shutdown_grace_ms));
        let rate_limits = Arc::new(RateLimits::new(&config.limits));
        let clients = Clients::new(
            Duration::from_millis(config.session.reconnect_window_ms),
            config.heartbeat_interval(),
            shutdown.clone(),
            stats.clone(),
        );
        let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(&config.sessions));
        let relay = Relay {
            orchestrator: orchestrator.clone(),
            rate_limits: rate_limits.clone(),
            sessions: sessions.clone(),
            settings: stream_settings(&config),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let app = Arc::new(Self {
            config,
            providers,
            orchestrator,
            clients,
            relay,
            sessions,
            rate_limits,
            auth,
            stats,
            shutdown,
            started: Instant::now(),
        });
        app.spawn_rate_limit_sweeper();
        app.spawn_session_sweeper();
        Ok(app)
    }

    /// The outbox a new client gets, under `policy`.
    pub fn outbox_settings(&self, policy: BackpressurePolicy) -> OutboxSettings {
        let bp = &self.config.backpressure;
        OutboxSettings {
            threshold: bp.threshold,
            max_bytes: bp.max_bytes_per_client,
            ack_window: bp.ack_window as u64,
            policy,
            slow_timeout: Duration::from_millis(bp.slow_client_timeout_ms),
            replay: ReplayCaps {
                deltas: self.config.session.replay_buffer_tokens,
                bytes: self.config.session.replay_buffer_bytes,
                unacked_bytes: self.config.session.replay_unacked_bytes,
            },
        }
    }

    /// Forget idle rate-limit keys every minute, until shutdown.
    fn spawn_rate_limit_sweeper(&self) {
        let (limits, root) = (self.rate_limits.clone(), self.shutdown.root.clone());
        self.shutdown.spawn(async move {
            let mut every = tokio::time::interval(RateLimits::SWEEP_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = every.tick() => limits.sweep(),
                }
            }
        });
    }

    /// Free idle sessions (`sessions.ttl_ms`) every quarter TTL (within
    /// 250 ms..=60 s), until shutdown; lookups expire the ones they touch
    /// in between.
    fn spawn_session_sweeper(&self) {
        let (sessions, root) = (self.sessions.clone(), self.shutdown.root.clone());
        let every = MemoryStore::sweep_every(&self.config.sessions);
        self.shutdown.spawn(async move {
            let mut every = tokio::time::interval(every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = every.tick() => sessions.sweep().await,
                }
            }
        });
    }
}

fn stream_settings(config: &Config) -> StreamSettings {
    let s = &config.streams;
    StreamSettings {
        max_concurrent_streams: s.max_concurrent_streams,
        stream_timeout: config.stream_timeout(),
        first_token_timeout: config.first_token_timeout(),
        request_bounds: RequestBounds {
            max_prompt_chars: s.max_prompt_chars,
            max_tokens_limit: s.max_tokens_limit,
            max_messages: s.max_messages,
            max_messages_bytes: s.max_messages_bytes,
            max_agent_context_bytes: s.max_agent_context_bytes,
        },
    }
}

fn log_auth(auth: Option<&Authenticator>) {
    match auth {
        Some(a) => {
            tracing::info!(algorithm = ?a.algorithm(), "auth on: handshakes need a valid JWT")
        }
        None => tracing::warn!(
            "AUTH IS OFF: no auth.jwt_secret / auth.jwt_public_key (env STREAMGATE_JWT_SECRET / \
             STREAMGATE_JWT_PUBLIC_KEY) is set, so anyone who can reach this port can connect \
             and stream; set a key before exposing the gateway"
        ),
    }
}
