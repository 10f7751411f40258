//! What a client's outbox holds: the events of its streams, typed until a
//! door's writer renders them, and the door's own control events, already
//! rendered.
//!
//! A [`StreamEvent`] belongs to one stream and has a place in its order
//! (start, deltas by position, terminal); the queue, the credits and the
//! replay log read only that place, its size and how many upstream pieces
//! it carries. A [`Control`] is opaque here: a door built it (an error, a
//! heartbeat answer, a greeting) and only that door's writer reads it.
//! [`Outbound::Notice`] is the outbox's own word to the client about
//! backpressure. Nothing here knows how any of it goes on the wire.

use crate::protocol::{
    Backpressure, Done, StreamCancelled, StreamComplete, StreamError, StreamStart, Token,
    TokenMetadata,
};
use serde_json::value::RawValue;
use std::sync::Arc;

/// One event of one stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Start(StreamStart),
    Token(Token),
    /// Routing facts of a completed stream; the `Done` follows at once.
    Complete(StreamComplete),
    Done(Done),
    Cancelled(StreamCancelled),
    Failed(StreamError),
}

/// How a stream ended, as `ai:reconnect:success` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

impl StreamEvent {
    pub fn stream_id(&self) -> &Arc<str> {
        match self {
            Self::Start(p) => &p.stream_id,
            Self::Token(p) => &p.stream_id,
            Self::Complete(p) => &p.stream_id,
            Self::Done(p) => &p.stream_id,
            Self::Cancelled(p) => &p.stream_id,
            Self::Failed(p) => &p.stream_id,
        }
    }

    /// The stream's position after this event, for a delta.
    pub fn position(&self) -> Option<u64> {
        match self {
            Self::Token(t) => Some(t.token_count),
            _ => None,
        }
    }

    /// Upstream pieces carried (a coalesced token carries several): what
    /// credits count.
    pub fn pieces(&self) -> u64 {
        match self {
            Self::Token(t) => t.metadata.as_ref().map_or(1, |m| m.coalesced),
            _ => 0,
        }
    }

    pub fn is_delta(&self) -> bool {
        matches!(self, Self::Token(_))
    }

    /// The one merge rule: may this queued event absorb `next`, queued
    /// right behind it, into one event (the protocol's coalesced form,
    /// lossless)? Consecutive text deltas of one stream may. Both the
    /// coalesce policy (at push) and a writer's take ask this.
    pub fn may_absorb(&self, next: &StreamEvent) -> bool {
        matches!((self, next), (Self::Token(a), Self::Token(b)) if a.stream_id == b.stream_id)
    }

    /// Absorb `next` if [`may_absorb`](Self::may_absorb) allows it: its
    /// text appended, its position taken, the pieces summed; otherwise
    /// `next` is handed back.
    pub fn absorb(&mut self, next: StreamEvent) -> Result<(), StreamEvent> {
        if !self.may_absorb(&next) {
            return Err(next);
        }
        let pieces = self.pieces() + next.pieces();
        match (self, next) {
            (Self::Token(last), Self::Token(t)) => {
                last.data.push_str(&t.data);
                last.token_count = t.token_count;
                last.metadata = Some(TokenMetadata { coalesced: pieces });
                Ok(())
            }
            (_, next) => Err(next),
        }
    }

    /// Bytes of text a delta carries (0 for other events).
    pub fn text_len(&self) -> usize {
        match self {
            Self::Token(t) => t.data.len(),
            _ => 0,
        }
    }

    /// The stream's last event: nothing of it follows.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Done(_) => Some(Outcome::Completed),
            Self::Cancelled(_) => Some(Outcome::Cancelled),
            Self::Failed(_) => Some(Outcome::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.outcome().is_some()
    }

    /// Rough bytes held, for the byte caps (text plus framing).
    pub fn weight(&self) -> usize {
        match self {
            Self::Token(t) => t.data.len() + 96,
            Self::Done(d) => d.full_response.as_ref().map_or(0, String::len) + 192,
            _ => 192,
        }
    }
}

/// An event a door rendered itself (its name and its JSON payload), for
/// that door's writer to send as it is.
#[derive(Debug, Clone)]
pub struct Control {
    pub event: &'static str,
    pub payload: Box<RawValue>,
}

impl Control {
    /// Render `payload` now; `None` only if it cannot be serialized (a
    /// bug, logged).
    pub fn new(event: &'static str, payload: &impl serde::Serialize) -> Option<Self> {
        match serde_json::value::to_raw_value(payload) {
            Ok(payload) => Some(Self { event, payload }),
            Err(e) => {
                tracing::error!(event, error = %e, "control event did not serialize");
                None
            }
        }
    }

    pub fn weight(&self) -> usize {
        self.payload.get().len() + 32
    }
}

/// Anything a writer may be handed.
#[derive(Debug, Clone)]
pub enum Outbound {
    Stream(StreamEvent),
    Control(Control),
    /// Backpressure engaged or relieved, made when it is taken.
    Notice(Backpressure),
}

impl Outbound {
    pub fn weight(&self) -> usize {
        match self {
            Self::Stream(e) => e.weight(),
            Self::Control(c) => c.weight(),
            Self::Notice(_) => 192,
        }
    }
}
