//! streamgate: a Socket.IO gateway that streams LLM tokens to IDE-style
//! assistant frontends.
//!
//! This file is the one place where the parts are wired together: a
//! [`Config`] becomes an [`AppState`] (registry, providers, orchestrator,
//! counters, the root cancellation token), which the `/ai` namespace
//! ([`gateway`]) and the ops endpoints ([`http`]) share behind an `Arc`.
//! [`start`] binds a listener and serves both on one port until shut down.
//! See ARCHITECTURE.md for the path of a token.

pub mod auth;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod orchestrator;
pub mod pages;
pub mod protocol;
pub mod providers;
pub mod telemetry;

pub use config::Config;

use auth::Authenticator;
use axum::serve::ListenerExt;
use gateway::limits::RateLimits;
use gateway::registry::ClientRegistry;
use orchestrator::Orchestrator;
use protocol::RequestLimits;
use providers::ProviderSet;
use socketioxide::SocketIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::{RateWindow, Stats};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

/// Everything the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: ClientRegistry,
    pub providers: Arc<ProviderSet>,
    pub orchestrator: Orchestrator,
    pub stats: Arc<Stats>,
    pub limits: RequestLimits,
    /// Handshake token check; `None` when auth is off.
    pub auth: Option<Authenticator>,
    /// Rate limits shared by all connections (per IP, per user).
    pub rate_limits: RateLimits,
    /// Parent of every client's and stream's token: cancelled at shutdown.
    pub root: CancellationToken,
    /// Every spawned task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    pub started: Instant,
    pub token_rate: RateWindow,
    pub metrics: http::MetricsExporter,
    /// The Socket.IO handle, set once the router is built (a resume uses
    /// it to reach the socket of a client taken over).
    pub io: std::sync::OnceLock<SocketIo>,
}

impl AppState {
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let providers = Arc::new(ProviderSet::from_config(&config)?);
        let orchestrator = Orchestrator::new(providers.clone(), &config)?;
        let limits = RequestLimits {
            max_prompt_chars: config.streams.max_prompt_chars,
            max_tokens_limit: config.streams.max_tokens_limit,
            max_messages: config.streams.max_messages,
            max_messages_bytes: config.streams.max_messages_bytes,
            max_agent_context_bytes: config.streams.max_agent_context_bytes,
            allowed_models: config.streams.allowed_models.clone(),
        };
        let auth = Authenticator::from_config(&config.auth)?;
        match &auth {
            Some(a) => {
                tracing::info!(algorithm = ?a.algorithm(), "auth on: /ai handshakes need a valid JWT")
            }
            None => tracing::warn!(
                "AUTH IS OFF: no auth.jwt_secret / auth.jwt_public_key (env STREAMGATE_JWT_SECRET / \
                 STREAMGATE_JWT_PUBLIC_KEY) is set, so anyone who can reach this port can connect \
                 and stream; set a key before exposing the gateway"
            ),
        }
        Ok(Arc::new(Self {
            rate_limits: RateLimits::new(&config.limits),
            auth,
            registry: ClientRegistry::new(stats.clone()),
            config,
            providers,
            orchestrator,
            stats,
            limits,
            root: CancellationToken::new(),
            tasks: TaskTracker::new(),
            started: Instant::now(),
            token_rate: RateWindow::default(),
            metrics: http::MetricsExporter::default(),
            io: std::sync::OnceLock::new(),
        }))
    }
}

/// Build the HTTP router (ops endpoints + Socket.IO) for `app`.
pub fn router(app: Arc<AppState>) -> (axum::Router, SocketIo) {
    let c = &app.config.server;
    let (layer, io) = SocketIo::builder()
        .with_state(app.clone())
        .ping_interval(Duration::from_millis(c.ping_interval_ms))
        .ping_timeout(Duration::from_millis(c.ping_timeout_ms))
        .max_buffer_size(c.socket_buffer)
        .max_payload(c.max_payload_bytes)
        // `max_payload` only bounds HTTP long-polling bodies; WebSocket
        // messages have their own limits (64 MiB by default): hold them to
        // the same size, so one frame cannot make the server buffer more.
        .ws_max_message_size(usize::try_from(c.max_payload_bytes).unwrap_or(usize::MAX))
        .ws_max_frame_size(usize::try_from(c.max_payload_bytes).unwrap_or(usize::MAX))
        .build_layer();
    gateway::register(&io);
    let _ = app.io.set(io.clone());
    let cors = if c.cors_origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(Any)
    } else {
        let origins = c
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect::<Vec<_>>();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
    }
    .allow_methods(Any)
    .allow_headers(Any);
    let router = http::routes()
        .merge(pages::routes())
        .with_state(app)
        .layer(layer)
        // Outside socketioxide's layer, so the head it keeps is a copy.
        .layer(axum::middleware::map_request(
            http::head::detach_request_head,
        ))
        .layer(cors)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    (router, io)
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<AppState>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop: streams end with `shutdown`, clients get their last events
    /// (up to the grace period), then the server closes.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        // Connections whose peer stopped reading may never finish; give
        // the orderly path three grace periods, then stop serving anyway.
        let grace = Duration::from_millis(self.app.config.server.shutdown_grace_ms);
        let mut server = self.server;
        match tokio::time::timeout(grace * 3, &mut server).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                tracing::warn!("connections still open after the grace period; closing");
                server.abort();
                Ok(())
            }
        }
    }
}

/// Bind `config.server.host:port` (port 0 picks one) and serve.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listen = |source| StartError::Listen {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let app = AppState::new(config)?;
    let (router, io) = router(app.clone());
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let state = app.clone();
    spawn_limit_sweeper(&app);
    let server = tokio::spawn(async move {
        // Token frames are small and latency-bound: without TCP_NODELAY a
        // frame can wait for the client's delayed ACK (40 ms measured in
        // BENCHMARKS.md on time to first token).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        // The peer address reaches the handshake middleware (per-IP limit).
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                signal.cancelled().await;
                drain_for_shutdown(&state, io).await;
            })
            .await
    });
    Ok(Running {
        addr,
        app,
        shutdown,
        server,
    })
}

/// Forget idle rate-limit keys every minute, until shutdown.
fn spawn_limit_sweeper(app: &Arc<AppState>) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RateLimits::SWEEP_EVERY);
        every.tick().await;
        loop {
            tokio::select! {
                _ = app.root.cancelled() => return,
                _ = every.tick() => app.rate_limits.sweep(),
            }
        }
    });
}

/// Cancel every stream (reason `shutdown`), give the outboxes the grace
/// period to deliver the terminal events, then close every socket.
async fn drain_for_shutdown(app: &AppState, io: SocketIo) {
    app.root.cancel();
    let grace = Duration::from_millis(app.config.server.shutdown_grace_ms);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline
        && (app
            .stats
            .streams_active
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            || app
                .stats
                .queued_events
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // io.close() runs no disconnect handler: clean up from the registry.
    for client in app.registry.all() {
        match client.sid() {
            Some(sid) => {
                app.registry.remove_socket(sid);
            }
            None => app.registry.remove_detached(&client),
        }
        client.cancel_all(protocol::CancelReason::Shutdown);
        client.outbox.clear();
    }
    // A writer stuck on a peer that stopped reading never lets its socket
    // close; do not wait on those past the grace period.
    let _ = tokio::time::timeout(grace, io.close()).await;
    app.tasks.close();
    let _ = tokio::time::timeout(grace, app.tasks.wait()).await;
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
    Provider(#[from] error::ProviderError),
    #[error("agents: {0}")]
    Agents(#[from] orchestrator::agents::AgentsError),
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthSetupError),
}
