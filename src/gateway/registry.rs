//! Who is connected and what each client is running.
//!
//! [`ClientRegistry`] maps client ids and socket ids to [`Client`]s. A
//! client owns its live streams (by stream id, each with its own
//! cancellation token, a child of the client's), its [`ClientOutbox`], and
//! its heartbeat clock. The cancellation tree is server root → client →
//! stream: cancelling a client cancels its streams, and shutdown cancels
//! everything. Stream tasks remove their own entry when they end, so an
//! entry in `streams` always means a live stream.

use super::outbox::ClientOutbox;
use crate::error::GatewayError;
use crate::protocol::{BackpressurePolicy, CancelReason};
use crate::telemetry::Stats;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use socketioxide::socket::Sid;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The handle the registry keeps for a live stream; the task holds the
/// same `Arc` and reads the reason once it sees the token cancelled.
pub struct StreamControl {
    pub cancel: CancellationToken,
    reason: OnceLock<CancelReason>,
}

impl StreamControl {
    /// Cancel with a reason; the first reason given wins.
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.cancel.cancel();
    }

    pub fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }
}

pub struct Client {
    pub id: Arc<str>,
    pub sid: Sid,
    pub cancel: CancellationToken,
    /// Lives as long as the socket now attached: ends the drain task and
    /// the heartbeat watchdog. Not a child of `cancel`, so that streams
    /// ending (at shutdown, say) can still deliver their terminal events.
    pub attachment: CancellationToken,
    pub outbox: Arc<ClientOutbox>,
    pub policy: BackpressurePolicy,
    streams: DashMap<Arc<str>, Arc<StreamControl>>,
    live: AtomicUsize,
    /// Last event from this client, in ms since `epoch`.
    last_seen_ms: AtomicU64,
    epoch: Instant,
}

impl Client {
    pub fn new(
        sid: Sid,
        policy: BackpressurePolicy,
        parent: &CancellationToken,
        outbox: Arc<ClientOutbox>,
    ) -> Self {
        let id: Arc<str> = format!("c_{}", random_hex(12)).into();
        Self {
            id,
            sid,
            cancel: parent.child_token(),
            attachment: CancellationToken::new(),
            outbox,
            policy,
            streams: DashMap::new(),
            live: AtomicUsize::new(0),
            last_seen_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn touch(&self) {
        self.last_seen_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    pub fn last_seen(&self) -> Instant {
        self.epoch + std::time::Duration::from_millis(self.last_seen_ms.load(Relaxed))
    }

    pub fn active_streams(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Reserve `id` for a new stream, or say why not.
    pub fn add_stream(&self, id: Arc<str>, max: usize) -> Result<Arc<StreamControl>, GatewayError> {
        if self.live.fetch_add(1, Relaxed) >= max {
            self.live.fetch_sub(1, Relaxed);
            return Err(GatewayError::TooManyStreams { limit: max });
        }
        match self.streams.entry(id) {
            Entry::Occupied(e) => {
                self.live.fetch_sub(1, Relaxed);
                Err(GatewayError::DuplicateStreamId(e.key().to_string()))
            }
            Entry::Vacant(v) => {
                let control = Arc::new(StreamControl {
                    cancel: self.cancel.child_token(),
                    reason: OnceLock::new(),
                });
                v.insert(control.clone());
                Ok(control)
            }
        }
    }

    /// Called by the stream task as it ends.
    pub fn remove_stream(&self, id: &str) {
        if self.streams.remove(id).is_some() {
            self.live.fetch_sub(1, Relaxed);
        }
    }

    pub fn cancel_stream(&self, id: &str, reason: CancelReason) -> Result<(), GatewayError> {
        let control = self
            .streams
            .get(id)
            .map(|c| c.clone())
            .ok_or_else(|| GatewayError::UnknownStream(id.to_string()))?;
        control.cancel(reason);
        Ok(())
    }

    /// Cancel every stream with `reason`, then the client itself, and
    /// detach its socket.
    pub fn cancel_all(&self, reason: CancelReason) {
        let controls: Vec<_> = self.streams.iter().map(|e| e.value().clone()).collect();
        for c in controls {
            c.cancel(reason);
        }
        self.cancel.cancel();
        self.attachment.cancel();
    }
}

/// Every connected client, by client id and by socket id.
pub struct ClientRegistry {
    clients: DashMap<Arc<str>, Arc<Client>>,
    by_socket: DashMap<Sid, Arc<Client>>,
    stats: Arc<Stats>,
}

impl ClientRegistry {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            clients: DashMap::new(),
            by_socket: DashMap::new(),
            stats,
        }
    }

    pub fn insert(&self, client: Arc<Client>) {
        self.by_socket.insert(client.sid, client.clone());
        self.clients.insert(client.id.clone(), client);
        self.stats.clients_connected.fetch_add(1, Relaxed);
        self.stats.clients_total.fetch_add(1, Relaxed);
    }

    pub fn by_socket(&self, sid: Sid) -> Option<Arc<Client>> {
        self.by_socket.get(&sid).map(|c| c.clone())
    }

    /// Forget the client of `sid`, returning it to be cancelled.
    pub fn remove_socket(&self, sid: Sid) -> Option<Arc<Client>> {
        let (_, client) = self.by_socket.remove(&sid)?;
        self.clients.remove(&client.id);
        self.stats.clients_connected.fetch_sub(1, Relaxed);
        Some(client)
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Every client now (for shutdown).
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.clients.iter().map(|e| e.value().clone()).collect()
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}
