//! The `/ai` door's home side across nodes: this node runs a client's
//! streams while the client is attached to another node.
//!
//! [`spawn_commands`] reads this node's command stream (one blocking
//! reader, reopened after a Redis loss). A resume command makes a
//! stand-in for the other node's connection (its id and owner), resumes
//! the client onto it exactly as a local `ai:reconnect` does (the token
//! checked, the outbox rewound), and starts a writer whose transport is
//! the attachment stream in Redis: it takes what the outbox reader gives,
//! as many events as are ready (up to 64), renders them as `/ai` events
//! and writes them in one round trip. The reader still holds deltas back
//! while the client's credits are spent; its acks arrive as commands. The
//! attachment ends when the other node says its socket closed, when the
//! other node's liveness key lapses, or when another connection takes the
//! client over; the client is then detached here and its window runs.

use super::render;
use super::reply;
use crate::app::App;
use crate::auth::{UserId, Verified};
use crate::clients::{Client, DetachReason, Origin, Resumption};
use crate::cluster::{Command, Entry, NodeMail};
use crate::error::GatewayError;
use crate::outbox::Outbound;
use crate::protocol::{CancelReason, ReconnectFailed, event};
use dashmap::DashMap;
use futures_util::FutureExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events one write to Redis carries at most.
const BATCH: usize = 64;

/// The remote attachments this node writes, by attachment id: cancelled
/// when the other node says the socket closed.
type Writers = Arc<DashMap<String, CancellationToken>>;

/// Read this node's commands until shutdown; nothing without Redis.
pub fn spawn_commands(app: &Arc<App>) {
    let Some(cluster) = &app.cluster else { return };
    let (app2, mail) = (app.clone(), cluster.mail.clone());
    let writers = Writers::default();
    app.shutdown.spawn(async move {
        let root = app2.shutdown.root.clone();
        let beat = Duration::from_millis(app2.config.redis.heartbeat_interval_ms);
        while !root.is_cancelled() {
            let Ok(mut tail) = mail.commands().await else {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = tokio::time::sleep(beat) => continue,
                }
            };
            loop {
                let read = tokio::select! {
                    _ = root.cancelled() => return,
                    r = tail.next() => r,
                };
                let Ok(commands) = read else { break };
                for fields in commands {
                    if let Some(cmd) = Command::from_fields(&fields) {
                        obey(&app2, &mail, &writers, cmd);
                    }
                }
            }
        }
    });
}

/// Carry out one command.
fn obey(app: &Arc<App>, mail: &Arc<NodeMail>, writers: &Writers, cmd: Command) {
    let client = |id: &str| app.clients.registry.get(id);
    match cmd {
        Command::Resume { .. } => {
            let (app, mail, writers) = (app.clone(), mail.clone(), writers.clone());
            app.shutdown.clone().spawn(async move {
                resume_for(&app, &mail, &writers, cmd).await;
            });
        }
        Command::Ack {
            client: id,
            stream_id,
            token_count,
        } => {
            if let Some(c) = client(&id) {
                c.touch();
                c.outbox.ack(&stream_id, token_count);
            }
        }
        Command::Cancel {
            client: id,
            stream_id,
        } => {
            if let Some(c) = client(&id) {
                c.touch();
                let _ = c.cancel_stream(&stream_id, CancelReason::Client);
            }
        }
        Command::Touch { client: id } => {
            if let Some(c) = client(&id) {
                c.touch();
            }
        }
        Command::Detach { att, .. } => {
            if let Some((_, gone)) = writers.remove(&att) {
                gone.cancel();
            }
        }
    }
}

/// Resume the client a resume command names onto a stand-in for the
/// other node's connection, and write its events to the attachment.
async fn resume_for(app: &Arc<App>, mail: &Arc<NodeMail>, writers: &Writers, cmd: Command) {
    let Command::Resume {
        att,
        from,
        previous_client_id,
        resume_token,
        new_client_id,
        owner,
        owner_expires_at,
        streams,
    } = cmd
    else {
        return;
    };
    let refuse = |reason: &'static str| ReconnectFailed {
        previous_client_id: previous_client_id.clone(),
        reason,
    };
    let stand_in = match stand_in(app, new_client_id, owner, owner_expires_at) {
        Ok(c) => c,
        Err(_) => return say_failed(mail, &att, &refuse("unknown")).await,
    };
    let resumed = app
        .clients
        .resume(&stand_in, &previous_client_id, &resume_token, streams)
        .await;
    let r = match resumed {
        Ok(r) => r,
        Err(why) => {
            app.clients.forget(&stand_in, CancelReason::Disconnect);
            return say_failed(mail, &att, &refuse(why.reason())).await;
        }
    };
    let first = greeting(&previous_client_id, &r);
    let gone = CancellationToken::new();
    writers.insert(att.clone(), gone.clone());
    app.note_home(&r.client, true, Some(&previous_client_id));
    write_remote(app, mail, r, &att, &from, first, gone).await;
    writers.remove(&att);
}

/// A client standing for the other node's connection: its id and owner.
fn stand_in(
    app: &App,
    id: String,
    owner: Option<String>,
    expires_at: Option<u64>,
) -> Result<Arc<Client>, GatewayError> {
    let owner = owner.map(|sub| Verified {
        user: UserId(sub.into()),
        expires_at: expires_at.unwrap_or(u64::MAX),
    });
    let origin = Origin {
        owner,
        address: None,
    };
    let policy = app.config.backpressure.policy;
    let c = app.clients.open(
        Some(id.into()),
        origin,
        app.rate_limits.budget(),
        app.outbox_settings(policy),
    )?;
    app.clients
        .attach_new(&c, crate::clients::Liveness::Connection);
    Ok(c)
}

async fn say_failed(mail: &NodeMail, att: &str, failed: &ReconnectFailed) {
    let body = serde_json::to_string(failed).unwrap_or_default();
    let entries = [(event::RECONNECT_FAILED.to_string(), body), ended()];
    let _ = mail.write(att, &entries).await;
}

/// The attachment's last entry.
fn ended() -> Entry {
    (String::new(), "null".to_string())
}

/// `ai:reconnect:success`, then `ai:error` for each stream asked for that
/// the client does not have.
fn greeting(previous_client_id: &str, r: &Resumption) -> Vec<Entry> {
    let success = r.success(previous_client_id.to_string());
    let mut out = vec![(
        event::RECONNECT_SUCCESS.to_string(),
        serde_json::to_string(&success).unwrap_or_default(),
    )];
    for id in &r.unknown {
        let e = GatewayError::UnknownStream(id.clone());
        if let Some(c) = reply::error_event(&e, Some(id)) {
            out.push((c.event.to_string(), c.payload.get().to_string()));
        }
    }
    out
}

/// Write the client's events to attachment `att` until it ends, then
/// detach the client here.
async fn write_remote(
    app: &Arc<App>,
    mail: &Arc<NodeMail>,
    r: Resumption,
    att: &str,
    from: &str,
    first: Vec<Entry>,
    gone: CancellationToken,
) {
    let Resumption {
        client,
        attachment,
        mut reader,
        ..
    } = r;
    watch_attached_node(app, mail, from, gone.clone(), attachment.token().clone());
    let stop = attachment.token().clone();
    let _ = mail.write(att, &first).await;
    let beat = Duration::from_millis(app.config.redis.heartbeat_interval_ms);
    loop {
        let item = tokio::select! {
            _ = gone.cancelled() => break,
            item = reader.next(&stop) => item,
        };
        let Some(item) = item else { break };
        let mut batch = vec![item];
        while batch.len() < BATCH {
            match reader.next(&stop).now_or_never() {
                Some(Some(item)) => batch.push(item),
                _ => break,
            }
        }
        let entries: Vec<Entry> = batch.iter().filter_map(rendered).collect();
        if mail.write(att, &entries).await.is_ok() {
            app.stats.remote_batches.fetch_add(1, Relaxed);
            app.stats
                .remote_events
                .fetch_add(entries.len() as u64, Relaxed);
            for item in batch {
                reader.sent(item);
            }
        } else {
            for item in batch.into_iter().rev() {
                reader.put_back(item);
            }
            tokio::time::sleep(beat / 4).await;
        }
    }
    drop(reader);
    let _ = mail.write(att, &[ended()]).await;
    app.clients
        .detach(&client, attachment.epoch, DetachReason::Gone);
    // Taken over by another connection: that one keeps the home record.
    if !client.is_attached() {
        app.note_home(&client, false, None);
    }
}

/// End the attachment (`gone`) when the node the client is attached to
/// stops beating; stop watching when the attachment ends anyway.
fn watch_attached_node(
    app: &App,
    mail: &Arc<NodeMail>,
    node: &str,
    gone: CancellationToken,
    ended: CancellationToken,
) {
    let (mail, node) = (mail.clone(), node.to_string());
    let beat = Duration::from_millis(app.config.redis.heartbeat_interval_ms);
    app.shutdown.spawn(async move {
        loop {
            tokio::select! {
                _ = gone.cancelled() => return,
                _ = ended.cancelled() => return,
                _ = tokio::time::sleep(beat) => {}
            }
            if let Ok(false) = mail.is_alive(&node).await {
                tracing::info!(node = %node, "the node a client was attached to is gone");
                gone.cancel();
                return;
            }
        }
    });
}

/// `item` as an attachment entry.
fn rendered(item: &Outbound) -> Option<Entry> {
    match render::payload_json(item) {
        Ok(payload) => Some((render::name(item).to_string(), payload)),
        Err(e) => {
            tracing::error!(error = ?e, event = render::name(item), "event did not serialize");
            None
        }
    }
}
