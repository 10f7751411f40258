//! The `/ai` door for a client attached here whose streams run on another
//! node (its home): `ai:reconnect` for a client this node does not hold.
//!
//! [`attach_elsewhere`] finds the client's home in Redis, sends it a
//! resume command and tails the attachment stream the home writes the
//! client's events to, emitting each on this socket as it is (the home
//! rendered it; positions, replay and credits are the home's). The
//! socket keeps a [`RemotePipe`] in its extensions, so `ai:ack`,
//! `ai:cancel` and `ai:heartbeat` for streams this node does not run go
//! to the home as commands, and a closing socket detaches the client
//! there. If the home's liveness key lapses, the streams still live end
//! with `ai:stream:error` `node_lost` (retryable), after everything the
//! home had written.

use super::lost_home::{Replay, deliver, read_one};
use crate::app::App;
use crate::clients::{Client, random_hex};
use crate::cluster::{Command, NodeMail, Tail, batch_of};
use crate::protocol::{CancelReason, ReconnectFailed, ReconnectRequest, event};
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A socket attached here to a client at home on another node.
#[derive(Clone)]
pub struct RemotePipe {
    pub home: Arc<str>,
    /// The client's id (this connection's own id, which the home gave it).
    pub client: Arc<str>,
    pub att: Arc<str>,
    mail: Arc<NodeMail>,
}

impl RemotePipe {
    pub fn of(socket: &SocketRef) -> Option<Self> {
        socket.extensions.get::<RemotePipe>()
    }

    /// Send `cmd` to the home, off the handler's path (acks are
    /// cumulative and a lost one is made good by the next).
    pub fn forward(&self, cmd: Command) {
        let (mail, home) = (self.mail.clone(), self.home.clone());
        tokio::spawn(async move {
            if let Err(e) = mail.send(&home, &cmd).await {
                tracing::debug!(home = %home, error = %e, "command to the home node not sent");
            }
        });
    }

    /// The socket closed: the home detaches the client (its window runs
    /// there) and this node forgets its own client.
    pub fn close(&self, app: &App, fresh: &Arc<Client>) {
        self.forward(Command::Detach {
            client: self.client.to_string(),
            att: self.att.to_string(),
        });
        app.clients.forget(fresh, CancelReason::Disconnect);
    }
}

/// Resume `req` on its home node when this node does not hold the client
/// and Redis names another home; false when it is not for another node
/// (the local resume then answers).
pub async fn attach_elsewhere(
    app: &Arc<App>,
    socket: &SocketRef,
    fresh: &Arc<Client>,
    req: &ReconnectRequest,
) -> bool {
    let Some(cluster) = &app.cluster else {
        return false;
    };
    let mail = cluster.mail.clone();
    let here = cluster.link.node().clone();
    if fresh.active_streams() > 0 || app.clients.registry.get(&req.previous_client_id).is_some() {
        return false;
    }
    let home: Arc<str> = match mail.home_of(&req.previous_client_id).await {
        Ok(Some(h)) if *h != *here => h.into(),
        _ => return false,
    };
    // A home that died: what it had produced is in its streams' logs.
    if !mail.is_alive(&home).await.unwrap_or(true) {
        return super::lost_home::resume_from_logs(app, socket, fresh, req, &home).await;
    }
    let att: Arc<str> = format!("{here}.{}", random_hex(8)).into();
    let Ok(tail) = mail.attachment(&att).await else {
        return false;
    };
    let resume = resume_command(req, fresh, &att, &here);
    if mail.send(&home, &resume).await.is_err() {
        return false;
    }
    tracing::info!(previous = %req.previous_client_id, home = %home, "client resumed through its home node");
    let pipe = RemotePipe {
        home,
        client: fresh.id(),
        att,
        mail,
    };
    socket.extensions.insert(pipe.clone());
    let attached = RemoteAttachment {
        app: app.clone(),
        socket: socket.clone(),
        fresh: fresh.clone(),
        pipe,
        previous_client_id: req.previous_client_id.clone(),
        answered: false,
        live: BTreeMap::new(),
    };
    app.shutdown.spawn(attached.run(tail));
    true
}

/// The command that asks the home to resume `req` onto this connection.
fn resume_command(req: &ReconnectRequest, fresh: &Client, att: &str, here: &str) -> Command {
    Command::Resume {
        att: att.to_string(),
        from: here.to_string(),
        previous_client_id: req.previous_client_id.clone(),
        resume_token: req.resume_token.clone(),
        new_client_id: fresh.id().to_string(),
        owner: fresh.owner.as_ref().map(|u| u.0.to_string()),
        owner_expires_at: fresh.owner_expires_at,
        streams: req.streams.as_ref().map(|list| {
            list.iter()
                .map(|s| (s.stream_id.clone(), s.last_token_count))
                .collect()
        }),
    }
}

/// How long the home has to answer a resume before the client is told
/// `unknown`.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Carries one attachment stream to the socket.
struct RemoteAttachment {
    app: Arc<App>,
    socket: SocketRef,
    fresh: Arc<Client>,
    pipe: RemotePipe,
    previous_client_id: String,
    /// The home has answered the resume (success or failure).
    answered: bool,
    /// Streams started and not ended, and the last position delivered of
    /// each, for what the logs hold beyond it and `node_lost`.
    live: BTreeMap<String, u64>,
}

/// Why a tail stopped.
enum TailEnd {
    /// The home ended the attachment, or the socket closed.
    Done,
    /// The home's liveness key lapsed.
    HomeLost,
    /// The home never answered the resume.
    NoAnswer,
}

impl RemoteAttachment {
    async fn run(mut self, mut tail: Tail) {
        let beat = self.app.config.redis.heartbeat_interval_ms;
        let beat = Duration::from_millis(beat);
        let mut checked = Instant::now();
        let asked = Instant::now();
        let root = self.app.shutdown.root.clone();
        let end = loop {
            if !self.answered && asked.elapsed() > ANSWER_WITHIN {
                break TailEnd::NoAnswer;
            }
            let read = tokio::select! {
                _ = root.cancelled() => break TailEnd::Done,
                r = tail.next() => r,
            };
            match read {
                Ok(entries) => {
                    if !self.emit_all(entries).await {
                        break TailEnd::Done;
                    }
                }
                Err(_) => tokio::time::sleep(beat / 4).await,
            }
            if checked.elapsed() >= beat {
                checked = Instant::now();
                if let Ok(false) = self.pipe.mail.is_alive(&self.pipe.home).await {
                    // What the home wrote before it died goes first.
                    if let Ok(entries) = tail.next().await {
                        self.emit_all(entries).await;
                    }
                    break TailEnd::HomeLost;
                }
            }
        };
        match end {
            TailEnd::HomeLost if self.answered => self.lost().await,
            TailEnd::HomeLost | TailEnd::NoAnswer => self.refuse(),
            TailEnd::Done => {}
        }
    }

    /// Emit the entries' events in order; false once the attachment is
    /// over.
    async fn emit_all(&mut self, entries: Vec<Vec<String>>) -> bool {
        for fields in entries {
            for (name, payload) in batch_of(&fields) {
                if name.is_empty() {
                    return false;
                }
                self.note(&name);
                self.track(&name, payload.get());
                if !self.emit(&name, &payload).await {
                    return false;
                }
            }
        }
        true
    }

    /// What the home's answer to the resume means for this node.
    fn note(&mut self, name: &str) {
        if name == event::RECONNECT_SUCCESS || name == event::RECONNECT_FAILED {
            self.answered = true;
        }
        if name == event::RECONNECT_SUCCESS {
            // The home gave this connection's id to the client: this
            // node's own client of that id must not answer for it.
            self.app.clients.registry.remove(&self.fresh);
        }
        if name == event::RECONNECT_FAILED {
            // Refused: this connection is this node's own client again.
            self.socket.extensions.remove::<RemotePipe>();
        }
    }

    /// Keep `live` up to date: the streams the resume says are
    /// `streaming`, then every stream event until its terminal one.
    fn track(&mut self, name: &str, payload: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(payload) else {
            return;
        };
        let position = |v: &serde_json::Value| v.get("tokenCount").and_then(|n| n.as_u64());
        if name == event::RECONNECT_SUCCESS {
            let streams = v.get("streams").and_then(|s| s.as_array());
            for s in streams.into_iter().flatten() {
                if let (Some(id), Some("streaming")) = (
                    s.get("streamId").and_then(|x| x.as_str()),
                    s.get("state").and_then(|x| x.as_str()),
                ) {
                    self.live.insert(id.to_string(), position(s).unwrap_or(0));
                }
            }
            return;
        }
        let Some(id) = v.get("streamId").and_then(|s| s.as_str()) else {
            return;
        };
        match name {
            event::STREAM_START => {
                self.live.insert(id.to_string(), 0);
            }
            event::DONE | event::STREAM_CANCELLED | event::STREAM_ERROR => {
                self.live.remove(id);
            }
            _ => {
                if let (Some(last), Some(n)) = (self.live.get_mut(id), position(&v)) {
                    *last = n;
                }
            }
        }
    }

    async fn emit(&self, name: &str, payload: &RawValue) -> bool {
        emit_waiting(&self.app, &self.socket, &self.pipe.client, name, payload).await
    }

    /// The home did not answer (or died first): the resume fails as for a
    /// client no node holds, and this connection is this node's own again.
    fn refuse(&self) {
        tracing::warn!(home = %self.pipe.home, "home node did not answer a resume");
        self.socket.extensions.remove::<RemotePipe>();
        let failed = ReconnectFailed {
            previous_client_id: self.previous_client_id.clone(),
            reason: "unknown",
        };
        let _ = self.socket.emit(event::RECONNECT_FAILED, &failed);
    }

    /// The home died: every stream still live gets what its log holds
    /// beyond what was delivered, then ends with `node_lost`.
    async fn lost(&self) {
        tracing::warn!(home = %self.pipe.home, streams = self.live.len(), "home node lost");
        let Some(cluster) = &self.app.cluster else {
            return;
        };
        let logs = &cluster.logs;
        let log = match logs.credentials(&self.pipe.client).await {
            Ok(Some(c)) => Some(c.log),
            _ => None,
        };
        for (id, last) in &self.live {
            let r = match &log {
                Some(log) => read_one(logs, log, id.as_str().into(), Some(*last)).await,
                None => Replay::empty(id.as_str().into()),
            };
            if !deliver(
                &self.app,
                &self.socket,
                &self.pipe.client,
                &self.pipe.home,
                &r,
            )
            .await
            {
                return;
            }
        }
    }
}

/// Emit one event, waiting while socketioxide's channel is full (for the
/// transport's liveness window at most, as the socket writer does: then
/// the socket is closed); false when the socket is closed.
pub(super) async fn emit_waiting(
    app: &App,
    socket: &SocketRef,
    client: &str,
    name: &str,
    payload: &RawValue,
) -> bool {
    let c = &app.config.server;
    let liveness = Duration::from_millis(c.ping_interval_ms + c.ping_timeout_ms);
    let since = Instant::now();
    loop {
        match socket.emit(name, payload) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if since.elapsed() < liveness =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                tracing::info!(client, "transport stuck; closing the socket");
                let _ = socket.clone().disconnect();
                return false;
            }
            Err(_) => return false,
        }
    }
}
