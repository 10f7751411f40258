//! The `/ai` namespace: handshake middleware and thin event handlers.
//!
//! The handshake middleware ([`check_handshake`]) runs before socketioxide
//! sends the connect ack: it applies the per-IP connection limit, reads the
//! `auth` object and, when auth is on, verifies `auth.token`; a refusal is
//! a `connect_error` (`unauthorized: …`, `rate_limited: …`) and no handler
//! runs. The verified `sub` is left in the socket's extensions for
//! [`on_connect`], which makes it the owner of the new client. Every event
//! then passes the client's rate limit ([`admit`]) before its handler does
//! anything, and each handler's fallible part runs under [`guard`], so a
//! panic answers `internal` for that request only.
//!
//! Each handler parses its payload with [`crate::protocol`], calls into the
//! registry, the orchestrator or a stream task, and answers through the
//! client's outbox; errors become events in [`Gateway::reply_error`], the
//! one place a [`GatewayError`] reaches the wire. On connect a client gets
//! its registry entry, a drain task tied to its socket and a heartbeat
//! watchdog; on disconnect its streams are cancelled and its entry goes.

pub mod backpressure;
pub mod guard;
pub mod limits;
pub mod outbound;
pub mod outbox;
pub mod registry;
pub mod replay;
pub mod session;
pub mod stream;

use crate::AppState;
use crate::auth::UserId;
use crate::error::GatewayError;
use crate::protocol::{
    AckRequest, BackpressurePolicy, CancelReason, CancelRequest, Connected, ErrorEvent, FieldError,
    HandshakeAuth, HeartbeatAck, HeartbeatRequest, Invalid, ReconnectRequest, StreamAck,
    StreamRequest, check_stream_sizes, event, now_ms, parse_payload,
};
use axum::extract::ConnectInfo;
use limits::AckVerdict;
use outbox::{ClientOutbox, Outbound, OutboxLimits};
use registry::{Client, random_hex};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, MaybeHttpExtension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use std::net::SocketAddr;
use std::sync::Arc;
use stream::StreamTask;
use validator::Validate;

pub const NAMESPACE: &str = "/ai";

/// Register the namespace on `io`.
pub fn register(io: &SocketIo) {
    io.ns(NAMESPACE, on_connect.with(check_handshake));
}

/// Refuses a bad handshake before the client is told it is connected
/// (socketioxide sends the connect ack before the connect handler runs):
/// too many connections from the peer's address, a malformed `auth`
/// object, or (auth on) a missing or bad token. The error's text is the
/// `connect_error` message. On success the token's `sub` is stashed in the
/// socket's extensions for [`on_connect`].
async fn check_handshake(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    MaybeHttpExtension(peer): MaybeHttpExtension<ConnectInfo<SocketAddr>>,
    TryData(auth): TryData<Value>,
) -> Result<(), String> {
    if let Some(ConnectInfo(peer)) = peer
        && let Err(e) = app.rate_limits.connection(peer.ip())
    {
        tracing::info!(ip = %peer.ip(), "connection refused: rate limited");
        return Err(format!("{}: {}", e.code(), e.client_message()));
    }
    let auth = read_auth(auth)?;
    if let Some(authenticator) = &app.auth {
        match authenticator.verify(auth.token.as_deref()) {
            Ok(user) => {
                socket.extensions.insert(user);
            }
            Err(e) => {
                tracing::info!(sid = %socket.id, reason = %e, "handshake refused");
                // `unauthorized: <reason>`.
                return Err(e.client_message());
            }
        }
    }
    Ok(())
}

fn read_auth(auth: Result<Value, socketioxide::ParserError>) -> Result<HandshakeAuth, String> {
    let value = auth.unwrap_or(Value::Null);
    if value.is_null() {
        return Ok(HandshakeAuth::default());
    }
    serde_json::from_value::<HandshakeAuth>(value).map_err(|e| {
        format!("invalid_request: auth must be an object with optional token (string) and backpressurePolicy (coalesce | slow | drop): {e}")
    })
}

async fn on_connect(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(auth): TryData<Value>,
) {
    let auth = read_auth(auth).unwrap_or_default();
    let policy: BackpressurePolicy = auth
        .backpressure_policy
        .unwrap_or(app.config.backpressure.policy);
    let bp = &app.config.backpressure;
    let limits = OutboxLimits {
        threshold: bp.threshold,
        max_bytes: bp.max_bytes_per_client,
        ack_window: bp.ack_window as u64,
        policy,
        slow_timeout: std::time::Duration::from_millis(bp.slow_client_timeout_ms),
        replay_tokens: app.config.session.replay_buffer_tokens,
        replay_bytes: app.config.session.replay_buffer_bytes,
    };
    let outbox = Arc::new(ClientOutbox::new(limits, app.stats.clone()));
    let user = socket.extensions.get::<UserId>();
    let client = Arc::new(
        Client::new(socket.id, policy, &app.root, outbox)
            .owned_by(user, app.rate_limits.for_client()),
    );
    client.touch();
    app.registry.insert(client.clone());
    let user = client.user.as_ref().map(|u| u.0.clone());
    tracing::info!(client = %client.id(), sid = %socket.id, user = ?user, "client connected");

    client.outbox.push_control(Outbound::Connected(Connected {
        client_id: client.id(),
        resume_token: client.resume_token(),
        max_concurrent_streams: app.config.streams.max_concurrent_streams,
        backpressure_threshold: app.config.backpressure.threshold,
        backpressure_policy: policy,
        ack_window: app.config.backpressure.ack_window,
        heartbeat_interval_ms: app.config.session.heartbeat_interval_ms,
        reconnect_window_ms: app.config.session.reconnect_window_ms,
        server_version: env!("CARGO_PKG_VERSION"),
        timestamp: now_ms(),
    }));
    session::attach(&app, &client, &socket);

    socket.on(event::STREAM, on_stream);
    socket.on(event::CANCEL, on_cancel);
    socket.on(event::HEARTBEAT, on_heartbeat);
    socket.on(event::ACK, on_ack);
    socket.on(event::RECONNECT, on_reconnect);
    socket.on_fallback(on_unknown_event);
    socket.on_disconnect(on_disconnect);
}

/// The client of this socket, with its heartbeat clock moved on.
fn client_of(app: &AppState, socket: &SocketRef) -> Option<Arc<Client>> {
    let client = app.registry.by_socket(socket.id)?;
    client.touch();
    Some(client)
}

/// May an event of a known client go on?
enum Admission {
    Go(Arc<Client>),
    /// Over the client's event budget; it has been told so (`ai:error`),
    /// and the error is here for handlers that also owe an ack.
    Limited(GatewayError),
}

/// The client of this socket (`None`: no client), admitted if its event
/// budget allows one more event.
fn admit(app: &AppState, socket: &SocketRef) -> Option<Admission> {
    let client = client_of(app, socket)?;
    Some(match client.limits.event() {
        Ok(()) => Admission::Go(client),
        Err(e) => {
            reply_error(&client, &e, None);
            Admission::Limited(e)
        }
    })
}

/// Decode an event's payload. A payload socketioxide could not read as
/// JSON (a lone UTF-16 surrogate, nesting past serde_json's depth limit,
/// a number out of range) is named as such; no payload at all counts as
/// `{}` so that the missing fields get named.
fn decode<T: DeserializeOwned + Validate>(
    data: Result<Value, socketioxide::ParserError>,
) -> Result<T, Invalid> {
    parse_payload(unreadable_as_invalid(data)?)
}

fn unreadable_as_invalid(data: Result<Value, socketioxide::ParserError>) -> Result<Value, Invalid> {
    match data {
        Ok(v) => Ok(v),
        // socketioxide's wording for an event sent with no argument at all
        // (tests/validation.rs checks that this still names the fields).
        Err(e) if e.to_string().starts_with("first element not found") => Ok(Value::Null),
        Err(e) => {
            tracing::debug!(error = %e, "unreadable payload");
            Err(FieldError::new(
                "payload",
                "must be valid JSON (no lone UTF-16 surrogates, at most 128 levels deep)",
            )
            .into())
        }
    }
}

/// Send `err` as `ai:error` (never for a live stream: those get
/// `ai:stream:error` from their task).
pub(crate) fn reply_error(client: &Client, err: &GatewayError, stream_id: Option<&str>) {
    let mut details = err.details();
    if let (Some(id), Some(map)) = (stream_id, details.as_object_mut()) {
        map.insert("streamId".into(), json!(id));
    }
    client.outbox.push_control(Outbound::Error(ErrorEvent {
        code: err.code(),
        error: err.client_message(),
        details,
    }));
}

fn ack_error(ack: AckSender, err: &GatewayError) {
    let _ = ack.send(&StreamAck {
        ok: false,
        stream_id: None,
        error: Some(crate::protocol::AckError {
            code: err.code(),
            message: err.client_message(),
        }),
    });
}

async fn on_stream(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    let client = match admit(&app, &socket) {
        None => return,
        Some(Admission::Go(client)) => client,
        Some(Admission::Limited(e)) => return ack_error(ack, &e),
    };
    let raw_id = data
        .as_ref()
        .ok()
        .and_then(|v| v.get("streamId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let started = guard::catch(event::STREAM, || {
        start_stream(&app, &client, unreadable_as_invalid(data)?)
    });
    match started {
        Ok(id) => {
            let _ = ack.send(&StreamAck {
                ok: true,
                stream_id: Some(id),
                error: None,
            });
        }
        Err(err) => {
            reply_error(&client, &err, raw_id.as_deref());
            ack_error(ack, &err);
        }
    }
}

fn start_stream(
    app: &AppState,
    client: &Arc<Client>,
    data: Value,
) -> Result<Arc<str>, GatewayError> {
    check_stream_sizes(&data, &app.limits)?;
    let req: StreamRequest = parse_payload(data)?;
    req.check_limits(&app.limits)?;
    let route = app.orchestrator.route(&req)?;
    app.rate_limits.stream_start(&client.rate_key())?;
    let id: Arc<str> = match &req.stream_id {
        Some(id) => id.as_str().into(),
        None => format!("s_{}", random_hex(8)).into(),
    };
    let control = client.add_stream(id.clone(), app.config.streams.max_concurrent_streams)?;
    StreamTask {
        id: id.clone(),
        client: client.clone(),
        control,
        route,
        stats: app.stats.clone(),
        root: app.root.clone(),
        stream_timeout: app.config.stream_timeout(),
        first_token_timeout: app.config.first_token_timeout(),
    }
    .spawn(&app.tasks);
    Ok(id)
}

async fn on_cancel(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
) {
    let Some(Admission::Go(client)) = admit(&app, &socket) else {
        return;
    };
    let result = guard::catch(event::CANCEL, || {
        let req = decode::<CancelRequest>(data)?;
        client.cancel_stream(&req.stream_id, CancelReason::Client)
    });
    if let Err(e) = result {
        reply_error(&client, &e, None);
    }
}

async fn on_ack(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
) {
    let Some(client) = client_of(&app, &socket) else {
        return;
    };
    // Acks have their own budget (see `limits`); an ack over it is dropped,
    // which the next (cumulative) ack makes good.
    match client.limits.ack() {
        AckVerdict::Apply => {}
        AckVerdict::Refuse => return,
        AckVerdict::RefuseAndTell(retry_after) => {
            let e = GatewayError::RateLimited {
                limit: crate::error::RateLimit::Acks,
                retry_after,
            };
            return reply_error(&client, &e, None);
        }
    }
    let result = guard::catch(event::ACK, || {
        let ack = decode::<AckRequest>(data)?;
        client.outbox.ack(&ack.stream_id, ack.token_count);
        Ok(())
    });
    if let Err(e) = result {
        reply_error(&client, &e, None);
    }
}

async fn on_heartbeat(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
) {
    let Some(Admission::Go(client)) = admit(&app, &socket) else {
        return;
    };
    if let Err(e) = decode::<HeartbeatRequest>(data) {
        reply_error(&client, &e.into(), None);
        return;
    }
    client
        .outbox
        .push_control(Outbound::HeartbeatAck(HeartbeatAck {
            active_streams: client.active_streams(),
            queue_size: client.outbox.len(),
            timestamp: now_ms(),
        }));
}

async fn on_unknown_event(socket: SocketRef, State(app): State<Arc<AppState>>, Event(name): Event) {
    let Some(Admission::Go(client)) = admit(&app, &socket) else {
        return;
    };
    let shown: String = name.chars().take(64).collect();
    let err = GatewayError::from(crate::protocol::FieldError::new(
        "event",
        format!(
            "{shown:?} is not an event of /ai; known: {}, {}, {}, {}, {}",
            event::STREAM,
            event::CANCEL,
            event::HEARTBEAT,
            event::ACK,
            event::RECONNECT,
        ),
    ));
    reply_error(&client, &err, None);
}

async fn on_disconnect(socket: SocketRef, State(app): State<Arc<AppState>>) {
    session::socket_gone(&app, socket.id);
}

async fn on_reconnect(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
) {
    let Some(Admission::Go(client)) = admit(&app, &socket) else {
        return;
    };
    let result = guard::catch_async(event::RECONNECT, async {
        let req = decode::<ReconnectRequest>(data)?;
        session::resume(&app, &client, &socket, req).await;
        Ok(())
    })
    .await;
    if let Err(e) = result {
        reply_error(&client, &e, None);
    }
}
