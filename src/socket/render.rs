//! How an outbox event becomes an `/ai` Socket.IO event: its name and its
//! payload, emitted on one socket.

use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::event;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;

/// Emit `item` on `socket` as its `/ai` event.
pub fn emit(socket: &SocketRef, item: &Outbound) -> Result<(), SendError> {
    match item {
        Outbound::Stream(e) => match e {
            StreamEvent::Start(p) => socket.emit(event::STREAM_START, p),
            StreamEvent::Token(p) => socket.emit(event::TOKEN, p),
            StreamEvent::Reasoning(p) => socket.emit(event::REASONING, p),
            StreamEvent::ToolCall(p) => socket.emit(event::TOOL_CALL, p),
            StreamEvent::Complete(p) => socket.emit(event::STREAM_COMPLETE, p),
            StreamEvent::Done(p) => socket.emit(event::DONE, p),
            StreamEvent::Cancelled(p) => socket.emit(event::STREAM_CANCELLED, p),
            StreamEvent::Failed(p) => socket.emit(event::STREAM_ERROR, p),
        },
        Outbound::Control(c) => socket.emit(c.event, &*c.payload),
        Outbound::Notice(n) => socket.emit(event::BACKPRESSURE, n),
    }
}

/// The event's name, for logs.
pub fn name(item: &Outbound) -> &'static str {
    match item {
        Outbound::Stream(e) => match e {
            StreamEvent::Start(_) => event::STREAM_START,
            StreamEvent::Token(_) => event::TOKEN,
            StreamEvent::Reasoning(_) => event::REASONING,
            StreamEvent::ToolCall(_) => event::TOOL_CALL,
            StreamEvent::Complete(_) => event::STREAM_COMPLETE,
            StreamEvent::Done(_) => event::DONE,
            StreamEvent::Cancelled(_) => event::STREAM_CANCELLED,
            StreamEvent::Failed(_) => event::STREAM_ERROR,
        },
        Outbound::Control(c) => c.event,
        Outbound::Notice(_) => event::BACKPRESSURE,
    }
}
