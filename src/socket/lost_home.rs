//! `ai:reconnect` on this node for a client whose home node died: its
//! streams are resumed from their logs in Redis (`socket/mirror.rs` wrote
//! them as the home produced them) and end with `ai:stream:error`
//! `node_lost`, so the client still gets, exactly once, everything the
//! home had produced after its `lastTokenCount`.
//!
//! The resume is checked here against the credentials the home left in
//! Redis (the client's owner and its resume token's digest) and spends
//! them; the answer and the replayed events go straight to the socket, in
//! order (the events are already rendered). The connection stays this
//! node's own client: its id and resume token are the ones the success
//! names. Nothing here writes the logs or touches another client.

use super::mirror::{MERGED_TOKENS, MergedTokens};
use super::remote::emit_waiting;
use super::reply;
use crate::app::{App, token_digest};
use crate::clients::Client;
use crate::cluster::StreamLogs;
use crate::error::GatewayError;
use crate::protocol::{
    ReconnectFailed, ReconnectRequest, ReconnectSuccess, ResumedStream, StreamError, Token, event,
};
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// One stream's replay: its id, what the client has, and the logged
/// events after that.
pub(super) struct Replay {
    stream: Arc<str>,
    after: Option<u64>,
    events: Vec<(String, String)>,
}

impl Replay {
    /// Nothing to replay of `stream`: it ends with `node_lost` at once.
    pub(super) fn empty(stream: Arc<str>) -> Self {
        Self {
            stream,
            after: None,
            events: Vec::new(),
        }
    }
}

/// Resume `req` from the logs of its dead home `home`; false when no
/// node left credentials for it (the local resume then answers
/// `unknown`).
pub async fn resume_from_logs(
    app: &Arc<App>,
    socket: &SocketRef,
    fresh: &Arc<Client>,
    req: &ReconnectRequest,
    home: &str,
) -> bool {
    let Some(cluster) = &app.cluster else {
        return false;
    };
    let logs = &cluster.logs;
    let Ok(Some(cred)) = logs.credentials(&req.previous_client_id).await else {
        return false;
    };
    let owner = fresh.owner.as_ref().map(|u| u.0.to_string());
    let digest = token_digest(&req.resume_token);
    let token_ok: bool = digest.as_bytes().ct_eq(cred.token_sha256.as_bytes()).into();
    if !token_ok || cred.owner != owner {
        let failed = ReconnectFailed {
            previous_client_id: req.previous_client_id.clone(),
            reason: "forbidden",
        };
        reply::control(fresh, event::RECONNECT_FAILED, &failed);
        return true;
    }
    if !matches!(
        logs.spend_credentials(&req.previous_client_id).await,
        Ok(true)
    ) {
        return false;
    }
    let replays = read_all(logs, &cred.log, req).await;
    tracing::info!(previous = %req.previous_client_id, home, streams = replays.len(), "client resumed from the logs of its lost home");
    replay(app, socket, fresh, req, home, &replays).await;
    true
}

/// The logs of the streams `req` names (every logged stream when it names
/// none, each from its start).
async fn read_all(logs: &StreamLogs, log: &str, req: &ReconnectRequest) -> Vec<Replay> {
    let wanted: Vec<(String, Option<u64>)> = match &req.streams {
        Some(list) => list
            .iter()
            .map(|s| (s.stream_id.clone(), s.last_token_count))
            .collect(),
        None => logs
            .streams_of(log)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|id| (id, None))
            .collect(),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (stream, after) in wanted {
        out.push(read_one(logs, log, stream.into(), after).await);
    }
    out
}

/// `stream`'s logged events after `after` (none when Redis does not
/// answer: the stream then ends with `node_lost` at once).
pub(super) async fn read_one(
    logs: &StreamLogs,
    log: &str,
    stream: Arc<str>,
    after: Option<u64>,
) -> Replay {
    let events = logs.read(log, &stream, after).await.unwrap_or_default();
    Replay {
        stream,
        after,
        events,
    }
}

/// The success, then each stream's events and its end.
async fn replay(
    app: &App,
    socket: &SocketRef,
    fresh: &Client,
    req: &ReconnectRequest,
    home: &str,
    replays: &[Replay],
) {
    let success = ReconnectSuccess {
        previous_client_id: req.previous_client_id.clone(),
        new_client_id: fresh.id(),
        resume_token: fresh.resume_token(),
        streams: replays.iter().map(resumed).collect(),
    };
    let id = fresh.id();
    if !emit_json(app, socket, &id, event::RECONNECT_SUCCESS, &success).await {
        return;
    }
    for r in replays {
        if !deliver(app, socket, &id, home, r).await {
            return;
        }
    }
}

/// Emit `r`'s events, then `node_lost` unless its log ended it; false
/// when the socket closed.
pub(super) async fn deliver(
    app: &App,
    socket: &SocketRef,
    client: &str,
    home: &str,
    r: &Replay,
) -> bool {
    for (name, payload) in &r.events {
        let sent = if name == MERGED_TOKENS {
            emit_pieces(app, socket, client, payload, r.after).await
        } else {
            let Ok(raw) = RawValue::from_string(payload.clone()) else {
                break;
            };
            emit_waiting(app, socket, client, name, &raw).await
        };
        if !sent {
            return false;
        }
    }
    if terminal_of(r).is_some() {
        return true;
    }
    let wire = GatewayError::NodeLost(home.to_string()).wire();
    let lost = StreamError {
        stream_id: r.stream.clone(),
        code: wire.code,
        error: wire.message.clone(),
        retryable: wire.retryable,
        status: wire.status,
    };
    emit_json(app, socket, client, event::STREAM_ERROR, &lost).await
}

/// A merged entry's tokens after `after`, one `ai:token` each (as they
/// were produced); false when the socket closed.
async fn emit_pieces(
    app: &App,
    socket: &SocketRef,
    client: &str,
    payload: &str,
    after: Option<u64>,
) -> bool {
    let Ok(merged) = serde_json::from_str::<MergedTokens>(payload) else {
        return true;
    };
    for (position, data) in (merged.first..).zip(merged.pieces) {
        if after.is_some_and(|n| position <= n) {
            continue;
        }
        let token = Token {
            stream_id: merged.stream_id.clone(),
            data,
            token_count: position,
            agent: merged.agent.clone(),
            metadata: None,
        };
        if !emit_json(app, socket, client, event::TOKEN, &token).await {
            return false;
        }
    }
    true
}

async fn emit_json(
    app: &App,
    socket: &SocketRef,
    client: &str,
    name: &str,
    payload: &impl serde::Serialize,
) -> bool {
    match serde_json::value::to_raw_value(payload) {
        Ok(raw) => emit_waiting(app, socket, client, name, &raw).await,
        Err(_) => false,
    }
}

/// How the stream ended, if its log says so.
fn terminal_of(r: &Replay) -> Option<&'static str> {
    match r.events.last().map(|(name, _)| name.as_str()) {
        Some(event::DONE) => Some("completed"),
        Some(event::STREAM_CANCELLED) => Some("cancelled"),
        Some(event::STREAM_ERROR) => Some("failed"),
        _ => None,
    }
}

/// The stream as the success names it: its end, or `streaming` (it ends
/// with `node_lost` next), and the last position its log holds.
fn resumed(r: &Replay) -> ResumedStream {
    let last = r
        .events
        .iter()
        .rev()
        .find_map(|(_, p)| position_in(p))
        .or(r.after)
        .unwrap_or(0);
    ResumedStream {
        stream_id: r.stream.clone(),
        state: terminal_of(r).unwrap_or("streaming"),
        token_count: last,
    }
}

/// A delta payload's position (`tokenCount`).
fn position_in(payload: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()?
        .get("tokenCount")?
        .as_u64()
}
