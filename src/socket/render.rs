//! How an outbox event becomes a Socket.IO event: the [`Render`] seam
//! between the one Socket.IO writer (`writer.rs`) and the namespaces it
//! serves, and `/ai`'s own rendering ([`AiRender`]: each item one event,
//! named and shaped as in PROTOCOL.md part 1, no state).
//!
//! A namespace whose events depend on what came before (the default
//! namespace's dialects say which design started a stream and repeat its
//! text at the end) keeps that state in its renderer, one per writer. The
//! writer hands every item to `Render::emit` once per attempt; a refused
//! item comes back later, so a renderer changes its state only once its
//! emit went out.

use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::event;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;

/// How a writer turns the items of a client's outbox into events on its
/// socket.
pub trait Render: Send + 'static {
    /// Emit `item` on `socket` as at most one event of this namespace
    /// (none when it has nothing to say for it; that counts as sent). On
    /// an error nothing went out and nothing of the renderer's state has
    /// changed: the writer hands the item back to the outbox and retries.
    fn emit(&mut self, socket: &SocketRef, item: &Outbound) -> Result<(), SendError>;
}

/// `/ai`'s rendering: stateless, one event per item.
pub struct AiRender;

impl Render for AiRender {
    fn emit(&mut self, socket: &SocketRef, item: &Outbound) -> Result<(), SendError> {
        emit(socket, item)
    }
}

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
