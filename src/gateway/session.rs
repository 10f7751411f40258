//! A client's life across sockets: attach, detach, the reconnect window,
//! and resume.
//!
//! [`attach`] ties a client to a socket: a drain task moves its outbox into
//! the socket and a watchdog disconnects it when its heartbeat goes stale.
//! When the socket goes ([`socket_gone`]: a disconnect, a stale heartbeat,
//! a transport stuck past its liveness window) the client is detached, not
//! dropped: its streams run on, their events wait in the outbox (held back
//! at its caps), and a timer gives it `reconnectWindowMs`. A new socket
//! that sends `ai:reconnect` with the resume token ([`resume`]) takes the
//! client over: the old drain is awaited out, the outbox is rewound so
//! that what the client lacks goes first, then the rest in order, and a
//! new drain starts on the new socket. If the window runs out first, the
//! streams are cancelled (`disconnect`), closing their upstreams, and
//! everything the client held is freed.

use super::outbox::{DrainEnd, Outbound};
use super::registry::Client;
use super::reply_error;
use crate::AppState;
use crate::error::GatewayError;
use crate::protocol::{
    CancelReason, ErrorEvent, ReconnectFailed, ReconnectRequest, ReconnectSuccess, ResumedStream,
};
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Start the drain and the heartbeat watchdog of `client` on `socket`.
pub fn attach(app: &Arc<AppState>, client: &Arc<Client>, socket: &SocketRef) {
    app.tasks
        .spawn(drain(app.clone(), client.clone(), socket.clone()));
    app.tasks
        .spawn(watch_heartbeat(app.clone(), client.clone(), socket.clone()));
}

/// The socket `sid` is gone: detach its client and start its window.
pub fn socket_gone(app: &Arc<AppState>, sid: Sid) {
    let Some((client, epoch)) = app.registry.detach_socket(sid) else {
        return;
    };
    let window = Duration::from_millis(app.config.session.reconnect_window_ms);
    tracing::info!(client = %client.id(), window_ms = window.as_millis() as u64, "client detached");
    let app2 = app.clone();
    app.tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(window) => {}
            // Shutdown cleans up every client itself.
            _ = app2.root.cancelled() => return,
        }
        if app2.registry.expire(&client, epoch) {
            tracing::info!(client = %client.id(), "reconnect window over; cancelling its streams");
            client.cancel_all(CancelReason::Disconnect);
            client.outbox.clear();
        }
    });
}

/// `ai:reconnect` from `fresh`, the client of `socket`.
pub async fn resume(
    app: &Arc<AppState>,
    fresh: &Arc<Client>,
    socket: &SocketRef,
    req: ReconnectRequest,
) {
    let fail = |reason: &'static str| {
        app.stats.resumes_failed.fetch_add(1, Relaxed);
        tracing::info!(previous = %req.previous_client_id, reason, "resume refused");
        fresh
            .outbox
            .push_control(Outbound::ReconnectFailed(ReconnectFailed {
                previous_client_id: req.previous_client_id.clone(),
                reason,
            }));
    };
    // A connection that already runs streams cannot become another client.
    if fresh.active_streams() > 0 {
        return fail("forbidden");
    }
    let (client, old_sid) =
        match app
            .registry
            .resume(&req.previous_client_id, &req.resume_token, fresh, socket.id)
        {
            Ok(r) => r,
            Err(refused) => return fail(refused.reason()),
        };
    if let Some(old) = old_sid {
        take_over_from(app, &client, old);
    }
    // Nothing may emit for this client until the old drain is gone.
    client.outbox.wait_for_drain_to_stop().await;
    let wanted = req.streams.map(|list| {
        list.into_iter()
            .map(|s| (s.stream_id, s.last_token_count))
            .collect()
    });
    let (resumed, unknown) = client.outbox.rewind(wanted);
    let replayed: u64 = resumed.iter().map(|r| r.replayed).sum();
    app.stats.resumes_succeeded.fetch_add(1, Relaxed);
    app.stats.tokens_replayed.fetch_add(replayed, Relaxed);
    tracing::info!(client = %client.id(), previous = %req.previous_client_id, streams = resumed.len(), replayed, "client resumed");
    client.touch();
    client
        .outbox
        .push_control(Outbound::ReconnectSuccess(ReconnectSuccess {
            previous_client_id: req.previous_client_id,
            new_client_id: client.id(),
            resume_token: client.resume_token(),
            streams: resumed
                .into_iter()
                .map(|r| ResumedStream {
                    stream_id: r.stream_id,
                    state: r.state,
                    token_count: r.token_count,
                })
                .collect(),
        }));
    for id in unknown {
        reply_error(&client, &GatewayError::UnknownStream(id.clone()), Some(&id));
    }
    attach(app, &client, socket);
}

/// Tell the socket a client was attached to that another connection took
/// it over, then disconnect it.
fn take_over_from(app: &AppState, client: &Client, old: Sid) {
    let Some(io) = app.io.get() else { return };
    let Some(ns) = io.of(super::NAMESPACE) else {
        return;
    };
    if let Some(old_socket) = ns.get_socket(old) {
        tracing::info!(client = %client.id(), "taken over by another connection");
        let _ = old_socket.emit(
            crate::protocol::event::ERROR,
            &ErrorEvent {
                code: "unauthorized",
                error: "this client was taken over by another connection (ai:reconnect)".into(),
                details: json!({ "reason": "taken_over" }),
            },
        );
        let _ = old_socket.disconnect();
    }
}

/// Runs the client's drain; if the transport died under it without a
/// disconnect handler running (see [`DrainEnd`]), detach here.
async fn drain(app: Arc<AppState>, client: Arc<Client>, socket: SocketRef) {
    let c = &app.config.server;
    let liveness = Duration::from_millis(c.ping_interval_ms + c.ping_timeout_ms);
    let token = client.attachment_token();
    let end = client
        .outbox
        .clone()
        .drain(socket.clone(), token, liveness)
        .await;
    if end == DrainEnd::TransportDead {
        tracing::info!(client = %client.id(), "transport stuck past its liveness window; detaching");
        let _ = socket.clone().disconnect();
        socket_gone(&app, socket.id);
    }
}

/// Disconnects a client whose last event is older than 3 heartbeat
/// intervals. One timer per attachment, re-armed from the last-seen clock.
async fn watch_heartbeat(app: Arc<AppState>, client: Arc<Client>, socket: SocketRef) {
    let stale_after = app.config.heartbeat_interval() * 3;
    let attached = client.attachment_token();
    loop {
        let due = client.last_seen() + stale_after;
        tokio::select! {
            _ = attached.cancelled() => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        if client.last_seen() + stale_after <= tokio::time::Instant::now() {
            tracing::info!(client = %client.id(), "heartbeat stale; disconnecting");
            let _ = socket.clone().disconnect();
            socket_gone(&app, socket.id);
            return;
        }
    }
}
