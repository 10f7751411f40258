//! The events a client's outbox holds, typed until they are emitted.
//!
//! One enum over every server → client payload of `protocol`, so the queue,
//! the replay store and the drain handle events without serializing them
//! early; `emit` is where an event becomes a Socket.IO frame.

use crate::protocol::{
    Connected, Done, ErrorEvent, HeartbeatAck, StreamCancelled, StreamComplete, StreamError,
    StreamStart, Token, event,
};
use socketioxide::SendError;
use socketioxide::extract::SocketRef;
use std::sync::Arc;

/// An event waiting for its socket, typed until it is emitted.
#[derive(Debug, Clone)]
pub enum Outbound {
    Connected(Connected),
    Start(StreamStart),
    Token(Token),
    Complete(StreamComplete),
    Done(Done),
    Cancelled(StreamCancelled),
    StreamError(StreamError),
    Error(ErrorEvent),
    HeartbeatAck(HeartbeatAck),
    Backpressure(crate::protocol::Backpressure),
    ReconnectSuccess(crate::protocol::ReconnectSuccess),
    ReconnectFailed(crate::protocol::ReconnectFailed),
}

impl Outbound {
    pub fn event(&self) -> &'static str {
        match self {
            Self::Connected(_) => event::CONNECTED,
            Self::Start(_) => event::STREAM_START,
            Self::Token(_) => event::TOKEN,
            Self::Complete(_) => event::STREAM_COMPLETE,
            Self::Done(_) => event::DONE,
            Self::Cancelled(_) => event::STREAM_CANCELLED,
            Self::StreamError(_) => event::STREAM_ERROR,
            Self::Error(_) => event::ERROR,
            Self::HeartbeatAck(_) => event::HEARTBEAT_ACK,
            Self::Backpressure(_) => event::BACKPRESSURE,
            Self::ReconnectSuccess(_) => event::RECONNECT_SUCCESS,
            Self::ReconnectFailed(_) => event::RECONNECT_FAILED,
        }
    }

    pub(super) fn emit(&self, socket: &SocketRef) -> Result<(), SendError> {
        let name = self.event();
        match self {
            Self::Connected(p) => socket.emit(name, p),
            Self::Start(p) => socket.emit(name, p),
            Self::Token(p) => socket.emit(name, p),
            Self::Complete(p) => socket.emit(name, p),
            Self::Done(p) => socket.emit(name, p),
            Self::Cancelled(p) => socket.emit(name, p),
            Self::StreamError(p) => socket.emit(name, p),
            Self::Error(p) => socket.emit(name, p),
            Self::HeartbeatAck(p) => socket.emit(name, p),
            Self::Backpressure(p) => socket.emit(name, p),
            Self::ReconnectSuccess(p) => socket.emit(name, p),
            Self::ReconnectFailed(p) => socket.emit(name, p),
        }
    }

    /// Upstream tokens carried (for credits).
    pub(super) fn tokens(&self) -> u64 {
        match self {
            Self::Token(t) => t.metadata.as_ref().map_or(1, |m| m.coalesced),
            _ => 0,
        }
    }

    pub(super) fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Done(_) | Self::Cancelled(_) | Self::StreamError(_)
        )
    }

    /// Rough bytes held, for the byte cap (text plus framing).
    pub(super) fn weight(&self) -> usize {
        match self {
            Self::Token(t) => t.data.len() + 96,
            Self::Done(d) => d.full_response.as_ref().map_or(0, String::len) + 192,
            _ => 192,
        }
    }
}

/// The stream an event belongs to (None for control events).
pub(super) fn stream_of(item: &Outbound) -> Option<Arc<str>> {
    match item {
        Outbound::Start(p) => Some(p.stream_id.clone()),
        Outbound::Token(p) => Some(p.stream_id.clone()),
        Outbound::Complete(p) => Some(p.stream_id.clone()),
        Outbound::Done(p) => Some(p.stream_id.clone()),
        Outbound::Cancelled(p) => Some(p.stream_id.clone()),
        Outbound::StreamError(p) => Some(p.stream_id.clone()),
        _ => None,
    }
}
