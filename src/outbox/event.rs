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
    Backpressure, Done, ReasoningDelta, StreamCancelled, StreamComplete, StreamError, StreamStart,
    Token, TokenMetadata, ToolCallDelta,
};
use serde_json::value::RawValue;
use std::sync::Arc;

/// One event of one stream. Queues hold many of these, so the enum stays
/// the size of a token: the events a stream has once (start, done,
/// cancelled) and the larger tool-call pieces are boxed.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Start(Box<StreamStart>),
    /// A piece of the answer's text.
    Token(Token),
    /// A piece of the model's thinking.
    Reasoning(ReasoningDelta),
    /// A piece of a tool call's arguments.
    ToolCall(Box<ToolCallDelta>),
    /// Routing facts of a completed stream; the `Done` follows at once.
    Complete(StreamComplete),
    Done(Box<Done>),
    Cancelled(Box<StreamCancelled>),
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
            Self::Reasoning(p) => &p.stream_id,
            Self::ToolCall(p) => &p.stream_id,
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
            Self::Reasoning(r) => Some(r.token_count),
            Self::ToolCall(c) => Some(c.token_count),
            _ => None,
        }
    }

    /// Upstream pieces carried (a coalesced delta carries several): what
    /// credits count.
    pub fn pieces(&self) -> u64 {
        let merged = |m: &Option<TokenMetadata>| m.as_ref().map_or(1, |m| m.coalesced);
        match self {
            Self::Token(t) => merged(&t.metadata),
            Self::Reasoning(r) => merged(&r.metadata),
            Self::ToolCall(c) => merged(&c.metadata),
            _ => 0,
        }
    }

    pub fn is_delta(&self) -> bool {
        matches!(
            self,
            Self::Token(_) | Self::Reasoning(_) | Self::ToolCall(_)
        )
    }

    /// A delta's text (the token, the thinking, the argument piece).
    pub fn delta_text(&self) -> Option<&str> {
        match self {
            Self::Token(t) => Some(&t.data),
            Self::Reasoning(r) => Some(&r.data),
            Self::ToolCall(c) => Some(&c.arguments_delta),
            _ => None,
        }
    }

    /// The one merge rule: may this queued delta absorb `next`, queued
    /// right behind it in the same stream, into one event (the protocol's
    /// coalesced form, lossless)? The same kind of piece may: text with
    /// text, thinking with thinking, arguments of the same tool call. Both
    /// the coalesce policy (at push) and a writer's take ask this.
    pub fn may_absorb(&self, next: &StreamEvent) -> bool {
        self.stream_id() == next.stream_id()
            && match (self, next) {
                (Self::Token(_), Self::Token(_)) | (Self::Reasoning(_), Self::Reasoning(_)) => true,
                (Self::ToolCall(a), Self::ToolCall(b)) => a.index == b.index,
                _ => false,
            }
    }

    /// Merge `next` into this delta if [`may_absorb`](Self::may_absorb)
    /// allows it: its text appended, its position taken, the pieces
    /// summed. Otherwise `next` is handed back.
    pub fn absorb(&mut self, next: StreamEvent) -> Result<(), StreamEvent> {
        if !self.may_absorb(&next) {
            return Err(next);
        }
        let (data, count, metadata, add, at) = match (self, &next) {
            (Self::Token(a), Self::Token(b)) => (
                &mut a.data,
                &mut a.token_count,
                &mut a.metadata,
                &b.data,
                b.token_count,
            ),
            (Self::Reasoning(a), Self::Reasoning(b)) => (
                &mut a.data,
                &mut a.token_count,
                &mut a.metadata,
                &b.data,
                b.token_count,
            ),
            (Self::ToolCall(a), Self::ToolCall(b)) => (
                &mut a.arguments_delta,
                &mut a.token_count,
                &mut a.metadata,
                &b.arguments_delta,
                b.token_count,
            ),
            _ => return Err(next),
        };
        let pieces = metadata.as_ref().map_or(1, |m| m.coalesced) + next.pieces();
        data.push_str(add);
        *count = at;
        *metadata = Some(TokenMetadata { coalesced: pieces });
        Ok(())
    }

    /// Bytes of text a delta carries (0 for other events).
    pub fn text_len(&self) -> usize {
        self.delta_text().map_or(0, str::len)
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
            Self::Done(d) => {
                let calls: usize = d.tool_calls.iter().map(|c| c.arguments.len() + 64).sum();
                d.full_response.as_ref().map_or(0, String::len) + calls + 192
            }
            e => e.delta_text().map_or(192, |t| t.len() + 96),
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
