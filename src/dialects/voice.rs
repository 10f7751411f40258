//! How a dialect says each moment of a stream: the [`Voice`] trait that
//! `llm.rs` and `chat.rs` implement, and what a voice may read and do
//! while it speaks ([`Out`]: the socket, the stream so far, and a way to
//! queue an alias event).
//!
//! A voice emits at most one event per call, straight onto the socket (one
//! serialization per token). The writer's renderer (`render.rs`) decides
//! which moment an engine event is and keeps the [`Spoken`] state; a voice
//! only reads it. Nothing here touches the engine beyond the client's
//! outbox, where an alias is queued as a control event.

use super::live::Origin;
use crate::outbox::{ClientOutbox, Control};
use crate::protocol::{Done, StreamCancelled, StreamStart, Token};
use serde::Serialize;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;
use std::sync::Arc;

/// What one dialect says when a stream starts, delivers a piece of text,
/// completes, is cancelled by its client, or fails. Each method emits at
/// most one event (a dialect with nothing to say then returns `Ok`).
pub trait Voice: Sync {
    fn start(&self, _out: &Out, _start: &StreamStart) -> Result<(), SendError> {
        Ok(())
    }
    fn token(&self, out: &Out, token: &Token) -> Result<(), SendError>;
    fn done(&self, out: &Out, done: &Done) -> Result<(), SendError>;
    /// The client asked for it (other cancels are failures to these
    /// designs, said with [`Voice::failed`]).
    fn cancelled(&self, out: &Out, cancelled: &StreamCancelled) -> Result<(), SendError>;
    /// `error` is a sentence for people.
    fn failed(&self, out: &Out, error: &str) -> Result<(), SendError>;
}

/// A stream as its renderer has said it so far.
pub struct Spoken {
    pub id: Arc<str>,
    pub origin: Origin,
    /// Who served, from the stream's start.
    pub provider: Arc<str>,
    /// `timestamp` of the start, ms.
    pub started_ms: u64,
    /// The text the client was sent.
    pub text: String,
}

impl Spoken {
    pub fn new(origin: Origin, start: &StreamStart) -> Self {
        Self {
            id: start.stream_id.clone(),
            origin,
            provider: start.provider.clone(),
            started_ms: start.timestamp,
            text: String::new(),
        }
    }

    /// The whole answer: the text sent, or the engine's full text when the
    /// drop policy left some of it out.
    pub fn full<'a>(&'a self, done: &'a Done) -> &'a str {
        done.full_response.as_deref().unwrap_or(&self.text)
    }
}

/// What a voice speaks through.
pub struct Out<'a> {
    pub socket: &'a SocketRef,
    pub stream: &'a Spoken,
    pub(super) outbox: &'a ClientOutbox,
}

impl Out<'_> {
    pub fn emit(&self, event: &'static str, payload: &impl Serialize) -> Result<(), SendError> {
        self.socket.emit(event, payload)
    }

    /// Queue `payload` as `event` to follow the event just emitted (an
    /// alias some frontends listen to): each outbox item stays one emit,
    /// so a refused one can simply come back.
    pub fn then(&self, event: &'static str, payload: &impl Serialize) {
        if let Some(c) = Control::new(event, payload) {
            self.outbox.push_control(c);
        }
    }
}
