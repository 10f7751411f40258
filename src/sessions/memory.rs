//! [`MemoryStore`]: sessions in this process's memory, the default store.
//!
//! Everything sits behind one mutex (a session is touched a few times per
//! turn, never per token, and no lock is held across an await). Memory is
//! bounded however many users and turns there are: per session by
//! `max_messages` and `max_bytes` (the oldest turns dropped first), per
//! user by `max_per_user` and for the process by `max_total` and
//! `max_total_bytes` (the least recently used session evicted first), and
//! in time by `ttl_ms` of idleness (a lookup expires the session it
//! touches; [`SessionStore::sweep`], run periodically by the app, frees
//! the rest). A session with a live stream is never evicted or expired:
//! while all of a user's sessions are busy, a new one goes over the cap by
//! at most the user's live streams, and the next turn to end trims it back.
//! "Use" is a turn beginning or ending; reading over HTTP does not keep a
//! session alive. Knows no door, no stream and no upstream.

use super::store::{Begun, LeaseKey, SessionFigures, SessionStore};
use super::turn::Turn;
use crate::auth::UserId;
use crate::config::SessionsConfig;
use crate::error::{GatewayError, Owned};
use crate::protocol::{SessionDetail, SessionMessage, SessionSummary, now_ms};
use futures_util::future::{BoxFuture, FutureExt, ready};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The owner as a map key: the JWT `sub`, or `None` (auth off).
type OwnerKey = Option<Arc<str>>;

pub struct MemoryStore {
    limits: SessionsConfig,
    ttl: Duration,
    inner: Mutex<Inner>,
    evictions: AtomicU64,
    expired: AtomicU64,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Arc<str>, Session>,
    /// Every session by its last use, oldest first: the process-wide LRU
    /// order, and the sweep's (a later use has a later tick).
    by_use: BTreeMap<u64, Arc<str>>,
    /// Each owner's sessions by last use.
    by_owner: HashMap<OwnerKey, BTreeMap<u64, Arc<str>>>,
    tick: u64,
    /// Message text held by every session together.
    bytes: usize,
    leases: u64,
}

struct Session {
    owner: OwnerKey,
    created_at: u64,
    updated_at: u64,
    used: Instant,
    tick: u64,
    /// Turns ever appended (older ones may have been dropped).
    turns: u64,
    log: VecDeque<KeptTurn>,
    messages: usize,
    bytes: usize,
    /// The live stream's lease, if there is one.
    lease: Option<u64>,
}

/// The messages of one turn, dropped together.
struct KeptTurn {
    messages: Vec<SessionMessage>,
    bytes: usize,
}

/// Which LRU order an eviction reads.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Owner(&'a OwnerKey),
    All,
}

fn owner_key(owner: Option<&UserId>) -> OwnerKey {
    owner.map(|u| u.0.clone())
}

impl MemoryStore {
    pub fn new(limits: &SessionsConfig) -> Self {
        Self {
            limits: limits.clone(),
            ttl: Duration::from_millis(limits.ttl_ms),
            inner: Mutex::new(Inner::default()),
            evictions: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// How often the app should run the sweep: a quarter of the TTL, within
    /// 250 ms..=60 s, so an idle session is freed at most a quarter TTL
    /// late and a long TTL costs one pass a minute.
    pub fn sweep_every(limits: &SessionsConfig) -> Duration {
        Duration::from_millis((limits.ttl_ms / 4).clamp(250, 60_000))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`SessionStore::begin`] at `now`.
    pub fn begin_at(
        &self,
        owner: Option<&UserId>,
        id: &str,
        now: Instant,
    ) -> Result<Begun, GatewayError> {
        let owner = owner_key(owner);
        let mut inner = self.lock();
        self.expire_if_idle(&mut inner, id, now);
        match inner.sessions.get(id) {
            Some(s) if s.owner != owner => {
                return Err(GatewayError::Forbidden {
                    kind: Owned::Session,
                    id: id.into(),
                });
            }
            Some(s) if s.lease.is_some() => return Err(GatewayError::SessionBusy(id.into())),
            Some(_) => {}
            None => self.create(&mut inner, owner, id, now),
        }
        inner.leases += 1;
        let lease = inner.leases;
        let id = inner.touch(id, now);
        let Some(s) = inner.sessions.get_mut(&id) else {
            // Found or made above, under this same lock.
            return Err(GatewayError::Internal(format!("session {id} vanished")));
        };
        s.lease = Some(lease);
        let history = s
            .log
            .iter()
            .flat_map(|t| t.messages.iter().map(SessionMessage::to_chat))
            .collect();
        let turn = s.turns + 1;
        Ok(Begun {
            key: LeaseKey { id, lease },
            history,
            turn,
        })
    }

    /// A new, empty session, after making room for it.
    fn create(&self, inner: &mut Inner, owner: OwnerKey, id: &str, now: Instant) {
        let per_user = inner.by_owner.get(&owner).map_or(0, BTreeMap::len);
        for _ in self.limits.max_per_user..=per_user {
            if !self.evict_lru(inner, Scope::Owner(&owner), id) {
                break;
            }
        }
        for _ in self.limits.max_total..=inner.sessions.len() {
            if !self.evict_lru(inner, Scope::All, id) {
                break;
            }
        }
        let at = now_ms();
        inner.sessions.insert(
            id.into(),
            Session {
                owner,
                created_at: at,
                updated_at: at,
                used: now,
                tick: 0,
                turns: 0,
                log: VecDeque::new(),
                messages: 0,
                bytes: 0,
                lease: None,
            },
        );
    }

    /// [`SessionStore::end`] and [`SessionStore::abandon`] at `now`.
    pub fn end_at(&self, key: &LeaseKey, turn: Option<Turn>, now: Instant) {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(&key.id) else {
            return;
        };
        if s.lease != Some(key.lease) {
            return;
        }
        s.lease = None;
        let Some(turn) = turn else {
            if s.turns == 0 {
                inner.remove(&key.id);
            }
            return;
        };
        let (added, dropped) = self.append(s, turn);
        inner.bytes = inner.bytes + added - dropped;
        inner.touch(&key.id, now);
        while inner.bytes > self.limits.max_total_bytes {
            if !self.evict_lru(&mut inner, Scope::All, &key.id) {
                break;
            }
        }
    }

    /// Append `turn` to `s` and drop its oldest turns past the bounds;
    /// returns the bytes added and dropped.
    fn append(&self, s: &mut Session, turn: Turn) -> (usize, usize) {
        let messages = turn.into_messages();
        let bytes = messages.iter().map(SessionMessage::bytes).sum();
        s.messages += messages.len();
        s.bytes += bytes;
        s.turns += 1;
        s.updated_at = now_ms();
        s.log.push_back(KeptTurn { messages, bytes });
        let mut dropped = 0;
        while s.messages > self.limits.max_messages || s.bytes > self.limits.max_bytes {
            let Some(old) = s.log.pop_front() else { break };
            if s.log.is_empty() {
                tracing::warn!(
                    bytes = old.bytes,
                    max_bytes = self.limits.max_bytes,
                    "a turn larger than sessions.max_bytes is not kept"
                );
            }
            s.messages -= old.messages.len();
            s.bytes -= old.bytes;
            dropped += old.bytes;
        }
        (bytes, dropped)
    }

    /// Evict the least recently used session of `scope` that has no live
    /// stream and is not `keep`; false when there is none.
    fn evict_lru(&self, inner: &mut Inner, scope: Scope, keep: &str) -> bool {
        let order = match scope {
            Scope::All => Some(&inner.by_use),
            Scope::Owner(owner) => inner.by_owner.get(owner),
        };
        let victim = order.and_then(|o| {
            o.values()
                .find(|id| {
                    id.as_ref() != keep
                        && inner.sessions.get(*id).is_some_and(|s| s.lease.is_none())
                })
                .cloned()
        });
        let Some(victim) = victim else { return false };
        inner.remove(&victim);
        self.evictions.fetch_add(1, Relaxed);
        tracing::debug!(session = %victim, "session evicted (least recently used)");
        true
    }

    fn idle(&self, s: &Session, now: Instant) -> bool {
        s.lease.is_none() && now.saturating_duration_since(s.used) >= self.ttl
    }

    fn expire_if_idle(&self, inner: &mut Inner, id: &str, now: Instant) {
        if inner.sessions.get(id).is_some_and(|s| self.idle(s, now)) {
            inner.remove(id);
            self.expired.fetch_add(1, Relaxed);
        }
    }

    /// [`SessionStore::get`] at `now`.
    pub fn get_at(
        &self,
        owner: Option<&UserId>,
        id: &str,
        now: Instant,
    ) -> Result<SessionDetail, GatewayError> {
        let owner = owner_key(owner);
        let mut inner = self.lock();
        self.expire_if_idle(&mut inner, id, now);
        let unknown = || GatewayError::UnknownSession(id.into());
        let (id, s) = inner
            .sessions
            .get_key_value(id)
            .filter(|(_, s)| s.owner == owner)
            .ok_or_else(unknown)?;
        Ok(SessionDetail {
            id: id.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            turns: s.turns,
            messages: s.log.iter().flat_map(|t| t.messages.clone()).collect(),
        })
    }

    /// [`SessionStore::list`] at `now`.
    pub fn list_at(&self, owner: Option<&UserId>, now: Instant) -> Vec<SessionSummary> {
        let owner = owner_key(owner);
        let mut inner = self.lock();
        let ids: Vec<Arc<str>> = inner
            .by_owner
            .get(&owner)
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            self.expire_if_idle(&mut inner, &id, now);
            if let Some(s) = inner.sessions.get(&id) {
                out.push(SessionSummary {
                    id,
                    created_at: s.created_at,
                    updated_at: s.updated_at,
                    turns: s.turns,
                    messages: s.messages,
                });
            }
        }
        // Oldest use first so far; the most recent first, by update time.
        out.reverse();
        out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        out
    }

    /// [`SessionStore::delete`] at `now`.
    pub fn delete_at(
        &self,
        owner: Option<&UserId>,
        id: &str,
        now: Instant,
    ) -> Result<(), GatewayError> {
        let owner = owner_key(owner);
        let mut inner = self.lock();
        self.expire_if_idle(&mut inner, id, now);
        match inner.sessions.get(id) {
            Some(s) if s.owner != owner => Err(GatewayError::UnknownSession(id.into())),
            Some(s) if s.lease.is_some() => Err(GatewayError::SessionBusy(id.into())),
            Some(_) => {
                inner.remove(id);
                Ok(())
            }
            None => Err(GatewayError::UnknownSession(id.into())),
        }
    }

    /// [`SessionStore::sweep`] at `now`: walk the sessions from the least
    /// recently used and stop at the first one still fresh.
    pub fn sweep_at(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let mut idle = Vec::new();
        for id in inner.by_use.values() {
            match inner.sessions.get(id) {
                Some(s) if s.lease.is_some() => continue,
                Some(s) if self.idle(s, now) => idle.push(id.clone()),
                _ => break,
            }
        }
        for id in &idle {
            inner.remove(id);
        }
        self.expired.fetch_add(idle.len() as u64, Relaxed);
        idle.len()
    }
}

impl Inner {
    /// Mark session `id` used now (a new tick in both LRU orders);
    /// returns the map's own copy of its id.
    fn touch(&mut self, id: &str, now: Instant) -> Arc<str> {
        self.tick += 1;
        let tick = self.tick;
        let (key, s) = match self.sessions.get_key_value(id) {
            Some((k, s)) => (k.clone(), s),
            None => return id.into(),
        };
        let (old, owner) = (s.tick, s.owner.clone());
        self.by_use.remove(&old);
        self.by_use.insert(tick, key.clone());
        let order = self.by_owner.entry(owner).or_default();
        order.remove(&old);
        order.insert(tick, key.clone());
        if let Some(s) = self.sessions.get_mut(id) {
            s.tick = tick;
            s.used = now;
        }
        key
    }

    fn remove(&mut self, id: &str) {
        let Some(s) = self.sessions.remove(id) else {
            return;
        };
        self.by_use.remove(&s.tick);
        if let Some(order) = self.by_owner.get_mut(&s.owner) {
            order.remove(&s.tick);
            if order.is_empty() {
                self.by_owner.remove(&s.owner);
            }
        }
        self.bytes -= s.bytes;
    }
}

impl SessionStore for MemoryStore {
    fn begin<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Begun, GatewayError>> {
        ready(self.begin_at(owner, id, Instant::now())).boxed()
    }

    fn end(&self, key: LeaseKey, turn: Turn) -> BoxFuture<'_, ()> {
        self.end_at(&key, Some(turn), Instant::now());
        ready(()).boxed()
    }

    fn abandon(&self, key: LeaseKey, turn: Option<Turn>) {
        self.end_at(&key, turn, Instant::now());
    }

    fn list<'a>(&'a self, owner: Option<&'a UserId>) -> BoxFuture<'a, Vec<SessionSummary>> {
        ready(self.list_at(owner, Instant::now())).boxed()
    }

    fn get<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SessionDetail, GatewayError>> {
        ready(self.get_at(owner, id, Instant::now())).boxed()
    }

    fn delete<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        ready(self.delete_at(owner, id, Instant::now())).boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, ()> {
        let n = self.sweep_at(Instant::now());
        if n > 0 {
            tracing::debug!(expired = n, "idle sessions swept");
        }
        ready(()).boxed()
    }

    fn figures(&self) -> SessionFigures {
        let inner = self.lock();
        SessionFigures {
            held: inner.sessions.len() as u64,
            bytes: inner.bytes as u64,
            evictions: self.evictions.load(Relaxed),
            expired: self.expired.load(Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
