//! The Socket.IO handshake of every namespace: refuse before the connect
//! packet, or set the connection up completely before it (client,
//! greeting, attachment, writer, handlers), so that no event can arrive
//! before its handler. Refusals, in order: the per-address join rate (the
//! real client address the connection gate found, `http::peer`), the
//! token, the process's cap on clients.
//!
//! The join rate, the `auth` object, the JWT, the client and its writer
//! are the same on every namespace; what differs (the greeting, the
//! handlers, how the writer renders, how the transport is judged alive)
//! is the namespace's [`Door`]. `/ai`'s is [`AiDoor`]; the default
//! namespace's is in `dialects/`.

use super::binding::Binding;
use super::render::{AiRender, Render};
use super::{handlers, reply, writer};
use crate::app::App;
use crate::clients::{Client, Liveness, Origin};
use crate::error::GatewayError;
use crate::http::peer::ClientAddr;
use crate::protocol::{BackpressurePolicy, Connected, FieldError, HandshakeAuth, event, now_ms};
use serde_json::Value;
use socketioxide::extract::{MaybeHttpExtension, SocketRef, State, TryData};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What a namespace adds to the shared handshake.
pub trait Door: 'static {
    /// How the client's transport is judged alive: `/ai` clients send
    /// heartbeats; clients that do not are judged by the connection.
    const LIVENESS: Liveness;
    type Render: Render;

    /// Queue the client's first event.
    fn greet(app: &App, client: &Client, policy: BackpressurePolicy);

    /// Register the namespace's event handlers on `socket` (with whatever
    /// they keep in its extensions) and make the writer's renderer.
    fn register(socket: &SocketRef, client: &Arc<Client>) -> Self::Render;
}

/// The `/ai` namespace: `ai:connected`, the `/ai` handlers, heartbeats.
pub struct AiDoor;

impl Door for AiDoor {
    const LIVENESS: Liveness = Liveness::Heartbeat;
    type Render = AiRender;

    fn greet(app: &App, client: &Client, policy: BackpressurePolicy) {
        // Before any stream: every event its streams produce is logged.
        super::mirror::attach(app, client);
        greet(app, client, policy);
    }

    fn register(socket: &SocketRef, _client: &Arc<Client>) -> AiRender {
        handlers::register(socket);
        AiRender
    }
}

/// Refuses a bad handshake before the client is told it is connected;
/// otherwise sets the connection up for door `D` (see the module docs).
/// The error's text is the `connect_error` message.
pub async fn handshake<D: Door>(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    MaybeHttpExtension(address): MaybeHttpExtension<ClientAddr>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let address = address.map(|ClientAddr(ip)| ip);
    let (client, policy) =
        admit(&app, &socket, address, auth).map_err(|e| e.wire().handshake_message())?;
    set_up::<D>(&app, &socket, &client, policy);
    Ok(())
}

/// The refusals, in order (join rate, token, client cap); on success the
/// new client and the backpressure policy it asked for.
fn admit(
    app: &App,
    socket: &SocketRef,
    address: Option<IpAddr>,
    auth: Result<Value, socketioxide::ParserError>,
) -> Result<(Arc<Client>, BackpressurePolicy), GatewayError> {
    if let Some(ip) = address {
        app.rate_limits
            .connection(ip)
            .inspect_err(|_| tracing::info!(%ip, "connection refused: rate limited"))?;
    }
    let auth = read_auth(auth)?;
    let owner = match &app.auth {
        Some(authenticator) => Some(
            authenticator
                .verify_token(auth.token.as_deref())
                .inspect_err(
                    |e| tracing::info!(sid = %socket.id, reason = %e, "handshake refused"),
                )?,
        ),
        None => None,
    };
    let policy = auth
        .backpressure_policy
        .unwrap_or(app.config.backpressure.policy);
    let origin = Origin { owner, address };
    let client = app
        .clients
        .open(
            None,
            origin,
            app.rate_limits.budget(),
            app.outbox_settings(policy),
        )
        .inspect_err(|e| tracing::warn!(ip = ?address, error = %e, "connection refused"))?;
    Ok((client, policy))
}

/// Everything before the connect packet: the greeting, the attachment,
/// the socket's binding, the handlers and the writer.
fn set_up<D: Door>(
    app: &Arc<App>,
    socket: &SocketRef,
    client: &Arc<Client>,
    policy: BackpressurePolicy,
) {
    D::greet(app, client, policy);
    let attachment = app.clients.attach_new(client, D::LIVENESS);
    let binding = Binding {
        client: client.clone(),
        attachment,
        connected: CancellationToken::new(),
    };
    socket.extensions.insert(binding.clone());
    let render = D::register(socket, client);
    writer::spawn(app, socket.clone(), binding, None, render);
    // With many nodes, a reconnect on another node must find this one.
    app.note_home(client, true, None);
    let owner = client.owner.as_ref().map(|u| u.0.clone());
    let ns = socket.ns();
    tracing::info!(client = %client.id(), sid = %socket.id, ns, user = ?owner, "client connected");
}

fn read_auth(
    auth: Result<Value, socketioxide::ParserError>,
) -> Result<HandshakeAuth, GatewayError> {
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
pub async fn on_connect(socket: SocketRef) {
    if let Some(binding) = Binding::of(&socket) {
        binding.connected.cancel();
    }
}
