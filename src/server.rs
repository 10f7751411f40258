//! The server: every door on one port, and the orderly stop.
//!
//! [`router`] stacks the doors (the `/ai` Socket.IO layer, the HTTP API,
//! the ops routes) under the layers every request passes (the request-head copy,
//! CORS, tracing). [`start`] binds, sets TCP_NODELAY on each accepted
//! socket and serves until [`Running::shutdown`], whose grace period bounds
//! the whole stop: the engine's [`Shutdown`](crate::shutdown::Shutdown)
//! sequence, then closing the sockets, then the listener.

use crate::app::{App, StartError};
use crate::config::Config;
use crate::{http, ops, socket};
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
    let router = ops::routes(app.clone())
        .merge(http::routes(app.clone()))
        .merge(crate::pages::routes())
        .layer(layer)
        // Outside socketioxide's layer, so the head it keeps is a copy.
        .layer(axum::middleware::map_request(
            http::head::detach_request_head,
        ))
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
        self.stop.cancel();
        let grace = self.app.shutdown.grace();
        let mut server = self.server;
        // The drain inside takes at most the grace period; the margin is
        // for the listener to close.
        match tokio::time::timeout(grace + Duration::from_millis(250), &mut server).await {
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
        // The peer address reaches the handshake middleware (per-IP limit).
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

/// The engine's stop sequence, then every client finished and every
/// socket closed, within what is left of the grace period.
async fn stop_doors(app: &App, io: SocketIo) {
    let deadline = app.shutdown.run(|| app.clients.flush_all()).await;
    // io.close() runs no disconnect handler: finish the clients here.
    app.clients.close_all();
    // A writer stuck on a peer that stopped reading never lets its socket
    // close; do not wait on those past the deadline.
    let _ = tokio::time::timeout_at(deadline, io.close()).await;
}
