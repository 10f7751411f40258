//! [`SessionStore`]: the contract every session store keeps, whatever
//! holds the data (this process's memory today, a shared Redis later).
//!
//! It is async and object-safe (boxed futures), so that `App` holds an
//! `Arc<dyn SessionStore>` and a remote store can be put in its place
//! without changing a caller. Every method that names a session takes the
//! caller's owner and decides ownership itself, in the same step as the
//! rest of what it does, so no caller can read or write another user's
//! session by checking first and acting after. Only [`SessionStore::abandon`]
//! is synchronous: it runs in `Drop`, where nothing can be awaited.

use super::turn::Turn;
use crate::auth::UserId;
use crate::error::GatewayError;
use crate::protocol::{ChatMessage, SessionDetail, SessionSummary};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Names one open turn: the session and the busy mark it holds. Only the
/// holder of the key can end the turn or release the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKey {
    pub id: Arc<str>,
    pub lease: u64,
}

/// An open turn: the key of its busy mark, the history to send upstream
/// before the new prompt, and the turn's number (1 for the first).
#[derive(Debug)]
pub struct Begun {
    pub key: LeaseKey,
    pub history: Vec<ChatMessage>,
    pub turn: u64,
}

/// What `/stats` and `/metrics` show of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFigures {
    /// Sessions held now.
    pub held: u64,
    /// Bytes of message text held now.
    pub bytes: u64,
    /// Sessions evicted to stay under `max_per_user`, `max_total` or
    /// `max_total_bytes` (least recently used first).
    pub evictions: u64,
    /// Sessions gone after `ttl_ms` of idleness.
    pub expired: u64,
}

/// Where sessions live. `owner` is the caller's JWT `sub` (`None` with
/// auth off: every session is nobody's, and anyone may use any id).
pub trait SessionStore: Send + Sync {
    /// Open a turn on session `id`: create it for `owner` when unknown,
    /// refuse another user's (`forbidden`) or one with a live stream
    /// (`session_busy`), mark it busy and return its history.
    fn begin<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Begun, GatewayError>>;

    /// Append `turn`, drop the oldest turns past the bounds and release
    /// the busy mark of `key`. Awaited before the stream's terminal event
    /// is queued, so the next turn sees this one.
    fn end(&self, key: LeaseKey, turn: Turn) -> BoxFuture<'_, ()>;

    /// The same without waiting (from `Drop`): release `key`, appending
    /// `turn` if given. Must not block; a remote store sends it off and
    /// relies on the mark's own expiry should that fail. A session that
    /// has never had a turn is removed when released without one, so a
    /// refused request leaves nothing behind.
    fn abandon(&self, key: LeaseKey, turn: Option<Turn>);

    /// `owner`'s sessions, most recently updated first.
    fn list<'a>(&'a self, owner: Option<&'a UserId>) -> BoxFuture<'a, Vec<SessionSummary>>;

    /// Session `id` with its messages; another user's is `unknown_session`.
    fn get<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SessionDetail, GatewayError>>;

    /// Remove session `id`: `unknown_session` when unknown or another
    /// user's, `session_busy` while a stream runs on it.
    fn delete<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;

    /// Forget every session idle for longer than the TTL (the periodic
    /// sweep; lookups also expire the session they touch).
    fn sweep(&self) -> BoxFuture<'_, ()>;

    fn figures(&self) -> SessionFigures;
}
