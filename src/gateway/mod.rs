//! The `/ai` namespace: handshake middleware and thin event handlers.
//!
//! Each handler parses its payload with [`crate::protocol`], calls into the
//! registry, the orchestrator or a stream task, and answers through the
//! client's outbox; errors become events in [`Gateway::reply_error`], the
//! one place a [`GatewayError`] reaches the wire. On connect a client gets
//! its registry entry, a drain task tied to its socket and a heartbeat
//! watchdog; on disconnect its streams are cancelled and its entry goes.

pub mod backpressure;
pub mod outbound;
pub mod outbox;
pub mod registry;
pub mod replay;
pub mod session;
pub mod stream;

use crate::AppState;
use crate::error::GatewayError;
use crate::protocol::{
    AckRequest, BackpressurePolicy, CancelReason, CancelRequest, Connected, ErrorEvent,
    HandshakeAuth, HeartbeatAck, HeartbeatRequest, ReconnectRequest, StreamAck, StreamRequest,
    event, now_ms, parse_payload,
};
use outbox::{ClientOutbox, Outbound, OutboxLimits};
use registry::{Client, random_hex};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use std::sync::Arc;
use stream::StreamTask;

pub const NAMESPACE: &str = "/ai";

/// Register the namespace on `io`.
pub fn register(io: &SocketIo) {
    io.ns(NAMESPACE, on_connect.with(check_handshake));
}

/// Refuses a bad handshake before the client is told it is connected
/// (socketioxide sends the connect ack before the connect handler runs).
async fn check_handshake(TryData(auth): TryData<Value>) -> Result<(), String> {
    read_auth(auth).map(|_| ())
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
    let client = Arc::new(Client::new(socket.id, policy, &app.root, outbox));
    client.touch();
    app.registry.insert(client.clone());
    tracing::info!(client = %client.id(), sid = %socket.id, "client connected");

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
    let Some(client) = client_of(&app, &socket) else {
        return;
    };
    let raw_id = data
        .as_ref()
        .ok()
        .and_then(|v| v.get("streamId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match start_stream(&app, &client, data.unwrap_or(Value::Null)) {
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
    let req: StreamRequest = parse_payload(data)?;
    req.check_limits(&app.limits)?;
    let route = app.orchestrator.route(&req)?;
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
    let Some(client) = client_of(&app, &socket) else {
        return;
    };
    let result = parse_payload::<CancelRequest>(data.unwrap_or(Value::Null))
        .map_err(GatewayError::from)
        .and_then(|req| client.cancel_stream(&req.stream_id, CancelReason::Client));
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
    match parse_payload::<AckRequest>(data.unwrap_or(Value::Null)) {
        Ok(ack) => client.outbox.ack(&ack.stream_id, ack.token_count),
        Err(e) => reply_error(&client, &e.into(), None),
    }
}

async fn on_heartbeat(
    socket: SocketRef,
    State(app): State<Arc<AppState>>,
    TryData(data): TryData<Value>,
) {
    let Some(client) = client_of(&app, &socket) else {
        return;
    };
    if let Err(e) = parse_payload::<HeartbeatRequest>(data.unwrap_or(Value::Null)) {
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
    let Some(client) = client_of(&app, &socket) else {
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
    let Some(client) = client_of(&app, &socket) else {
        return;
    };
    match parse_payload::<ReconnectRequest>(data.unwrap_or(Value::Null)) {
        Ok(req) => session::resume(&app, &client, &socket, req).await,
        Err(e) => reply_error(&client, &e.into(), None),
    }
}
