//! The server: every door on one port, and the orderly stop.
//!
//! [`router`] stacks the doors (the Socket.IO layer with `/ai` and the
//! dialects' default namespace, the HTTP API, the pages, the ops routes)
//! under the layers every request passes (the request-head copy, the
//! connection gate with the real client address,
//! CORS, tracing). [`start`] binds, sets TCP_NODELAY on each accepted
//! socket and serves until [`Running::shutdown`], whose grace period
//! bounds the whole stop: the engine's
//! [`Shutdown`](crate::shutdown::Shutdown) sequence, then closing the
//! sockets, then the listener; whatever is still open at the deadline (a
//! peer that stopped reading, a request head half sent) is cut off then.

use crate::app::{App, StartError};
use crate::config::Config;
use crate::http::gate::{Gate, gate};
use crate::http::peer::TrustedProxies;
use crate::{dialects, http, ops, socket};
use axum::serve::ListenerExt;
use socketioxide::SocketIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

/// Build the HTTP router (every door) for `app`.
pub fn router(app: Arc<App>) -> (axum::Router, SocketIo) {
    let c = &app.config.server;
    let (layer, io) = SocketIo::builder()
        .with_state(app.clone())
        .ping_interval(Duration::from_millis(c.ping_interval_ms))
        .ping_timeout(Duration::from_millis(c.ping_timeout_ms))
        // A session that never joins /ai is closed after this (its memory
        // with it; the connection gate counts it until then).
        .connect_timeout(Duration::from_millis(c.connect_timeout_ms))
        .max_buffer_size(c.socket_buffer)
        .max_payload(c.max_payload_bytes)
        .ws_read_buffer_size(c.ws_read_buffer_bytes)
        // `max_payload` only bounds HTTP long-polling bodies; WebSocket
        // messages have their own limits (64 MiB by default): hold them to
        // the same size, so one frame cannot make the server buffer more.
        .ws_max_message_size(usize::try_from(c.max_payload_bytes).unwrap_or(usize::MAX))
        .ws_max_frame_size(usize::try_from(c.max_payload_bytes).unwrap_or(usize::MAX))
        .build_layer();
    socket::register(&io);
    socket::spawn_commands(&app);
    socket::spawn_log_writer(&app);
    dialects::register(&io);
    let gate_state = Gate::new(
        TrustedProxies::new(&c.trusted_proxies),
        app.connections.clone(),
        app.rate_limits.clone(),
        app.stats.clone(),
    );
    let router = ops::routes(app.clone())
        .merge(http::routes(app.clone()))
        .merge(crate::pages::routes())
        .layer(layer)
        // Outside socketioxide's layer, so the head it keeps is a copy.
        .layer(axum::middleware::map_request(
            http::head::detach_request_head,
        ))
        // Outside both: a refused handshake costs no copy, and socketioxide
        // keeps the admitted one's ticket with the session.
        .layer(axum::middleware::from_fn_with_state(gate_state, gate))
        .layer(cors(&app.config.server.cors_origins))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    (router, io)
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = if origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(Any)
    } else {
        let origins = origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect::<Vec<_>>();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
    };
    layer.allow_methods(Any).allow_headers(Any)
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop: streams end with `shutdown`, clients get their last events,
    /// then the sockets and the listener close; all within the grace
    /// period (what is still open then is cut off).
    pub async fn shutdown(self) -> std::io::Result<()> {
        let deadline = tokio::time::Instant::now() + self.app.shutdown.grace();
        self.stop.cancel();
        let mut server = self.server;
        // The engine's stop ends a little before the deadline (see
        // `stop_doors`), so that closing the sockets fits inside it too.
        match tokio::time::timeout_at(deadline, &mut server).await {
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
    let app = App::new(config)?;
    if let Some(cluster) = &app.cluster {
        cluster.heartbeat.set_url(advertised_url(&app.config, addr));
    }
    let (router, io) = router(app.clone());
    let stop = CancellationToken::new();
    let (signal, state) = (stop.clone(), app.clone());
    let server = tokio::spawn(async move {
        // Token frames are small and latency-bound: without TCP_NODELAY a
        // frame can wait for the client's delayed ACK (40 ms measured in
        // BENCHMARKS.md on time to first token).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        // The peer address reaches the connection gate (http/gate.rs), which
        // finds the real client address for every per-address limit.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                signal.cancelled().await;
                stop_doors(&state, io).await;
            })
            .await
    });
    Ok(Running {
        addr,
        app,
        stop,
        server,
    })
}

/// Where other nodes reach this one: `redis.advertise_url`, or the bound
/// address (the hostname in place of an unspecified host).
fn advertised_url(config: &Config, bound: SocketAddr) -> String {
    let configured = config.redis.advertise_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = if bound.ip().is_unspecified() {
        crate::cluster::hostname().unwrap_or_else(|| "127.0.0.1".into())
    } else if bound.is_ipv6() {
        format!("[{}]", bound.ip())
    } else {
        bound.ip().to_string()
    };
    format!("http://{host}:{}", bound.port())
}

/// The engine's stop sequence, then every client finished and every
/// socket closed, within what is left of the grace period.
async fn stop_doors(app: &App, io: SocketIo) {
    let grace = app.shutdown.grace();
    // A tenth of the grace (at most 250 ms) is kept for closing sockets.
    let keep = (grace / 10).min(Duration::from_millis(250));
    let deadline = app
        .shutdown
        .run(grace - keep, || app.clients.flush_all())
        .await
        + keep;
    // io.close() runs no disconnect handler: finish the clients here.
    app.clients.close_all();
    // A writer stuck on a peer that stopped reading never lets its socket
    // close; do not wait on those past the deadline.
    let _ = tokio::time::timeout_at(deadline, io.close()).await;
}
