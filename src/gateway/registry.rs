//! Who is connected and what each client is running.
//!
//! A [`Client`] is the durable half of a connection: its live streams (by
//! stream id, each with its own cancellation token, a child of the
//! client's), its [`ClientOutbox`], its heartbeat clock and its resume
//! token, its owner (the JWT `sub`, when auth is on) and its rate-limit
//! budgets. The socket is the other half, and it can change: when it goes
//! away the client is *detached* (its streams run on, its outbox fills up
//! to its caps) for the reconnect window; a new socket that presents the
//! resume token (and belongs to the same owner) takes the client over, and the client goes on under the
//! new socket's client id. [`ClientRegistry`] maps client ids and socket
//! ids to clients. The cancellation tree is server root → client → stream.
//! Stream tasks remove their own entry when they end, so an entry in
//! `streams` always means a live stream.

use super::limits::ClientLimits;
use super::outbox::ClientOutbox;
use crate::auth::UserId;
use crate::error::GatewayError;
use crate::protocol::{BackpressurePolicy, CancelReason};
use crate::telemetry::Stats;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use socketioxide::socket::Sid;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use subtle::ConstantTimeEq;
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

/// Which socket a client is attached to, if any.
struct Attachment {
    /// The client id this client answers to (a resume renames it).
    id: Arc<str>,
    sid: Option<Sid>,
    /// Lives as long as the socket attached now: ends the drain task and
    /// the heartbeat watchdog. Not a child of `cancel`, so that streams
    /// ending (at shutdown, say) can still deliver their terminal events.
    token: CancellationToken,
    /// Bumped on every attach and detach, so a reconnect-window timer
    /// can tell whether the detachment it was started for still holds.
    epoch: u64,
    resume_token: String,
}

pub struct Client {
    pub cancel: CancellationToken,
    pub outbox: Arc<ClientOutbox>,
    pub policy: BackpressurePolicy,
    /// The user that owns this client (`None` when auth is off): only a
    /// connection of the same user may resume it.
    pub user: Option<UserId>,
    /// Event and ack budgets; they follow the client across a resume.
    pub limits: ClientLimits,
    attachment: Mutex<Attachment>,
    streams: DashMap<Arc<str>, Arc<StreamControl>>,
    live: AtomicUsize,
    /// Last event from this client, in ms since `clock`.
    last_seen_ms: AtomicU64,
    clock: Instant,
}

/// Why a resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// No such client, or its window ran out.
    Unknown,
    /// Wrong or spent resume token.
    Forbidden,
}

impl ResumeRefused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Forbidden => "forbidden",
        }
    }
}

impl Client {
    pub fn new(
        sid: Sid,
        policy: BackpressurePolicy,
        parent: &CancellationToken,
        outbox: Arc<ClientOutbox>,
    ) -> Self {
        Self {
            cancel: parent.child_token(),
            outbox,
            policy,
            user: None,
            limits: ClientLimits::unlimited(),
            attachment: Mutex::new(Attachment {
                id: format!("c_{}", random_hex(12)).into(),
                sid: Some(sid),
                token: CancellationToken::new(),
                epoch: 0,
                resume_token: random_hex(16),
            }),
            streams: DashMap::new(),
            live: AtomicUsize::new(0),
            last_seen_ms: AtomicU64::new(0),
            clock: Instant::now(),
        }
    }

    /// Set the owner and the budgets (at connect).
    pub fn owned_by(mut self, user: Option<UserId>, limits: ClientLimits) -> Self {
        self.user = user;
        self.limits = limits;
        self
    }

    /// The key of per-user limits: the owner, or this client when auth is off.
    pub fn rate_key(&self) -> Arc<str> {
        match &self.user {
            Some(UserId(sub)) => sub.clone(),
            None => self.id(),
        }
    }

    /// Is `id` a live stream of this client?
    pub fn has_stream(&self, id: &str) -> bool {
        self.streams.contains_key(id)
    }

    fn attachment(&self) -> std::sync::MutexGuard<'_, Attachment> {
        self.attachment.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn id(&self) -> Arc<str> {
        self.attachment().id.clone()
    }

    pub fn sid(&self) -> Option<Sid> {
        self.attachment().sid
    }

    /// The token of the socket attached now (cancelled once it detaches).
    pub fn attachment_token(&self) -> CancellationToken {
        self.attachment().token.clone()
    }

    pub fn resume_token(&self) -> String {
        self.attachment().resume_token.clone()
    }

    /// Detach from `sid` (if it is still the attached socket): the drain
    /// and watchdog stop, streams go on. Returns the detach epoch, for
    /// the reconnect-window timer.
    fn detach(&self, sid: Sid) -> Option<u64> {
        let mut a = self.attachment();
        if a.sid != Some(sid) {
            return None;
        }
        a.sid = None;
        a.token.cancel();
        a.epoch += 1;
        self.outbox.set_detached(true);
        Some(a.epoch)
    }

    /// Still detached since `epoch`?
    pub fn detached_since(&self, epoch: u64) -> bool {
        let a = self.attachment();
        a.sid.is_none() && a.epoch == epoch
    }

    pub fn touch(&self) {
        self.last_seen_ms
            .store(self.clock.elapsed().as_millis() as u64, Relaxed);
    }

    pub fn last_seen(&self) -> Instant {
        self.clock + std::time::Duration::from_millis(self.last_seen_ms.load(Relaxed))
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
        self.attachment().token.cancel();
    }
}

/// Every client, by client id, and the attached ones by socket id.
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
        if let Some(sid) = client.sid() {
            self.by_socket.insert(sid, client.clone());
        }
        self.clients.insert(client.id(), client);
        self.stats.clients_connected.fetch_add(1, Relaxed);
        self.stats.clients_total.fetch_add(1, Relaxed);
    }

    pub fn by_socket(&self, sid: Sid) -> Option<Arc<Client>> {
        self.by_socket.get(&sid).map(|c| c.clone())
    }

    /// The socket `sid` went away: detach its client, which stays
    /// registered (for a resume) until [`ClientRegistry::expire`].
    /// Returns the client and its detach epoch.
    pub fn detach_socket(&self, sid: Sid) -> Option<(Arc<Client>, u64)> {
        let (_, client) = self.by_socket.remove(&sid)?;
        let epoch = client.detach(sid)?;
        self.stats.clients_connected.fetch_sub(1, Relaxed);
        self.stats.clients_detached.fetch_add(1, Relaxed);
        Some((client, epoch))
    }

    /// The reconnect window of a detachment ran out: forget the client
    /// if it is still detached since `epoch`. Returns it to be cancelled.
    pub fn expire(&self, client: &Arc<Client>, epoch: u64) -> bool {
        if !client.detached_since(epoch) {
            return false;
        }
        let id = client.id();
        if self
            .clients
            .remove_if(&id, |_, c| Arc::ptr_eq(c, client))
            .is_some()
        {
            self.stats.clients_detached.fetch_sub(1, Relaxed);
            return true;
        }
        false
    }

    /// Forget the client of `sid` at once (no reconnect window), e.g. at
    /// shutdown. Returns it to be cancelled.
    pub fn remove_socket(&self, sid: Sid) -> Option<Arc<Client>> {
        let (_, client) = self.by_socket.remove(&sid)?;
        self.clients.remove(&client.id());
        self.stats.clients_connected.fetch_sub(1, Relaxed);
        Some(client)
    }

    /// Forget a detached client at once (shutdown).
    pub fn remove_detached(&self, client: &Arc<Client>) {
        if client.sid().is_none() && self.clients.remove(&client.id()).is_some() {
            self.stats.clients_detached.fetch_sub(1, Relaxed);
        }
    }

    /// Let the client attached to `new_sid` (`fresh`, just connected)
    /// take over client `previous_id`, if `token` is its resume token and
    /// both belong to the same user. Another user's client is refused
    /// exactly like a wrong token (`Forbidden`), its token left as it was.
    /// On success the previous client is attached to `new_sid` under
    /// `fresh`'s id with a new resume token, `fresh` is forgotten, and the
    /// socket the previous client was attached to, if any (a second tab),
    /// is returned to be told and disconnected.
    pub fn resume(
        &self,
        previous_id: &str,
        token: &str,
        fresh: &Arc<Client>,
        new_sid: Sid,
    ) -> Result<(Arc<Client>, Option<Sid>), ResumeRefused> {
        let previous = self
            .clients
            .get(previous_id)
            .map(|c| c.clone())
            .ok_or(ResumeRefused::Unknown)?;
        if Arc::ptr_eq(&previous, fresh) {
            return Err(ResumeRefused::Forbidden);
        }
        let new_id = fresh.id();
        let old_sid = {
            let mut a = previous.attachment();
            let good: bool = a.resume_token.as_bytes().ct_eq(token.as_bytes()).into();
            if !good || previous.user != fresh.user {
                return Err(ResumeRefused::Forbidden);
            }
            let old_sid = a.sid.take();
            a.token.cancel();
            a.token = CancellationToken::new();
            a.sid = Some(new_sid);
            a.epoch += 1;
            a.resume_token = random_hex(16);
            a.id = new_id.clone();
            old_sid
        };
        previous.outbox.set_detached(false);
        self.clients.remove(previous_id);
        self.clients.insert(new_id, previous.clone());
        self.by_socket.insert(new_sid, previous.clone());
        if let Some(old) = old_sid {
            self.by_socket.remove(&old);
        } else {
            // It was detached: now it is connected again, under the new
            // socket, which was already counted as connected by `fresh`.
            self.stats.clients_detached.fetch_sub(1, Relaxed);
        }
        if old_sid.is_some() {
            // The second tab's connection counted as connected; it is
            // about to be disconnected.
            self.stats.clients_connected.fetch_sub(1, Relaxed);
        }
        // The fresh client is dropped: its watchdog and drain end with it.
        fresh.cancel_all(CancelReason::Disconnect);
        Ok((previous, old_sid))
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Every client now (for shutdown and `/stats`).
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
