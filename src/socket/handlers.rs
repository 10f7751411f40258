//! The `/ai` event handlers, a few lines each.
//!
//! Every handler finds its client in the socket's [`Binding`] (moving the
//! heartbeat clock on), spends one event of the client's budget (acks
//! have their own), decodes its payload with [`payload`], calls one engine
//! part, and answers through [`reply`]. Over the budget, only the first
//! refusal of a run is answered with `ai:error` (an `ai:stream` asked for
//! an acknowledgement always gets one). The fallible part runs under
//! [`guard`], so a panic answers `internal` for that request only. On a
//! socket attached to a client at home on another node (a
//! [`RemotePipe`]), `ai:ack`, `ai:cancel` and `ai:heartbeat` for streams
//! this node does not run go to the home instead.

use super::binding::Binding;
use super::payload::{self, EventArg};
use super::remote::{self, RemotePipe};
use super::render::AiRender;
use super::{reply, writer};
use crate::app::App;
use crate::clients::{Client, DetachReason};
use crate::cluster::Command;
use crate::error::{GatewayError, RateLimit};
use crate::guard;
use crate::protocol::{
    AckRequest, CancelReason, CancelRequest, FieldError, HeartbeatAck, HeartbeatRequest,
    ReconnectFailed, ReconnectRequest, StreamRequest, check_stream_sizes, event, now_ms,
    parse_payload,
};
use crate::rate_limit::AckVerdict;
use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use std::sync::Arc;

pub fn register(socket: &SocketRef) {
    socket.on(event::STREAM, on_stream);
    socket.on(event::CANCEL, on_cancel);
    socket.on(event::HEARTBEAT, on_heartbeat);
    socket.on(event::ACK, on_ack);
    socket.on(event::RECONNECT, on_reconnect);
    socket.on_fallback(on_unknown_event);
    socket.on_disconnect(on_disconnect);
}

/// The client this socket serves, with its heartbeat clock moved on.
fn client_of(socket: &SocketRef) -> Option<Arc<Client>> {
    let client = Binding::of(socket)?.client;
    client.touch();
    Some(client)
}

/// The client, if its event budget admits one more event. Over budget it
/// has been told (`ai:error`), if this is the first refusal of a run; the
/// error is handed back for handlers that also owe an acknowledgement.
/// `Err(None)`: no client.
fn admitted(socket: &SocketRef) -> Result<Arc<Client>, Option<GatewayError>> {
    let client = client_of(socket).ok_or(None)?;
    match client.budget.event() {
        Ok(()) => Ok(client),
        Err(refused) => {
            if refused.tell {
                reply::error(&client, &refused.error, None);
            }
            Err(Some(refused.error))
        }
    }
}

async fn on_stream(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    TryData(arg): TryData<EventArg>,
    ack: AckSender,
) {
    let client = match admitted(&socket) {
        Ok(client) => client,
        Err(Some(e)) => return reply::ack_error(ack, &e),
        Err(None) => return,
    };
    let raw = payload::raw(arg);
    let stream_id = raw
        .as_ref()
        .ok()
        .and_then(|v| v.get("streamId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let started = guard::catch_async(event::STREAM, async {
        start_stream(&app, &client, raw?).await
    })
    .await;
    match started {
        Ok(id) => reply::ack_ok(ack, id),
        Err(err) => {
            reply::error(&client, &err, stream_id.as_deref());
            reply::ack_error(ack, &err);
        }
    }
}

async fn start_stream(
    app: &App,
    client: &Arc<Client>,
    data: Value,
) -> Result<Arc<str>, GatewayError> {
    check_stream_sizes(&data, &app.relay.settings.request_bounds)?;
    let req: StreamRequest = parse_payload(data)?;
    app.relay.start(client, req).await
}

async fn on_cancel(socket: SocketRef, TryData(arg): TryData<EventArg>) {
    let Ok(client) = admitted(&socket) else {
        return;
    };
    let result = guard::catch(event::CANCEL, || {
        let req = payload::decode::<CancelRequest>(arg)?;
        if let Some(pipe) = RemotePipe::of(&socket).filter(|_| !client.has_stream(&req.stream_id)) {
            pipe.forward(Command::Cancel {
                client: pipe.client.to_string(),
                stream_id: req.stream_id,
            });
            return Ok(());
        }
        client.cancel_stream(&req.stream_id, CancelReason::Client)
    });
    if let Err(e) = result {
        reply::error(&client, &e, None);
    }
}

async fn on_ack(socket: SocketRef, TryData(arg): TryData<EventArg>) {
    let Some(client) = client_of(&socket) else {
        return;
    };
    // Acks have their own budget; an ack over it is dropped, which the
    // next (cumulative) ack makes good.
    match client.budget.ack() {
        AckVerdict::Apply => {}
        AckVerdict::Refuse => return,
        AckVerdict::RefuseAndTell(retry_after) => {
            let limit = RateLimit::Acks;
            return reply::error(
                &client,
                &GatewayError::RateLimited { limit, retry_after },
                None,
            );
        }
    }
    let result = guard::catch(event::ACK, || {
        let ack = payload::decode::<AckRequest>(arg)?;
        match RemotePipe::of(&socket).filter(|_| !client.has_stream(&ack.stream_id)) {
            Some(pipe) => pipe.forward(Command::Ack {
                client: pipe.client.to_string(),
                stream_id: ack.stream_id,
                token_count: ack.token_count,
            }),
            None => client.outbox.ack(&ack.stream_id, ack.token_count),
        }
        Ok(())
    });
    if let Err(e) = result {
        reply::error(&client, &e, None);
    }
}

async fn on_heartbeat(socket: SocketRef, TryData(arg): TryData<EventArg>) {
    let Ok(client) = admitted(&socket) else {
        return;
    };
    if let Err(e) = payload::decode::<HeartbeatRequest>(arg) {
        return reply::error(&client, &e.into(), None);
    }
    if let Some(pipe) = RemotePipe::of(&socket) {
        pipe.forward(Command::Touch {
            client: pipe.client.to_string(),
        });
    }
    let answer = HeartbeatAck {
        active_streams: client.active_streams(),
        queue_size: client.outbox.len(),
        timestamp: now_ms(),
    };
    reply::control(&client, event::HEARTBEAT_ACK, &answer);
}

async fn on_unknown_event(socket: SocketRef, Event(name): Event) {
    let Ok(client) = admitted(&socket) else {
        return;
    };
    let shown: String = name.chars().take(64).collect();
    let known = [
        event::STREAM,
        event::CANCEL,
        event::HEARTBEAT,
        event::ACK,
        event::RECONNECT,
    ];
    let rule = format!(
        "{shown:?} is not an event of /ai; known: {}",
        known.join(", ")
    );
    reply::error(&client, &FieldError::new("event", rule).into(), None);
}

async fn on_disconnect(socket: SocketRef, State(app): State<Arc<App>>) {
    let Some(b) = Binding::of(&socket) else {
        return;
    };
    if let Some(pipe) = RemotePipe::of(&socket) {
        return pipe.close(&app, &b.client);
    }
    app.clients
        .detach(&b.client, b.attachment.epoch, DetachReason::Gone);
    if !b.client.is_attached() {
        app.note_home(&b.client, false, None);
    }
}

async fn on_reconnect(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    TryData(arg): TryData<EventArg>,
) {
    let Ok(fresh) = admitted(&socket) else { return };
    let result = guard::catch_async(event::RECONNECT, async {
        let req = payload::decode::<ReconnectRequest>(arg)?;
        resume(&app, &socket, &fresh, req).await;
        Ok(())
    })
    .await;
    if let Err(e) = result {
        reply::error(&fresh, &e, None);
    }
}

/// Resume the client `req` names on this socket (through its home node
/// when another node runs it), or say why not.
async fn resume(app: &Arc<App>, socket: &SocketRef, fresh: &Arc<Client>, req: ReconnectRequest) {
    if remote::attach_elsewhere(app, socket, fresh, &req).await {
        return;
    }
    let wanted = req.streams.map(|list| {
        list.into_iter()
            .map(|s| (s.stream_id, s.last_token_count))
            .collect()
    });
    let previous_client_id = req.previous_client_id;
    let resumed = app
        .clients
        .resume(fresh, &previous_client_id, &req.resume_token, wanted)
        .await;
    let r = match resumed {
        Ok(r) => r,
        Err(refused) => {
            let reason = refused.reason();
            let failed = ReconnectFailed {
                previous_client_id,
                reason,
            };
            return reply::control(fresh, event::RECONNECT_FAILED, &failed);
        }
    };
    app.note_home(&r.client, true, Some(&previous_client_id));
    let success = r.success(previous_client_id);
    reply::control(&r.client, event::RECONNECT_SUCCESS, &success);
    for id in &r.unknown {
        reply::error(
            &r.client,
            &GatewayError::UnknownStream(id.clone()),
            Some(id),
        );
    }
    let Some(old) = Binding::of(socket) else {
        return;
    };
    let binding = Binding {
        client: r.client,
        attachment: r.attachment,
        connected: old.connected,
    };
    socket.extensions.insert(binding.clone());
    writer::spawn(app, socket.clone(), binding, Some(r.reader), AiRender);
}
