//! [`SessionLease`]: a session's one live stream, held from admission to
//! the stream's end.
//!
//! `Relay::start` opens it ([`SessionLease::begin`]) before routing, so
//! the history can become the route's upstream messages; the stream's
//! guard keeps it, and the stream's finish ends it with the turn
//! ([`SessionLease::end`]). Dropping it unended (a refused admission, a
//! task that died) releases the busy mark through the store's synchronous
//! `abandon`, so no path can leave a session busy for ever. It keeps the
//! turn's input (the prompt, the tool results), for the turn it will
//! append; it never touches a stream's events.

use super::store::{LeaseKey, SessionStore};
use super::turn::{Turn, TurnReply};
use crate::auth::UserId;
use crate::error::GatewayError;
use crate::protocol::{ChatMessage, TurnStatus, now_ms};
use std::sync::Arc;

pub struct SessionLease {
    store: Arc<dyn SessionStore>,
    id: Arc<str>,
    /// Taken when the turn is ended or abandoned: `Drop` then does nothing.
    key: Option<LeaseKey>,
    turn: u64,
    input: Vec<ChatMessage>,
    asked_at: u64,
}

impl SessionLease {
    /// Open a turn of `input` (tool results, then the prompt) on session
    /// `id` for `owner`; returns the lease and the history to send before
    /// the input.
    pub async fn begin(
        store: &Arc<dyn SessionStore>,
        owner: Option<&UserId>,
        id: &str,
        input: Vec<ChatMessage>,
    ) -> Result<(Self, Vec<ChatMessage>), GatewayError> {
        let begun = store.begin(owner, id).await?;
        let lease = Self {
            store: store.clone(),
            id: begun.key.id.clone(),
            key: Some(begun.key),
            turn: begun.turn,
            input,
            asked_at: now_ms(),
        };
        Ok((lease, begun.history))
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The number of the turn this stream is (1 for the first).
    pub fn turn(&self) -> u64 {
        self.turn
    }

    /// Append the turn (`reply` as the client received it) and release the
    /// session.
    pub async fn end(mut self, reply: Option<TurnReply>, status: TurnStatus) {
        if let Some(key) = self.key.take() {
            let turn = self.turn_with(reply, status);
            self.store.end(key, turn).await;
        }
    }

    /// Append the prompt as an errored turn and release the session, now
    /// (the stream's task ended without its finish: a panic).
    pub fn fail_now(mut self) {
        if let Some(key) = self.key.take() {
            let turn = self.turn_with(None, TurnStatus::Error);
            self.store.abandon(key, Some(turn));
        }
    }

    fn turn_with(&mut self, reply: Option<TurnReply>, status: TurnStatus) -> Turn {
        Turn {
            input: std::mem::take(&mut self.input),
            asked_at: self.asked_at,
            reply,
            status,
            ended_at: now_ms(),
        }
    }
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.abandon(key, None);
        }
    }
}
