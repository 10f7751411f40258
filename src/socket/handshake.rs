//! The `/ai` handshake: refuse before the connect packet, or set the
//! connection up completely before it (client, greeting, attachment,
//! writer, handlers), so that no event can arrive before its handler.
//! Refusals, in order: the per-address join rate (the real client address
//! the connection gate found, `http::peer`), the token, the process's cap
//! on clients.

use super::binding::Binding;
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

/// Refuses a bad handshake before the client is told it is connected;
/// otherwise sets the connection up (see the module docs). The error's
/// text is the `connect_error` message.
pub async fn handshake(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    MaybeHttpExtension(address): MaybeHttpExtension<ClientAddr>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    let address = address.map(|ClientAddr(ip)| ip);
    let (client, policy) =
        admit(&app, &socket, address, auth).map_err(|e| e.wire().handshake_message())?;
    set_up(&app, &socket, &client, policy);
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
fn set_up(app: &Arc<App>, socket: &SocketRef, client: &Arc<Client>, policy: BackpressurePolicy) {
    greet(app, client, policy);
    let attachment = app.clients.attach_new(client, Liveness::Heartbeat);
    let binding = Binding {
        client: client.clone(),
        attachment,
        connected: CancellationToken::new(),
    };
    socket.extensions.insert(binding.clone());
    handlers::register(socket);
    writer::spawn(app, socket.clone(), binding, None);
    let owner = client.owner.as_ref().map(|u| u.0.clone());
    tracing::info!(client = %client.id(), sid = %socket.id, user = ?owner, "client connected");
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
