//! The `/ai` door: the Socket.IO namespace, its handshake, thin event
//! handlers, and the writer that carries a client's outbox to its socket.
//!
//! The handshake middleware ([`handshake`]) runs before socketioxide sends
//! the connect packet: it applies the per-IP connection limit, reads the
//! `auth` object and, when auth is on, verifies `auth.token`; a refusal is
//! a `connect_error` (`unauthorized: …`, `rate_limited: …`) and nothing
//! else happens. On success it makes the client, queues `ai:connected`,
//! attaches it, starts its writer and registers the event handlers, all
//! before the connect packet goes out, so that an event the client sends
//! the moment it is connected finds its handler. The writer waits for
//! [`on_connect`] (which runs after the connect packet) before it emits.
//! A socket carries its [`Binding`] (the client it serves now, and the
//! attachment) in its extensions; handlers read it, never a lookup table.
//! Each handler ([`handlers`]) decodes its payload, calls one engine part
//! and answers through the client's outbox ([`reply`]).

mod handlers;
mod payload;
mod render;
mod reply;
mod writer;

use crate::app::App;
use crate::clients::{Attachment, Client};
use crate::error::GatewayError;
use crate::protocol::{BackpressurePolicy, Connected, FieldError, HandshakeAuth, event, now_ms};
use axum::extract::ConnectInfo;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{MaybeHttpExtension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const NAMESPACE: &str = "/ai";

/// Register the namespace on `io`.
pub fn register(io: &SocketIo) {
    io.ns(NAMESPACE, on_connect.with(handshake));
}

/// What a socket serves, kept in its extensions.
#[derive(Clone)]
pub struct Binding {
    pub client: Arc<Client>,
    pub attachment: Attachment,
    /// Cancelled once socketioxide has sent the connect packet: writers
    /// wait for it before they emit.
    pub connected: CancellationToken,
}

impl Binding {
    pub fn of(socket: &SocketRef) -> Option<Self> {
        socket.extensions.get::<Binding>()
    }
}

/// Refuses a bad handshake before the client is told it is connected;
/// otherwise sets the connection up (see the module docs). The error's
/// text is the `connect_error` message.
async fn handshake(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    MaybeHttpExtension(peer): MaybeHttpExtension<ConnectInfo<SocketAddr>>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let refuse = |e: GatewayError| e.wire().handshake_message();
    if let Some(ConnectInfo(peer)) = peer
        && let Err(e) = app.rate_limits.connection(peer.ip())
    {
        tracing::info!(ip = %peer.ip(), "connection refused: rate limited");
        return Err(refuse(e));
    }
    let auth = read_auth(auth).map_err(refuse)?;
    let owner = match &app.auth {
        Some(authenticator) => match authenticator.verify(auth.token.as_deref()) {
            Ok(user) => Some(user),
            Err(e) => {
                tracing::info!(sid = %socket.id, reason = %e, "handshake refused");
                return Err(refuse(e));
            }
        },
        None => None,
    };
    let policy = auth
        .backpressure_policy
        .unwrap_or(app.config.backpressure.policy);
    let client = app
        .clients
        .open(owner, app.rate_limits.budget(), app.outbox_limits(policy));
    greet(&app, &client, policy);
    let attachment = app.clients.attach_new(&client);
    let binding = Binding {
        client: client.clone(),
        attachment: attachment.clone(),
        connected: CancellationToken::new(),
    };
    socket.extensions.insert(binding.clone());
    handlers::register(&socket);
    writer::spawn(&app, socket.clone(), binding, None);
    let owner = client.owner.as_ref().map(|u| u.0.clone());
    tracing::info!(client = %client.id(), sid = %socket.id, user = ?owner, "client connected");
    Ok(())
}

fn read_auth(auth: Result<Value, socketioxide::ParserError>) -> Result<HandshakeAuth, GatewayError> {
    let value = auth.unwrap_or(Value::Null);
    if value.is_null() {
        return Ok(HandshakeAuth::default());
    }
    serde_json::from_value::<HandshakeAuth>(value).map_err(|e| {
        FieldError::new(
            "auth",
            format!("must be an object with optional token (string) and backpressurePolicy (coalesce | slow | drop): {e}"),
        )
        .into()
    })
}

/// Queue `ai:connected`, the first event of every client.
fn greet(app: &App, client: &Client, policy: BackpressurePolicy) {
    let c = &app.config;
    reply::control(
        client,
        event::CONNECTED,
        &Connected {
            client_id: client.id(),
            resume_token: client.resume_token(),
            max_concurrent_streams: c.streams.max_concurrent_streams,
            backpressure_threshold: c.backpressure.threshold,
            backpressure_policy: policy,
            ack_window: c.backpressure.ack_window,
            heartbeat_interval_ms: c.session.heartbeat_interval_ms,
            reconnect_window_ms: c.session.reconnect_window_ms,
            server_version: env!("CARGO_PKG_VERSION"),
            timestamp: now_ms(),
        },
    );
}

/// The connect packet is out: writers may emit.
async fn on_connect(socket: SocketRef) {
    if let Some(binding) = Binding::of(&socket) {
        binding.connected.cancel();
    }
}
