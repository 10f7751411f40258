//! Clients and their lives across connections: register, attach, detach,
//! the reconnect window, resume, and the heartbeat watchdog.
//!
//! A door (the `/ai` socket, an HTTP stream) makes a [`Client`] with
//! [`Clients::open`] and runs a writer for it while it holds an
//! [`Attachment`]. When the transport goes ([`Clients::detach`]: closed,
//! heartbeat stale, stuck) the client is detached, not dropped: its streams
//! run on, their events wait in the outbox (held back at its caps) and a
//! timer gives it the reconnect window. [`Clients::resume`] lets a new
//! connection take it over: the previous writer is waited out (its outbox
//! reader is the one read slot), the outbox is rewound so what the client
//! lacks goes first, and the door starts a writer with the rewound reader.
//! If the window runs out first, the streams are cancelled (`disconnect`),
//! closing their upstreams, and everything the client held is freed. This
//! module spawns only timers (window, heartbeat), each ending with what it
//! serves; it knows no door and no upstream.

mod client;
mod registry;

pub use client::{Attachment, Client, DetachReason, StreamControl, random_hex};

/// Where a new client comes from: its verified token (auth on) and its
/// real client address.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub owner: Option<Verified>,
    pub address: Option<std::net::IpAddr>,
}
pub use registry::{ClientRegistry, ResumeRefused};

use crate::auth::Verified;
use crate::error::{Capacity, GatewayError};
use crate::outbox::{ClientOutbox, OutboxReader, OutboxSettings, Resumed};
use crate::protocol::{CancelReason, ReconnectSuccess, ResumedStream};
use crate::rate_limit::ClientBudget;
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The owner of every client's life (cheap to clone: its timers carry a
/// copy).
#[derive(Clone)]
pub struct Clients {
    pub registry: Arc<ClientRegistry>,
    /// Clients held at most (0: no cap).
    max_clients: usize,
    reconnect_window: Duration,
    heartbeat_interval: Duration,
    shutdown: Shutdown,
    stats: Arc<Stats>,
}

/// How a client's transport is judged alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// By its `ai:heartbeat`s (a socket): stale after three intervals.
    Heartbeat,
    /// By its connection alone (an HTTP response): no heartbeat expected.
    Connection,
}

/// A successful resume, for the door to finish: announce it, bind its
/// transport to `client`, and start a writer with `reader`.
pub struct Resumption {
    pub client: Arc<Client>,
    pub attachment: Attachment,
    pub reader: OutboxReader,
    pub streams: Vec<Resumed>,
    /// Stream ids asked for that this client does not have.
    pub unknown: Vec<String>,
}

impl Resumption {
    /// What `ai:reconnect:success` says of it (whichever node sends it).
    pub fn success(&self, previous_client_id: String) -> ReconnectSuccess {
        ReconnectSuccess {
            previous_client_id,
            new_client_id: self.client.id(),
            resume_token: self.client.resume_token(),
            streams: self
                .streams
                .iter()
                .map(|s| ResumedStream {
                    stream_id: s.stream_id.clone(),
                    state: s.state,
                    token_count: s.token_count,
                })
                .collect(),
        }
    }
}

impl Clients {
    pub fn new(
        reconnect_window: Duration,
        heartbeat_interval: Duration,
        max_clients: usize,
        shutdown: Shutdown,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            registry: Arc::new(ClientRegistry::new(stats.clone())),
            max_clients,
            reconnect_window,
            heartbeat_interval,
            shutdown,
            stats,
        }
    }

    /// A new client for a connection that just arrived, not yet registered
    /// (the door registers it with [`Clients::attach_new`] once its
    /// transport is up), or `server_busy` when the process holds
    /// `limits.max_clients` already (detached ones count: they hold their
    /// streams and replay records until their window ends). `id` names
    /// the client (`None`: a fresh random one).
    pub fn open(
        &self,
        id: Option<Arc<str>>,
        origin: Origin,
        budget: ClientBudget,
        limits: OutboxSettings,
    ) -> Result<Arc<Client>, GatewayError> {
        if self.max_clients != 0 && self.registry.len() >= self.max_clients {
            self.stats.refused.capacity.fetch_add(1, Relaxed);
            return Err(GatewayError::ServerBusy {
                limit: Capacity::Clients,
                max: self.max_clients,
            });
        }
        let outbox = Arc::new(ClientOutbox::new(limits, self.stats.clone()));
        let (owner, expires) = match origin.owner {
            Some(v) => (Some(v.user), Some(v.expires_at)),
            None => (None, None),
        };
        let mut client = Client::new(id, owner, budget, &self.shutdown.root, outbox);
        client.owner_expires_at = expires;
        client.address = origin.address;
        let client = Arc::new(client);
        client.touch();
        Ok(client)
    }

    /// Register `client` and attach its first writer.
    pub fn attach_new(&self, client: &Arc<Client>, liveness: Liveness) -> Attachment {
        self.registry.insert(client.clone());
        self.attach(client, liveness)
    }

    /// Attach a writer (ending the current one, if any, with
    /// `TakenOver`), and watch the client's heartbeat while it lasts when
    /// its transport is judged that way.
    fn attach(&self, client: &Arc<Client>, liveness: Liveness) -> Attachment {
        let (attachment, _) = client.attach();
        if liveness == Liveness::Heartbeat {
            self.watch_heartbeat(client.clone(), attachment.clone());
        }
        attachment
    }

    /// The attachment of `epoch` ended (`reason`): detach the client and
    /// start its reconnect window. No-op if that attachment is already
    /// over (a resume or another detach came first).
    pub fn detach(&self, client: &Arc<Client>, epoch: u64, reason: DetachReason) {
        let Some(since) = client.detach(epoch, reason) else {
            return;
        };
        self.registry.detached();
        let window = self.reconnect_window;
        tracing::info!(client = %client.id(), ?reason, window_ms = window.as_millis() as u64, "client detached");
        let (clients, client) = (self.clone(), client.clone());
        self.shutdown.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(window) => {}
                // Shutdown finishes every client itself.
                _ = clients.shutdown.root.cancelled() => return,
            }
            if clients.registry.expire(&client, since) {
                tracing::info!(client = %client.id(), "reconnect window over; cancelling its streams");
                client.cancel_all(CancelReason::Disconnect, DetachReason::Closed);
                client.outbox.clear();
            }
        });
    }

    /// `fresh` (the new connection's own client) asks to become client
    /// `previous_id`. On success the previous client is attached to the
    /// new connection (a second tab still attached to it is ended with
    /// `TakenOver`), `fresh` is finished with `Resumed`, and the outbox is
    /// rewound to what the client says it has.
    pub async fn resume(
        &self,
        fresh: &Arc<Client>,
        previous_id: &str,
        token: &str,
        wanted: Option<Vec<(String, Option<u64>)>>,
    ) -> Result<Resumption, ResumeRefused> {
        // A connection that already runs streams cannot become another client.
        let refused = if fresh.active_streams() > 0 {
            Err(ResumeRefused::Forbidden)
        } else {
            self.registry.resume(previous_id, token, fresh)
        };
        let client = match refused {
            Ok(client) => client,
            Err(why) => {
                self.stats.resumes_failed.fetch_add(1, Relaxed);
                tracing::info!(previous = %previous_id, reason = why.reason(), "resume refused");
                return Err(why);
            }
        };
        fresh.cancel_all(CancelReason::Disconnect, DetachReason::Resumed);
        fresh.outbox.clear();
        tracing::info!(client = %client.id(), previous = %previous_id, "client resumed");
        Ok(self.reattach(client, wanted, Liveness::Heartbeat).await)
    }

    /// Attach a new writer to `client` (a second writer still attached is
    /// ended with `TakenOver`) and rewind its outbox to what the client
    /// says it has (see [`OutboxReader::rewind`]).
    pub async fn reattach(
        &self,
        client: Arc<Client>,
        wanted: Option<Vec<(String, Option<u64>)>>,
        liveness: Liveness,
    ) -> Resumption {
        let was_detached = !client.is_attached();
        let attachment = self.attach(&client, liveness);
        if was_detached && self.registry.get(&client.id()).is_some() {
            self.registry.reattached();
        }
        // Nothing may be sent for this client until the previous writer is gone.
        let mut reader = client.outbox.reader().await;
        let (streams, unknown) = reader.rewind(wanted).await;
        let replayed: u64 = streams.iter().map(|r| r.replayed).sum();
        self.stats.resumes_succeeded.fetch_add(1, Relaxed);
        self.stats.tokens_replayed.fetch_add(replayed, Relaxed);
        client.touch();
        Resumption {
            client,
            attachment,
            reader,
            streams,
            unknown,
        }
    }

    /// Shutdown, the streams over: every writer delivers what it may, then
    /// stops.
    pub fn flush_all(&self) {
        for client in self.registry.all() {
            client.outbox.flush();
        }
    }

    /// Finish every client now (shutdown, after the grace period).
    pub fn close_all(&self) {
        for client in self.registry.all() {
            self.forget(&client, CancelReason::Shutdown);
        }
    }

    /// Finish `client` at once, for a transport that cannot come back
    /// (a client with no way to resume, or shutdown): forget it, cancel
    /// its streams with `reason` (closing their upstreams), end its
    /// attachment and free its queue. No reconnect window.
    pub fn forget(&self, client: &Arc<Client>, reason: CancelReason) {
        self.registry.remove(client);
        client.cancel_all(reason, DetachReason::Closed);
        client.outbox.clear();
    }

    /// Detach a client whose last event is older than 3 heartbeat
    /// intervals. One timer per attachment, re-armed from the last-seen
    /// clock; it ends with the attachment (or at shutdown).
    fn watch_heartbeat(&self, client: Arc<Client>, attachment: Attachment) {
        let stale_after = self.heartbeat_interval * 3;
        let clients = self.clone();
        self.shutdown.spawn(async move {
            loop {
                let due = client.last_seen() + stale_after;
                tokio::select! {
                    _ = attachment.token().cancelled() => return,
                    _ = clients.shutdown.root.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                if client.last_seen() + stale_after <= tokio::time::Instant::now() {
                    tracing::info!(client = %client.id(), "heartbeat stale; detaching");
                    clients.detach(&client, attachment.epoch, DetachReason::Stale);
                    return;
                }
            }
        });
    }
}
