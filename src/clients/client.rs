//! A [`Client`]: the durable half of a connection.
//!
//! It owns its live streams (by stream id, each with a cancellation token
//! that is a child of the client's), its outbox, its heartbeat clock, its
//! resume token, its owner (the JWT `sub` when auth is on) and its event
//! budgets, with where it came from: its real client address and, when
//! auth is on, when its owner's token expires (checked again whenever a
//! stream starts). The transport is the other half and can change: at any moment
//! a client has at most one [`Attachment`], the door's writer that carries
//! its outbox to the client. A detached client keeps running; a resume
//! attaches it again, under the new connection's client id. Stream tasks
//! remove their own entry when they end, so an entry in `streams` always
//! means a live stream. Nothing here spawns or knows a door.

use crate::auth::UserId;
use crate::error::GatewayError;
use crate::outbox::ClientOutbox;
use crate::protocol::CancelReason;
use crate::rate_limit::{ClientBudget, StreamKey};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The handle the client keeps for a live stream; the stream task holds
/// the same `Arc` and reads the reason once it sees the token cancelled.
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

/// Why an attachment ended: what its writer should do with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachReason {
    /// The transport closed or failed; nothing left to do.
    Gone,
    /// No heartbeat for three intervals: close the transport.
    Stale,
    /// Another connection resumed this client: tell this one, close it.
    TakenOver,
    /// This connection now carries another client (it resumed one).
    Resumed,
    /// The client is finished (shutdown, or its window ran out).
    Closed,
}

/// One writer's tenure on a client: the door holds it while its writer
/// runs, and the token fires when the tenure ends, with a reason.
#[derive(Clone)]
pub struct Attachment {
    pub epoch: u64,
    token: CancellationToken,
    reason: Arc<OnceLock<DetachReason>>,
}

impl Attachment {
    fn new(epoch: u64) -> Self {
        Self {
            epoch,
            token: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Cancelled when this attachment ends.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why it ended (`None` while it lasts).
    pub fn reason(&self) -> Option<DetachReason> {
        self.reason.get().copied()
    }

    fn end(&self, reason: DetachReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }
}

/// Who the client is to the outside, and which writer carries it now.
struct Seat {
    /// The client id it answers to (a resume renames it).
    id: Arc<str>,
    resume_token: String,
    attached: Option<Attachment>,
    /// Bumped on every attach and detach, so that a reconnect-window timer
    /// can tell whether the detachment it was started for still holds.
    epoch: u64,
}

pub struct Client {
    /// Parent of every stream's token; cancelled when the client is done.
    pub cancel: CancellationToken,
    pub outbox: Arc<ClientOutbox>,
    /// The user that owns this client (`None` when auth is off): only a
    /// connection of the same user may resume it.
    pub owner: Option<UserId>,
    /// When the owner's token expires (its `exp`, seconds since 1970).
    pub owner_expires_at: Option<u64>,
    /// The real client address of the connection that opened it.
    pub address: Option<IpAddr>,
    /// Event and ack budgets; they follow the client across a resume.
    pub budget: ClientBudget,
    seat: Mutex<Seat>,
    streams: DashMap<Arc<str>, Arc<StreamControl>>,
    live: AtomicUsize,
    /// Last event from this client, in ms since `clock`.
    last_seen_ms: AtomicU64,
    clock: Instant,
}

impl Client {
    pub fn new(
        id: Option<Arc<str>>,
        owner: Option<UserId>,
        budget: ClientBudget,
        parent: &CancellationToken,
        outbox: Arc<ClientOutbox>,
    ) -> Self {
        Self {
            cancel: parent.child_token(),
            outbox,
            owner,
            owner_expires_at: None,
            address: None,
            budget,
            seat: Mutex::new(Seat {
                id: id.unwrap_or_else(|| format!("c_{}", random_hex(12)).into()),
                resume_token: random_hex(16),
                attached: None,
                epoch: 0,
            }),
            // A client runs a handful of streams: two shards, not the
            // default four per core (a shard table per idle connection).
            streams: DashMap::with_shard_amount(2),
            live: AtomicUsize::new(0),
            last_seen_ms: AtomicU64::new(0),
            clock: Instant::now(),
        }
    }

    fn seat(&self) -> std::sync::MutexGuard<'_, Seat> {
        self.seat.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn id(&self) -> Arc<str> {
        self.seat().id.clone()
    }

    pub fn resume_token(&self) -> String {
        self.seat().resume_token.clone()
    }

    /// Is a writer attached now?
    pub fn is_attached(&self) -> bool {
        self.seat().attached.is_some()
    }

    /// Start a new attachment, ending the current one (if any) with
    /// `TakenOver`. Returns it and whether another one was ended.
    pub(super) fn attach(&self) -> (Attachment, bool) {
        let mut seat = self.seat();
        seat.epoch += 1;
        let taken_over = seat
            .attached
            .take()
            .map(|old| old.end(DetachReason::TakenOver));
        let attachment = Attachment::new(seat.epoch);
        seat.attached = Some(attachment.clone());
        drop(seat);
        self.outbox.set_detached(false);
        (attachment, taken_over.is_some())
    }

    /// End the attachment of `epoch`, if it is still the current one.
    /// Returns the detach epoch, for the reconnect-window timer.
    pub(super) fn detach(&self, epoch: u64, reason: DetachReason) -> Option<u64> {
        let mut seat = self.seat();
        if seat.attached.as_ref().is_none_or(|a| a.epoch != epoch) {
            return None;
        }
        if let Some(a) = seat.attached.take() {
            a.end(reason);
        }
        seat.epoch += 1;
        let detached = seat.epoch;
        drop(seat);
        self.outbox.set_detached(true);
        Some(detached)
    }

    /// Still detached since `epoch`?
    pub(super) fn detached_since(&self, epoch: u64) -> bool {
        let seat = self.seat();
        seat.attached.is_none() && seat.epoch == epoch
    }

    /// Check `token` (in constant time) and, if it is right, take the
    /// identity `new_id` with a fresh resume token. The old id is returned.
    pub(super) fn rename_if_token(&self, token: &str, new_id: Arc<str>) -> Option<Arc<str>> {
        use subtle::ConstantTimeEq;
        let mut seat = self.seat();
        let good: bool = seat.resume_token.as_bytes().ct_eq(token.as_bytes()).into();
        if !good {
            return None;
        }
        seat.resume_token = random_hex(16);
        Some(std::mem::replace(&mut seat.id, new_id))
    }

    /// The key of per-user limits: the owner; with auth off, the client
    /// address (a new connection must not mean a fresh budget), or this
    /// client when no address is known.
    pub fn rate_key(&self) -> StreamKey {
        match (&self.owner, self.address) {
            (Some(UserId(sub)), _) => StreamKey::User(sub.clone()),
            (None, Some(ip)) => StreamKey::Address(ip),
            (None, None) => StreamKey::Client(self.id()),
        }
    }

    /// Has the owner's token expired at `now` (seconds since 1970), with
    /// `leeway` seconds of clock skew allowed?
    pub fn token_expired(&self, now: u64, leeway: u64) -> bool {
        self.owner_expires_at
            .is_some_and(|exp| exp.saturating_add(leeway) < now)
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

    /// Is `id` a live stream of this client?
    pub fn has_stream(&self, id: &str) -> bool {
        self.streams.contains_key(id)
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

    /// Called by the stream's guard as the stream ends.
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

    /// Cancel every stream with `reason`, then the client itself, and end
    /// its attachment with `detach`.
    pub fn cancel_all(&self, reason: CancelReason, detach: DetachReason) {
        let controls: Vec<_> = self.streams.iter().map(|e| e.value().clone()).collect();
        for c in controls {
            c.cancel(reason);
        }
        self.cancel.cancel();
        if let Some(a) = self.seat().attached.take() {
            a.end(detach);
        }
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}
