//! The earlier designs' frontends, unchanged (PROTOCOL.md part 3): the
//! default Socket.IO namespace `/` speaking the JWT streaming guide's
//! `llm:*` events ([`llm`]) and the chat designs' `chat_*` events
//! ([`chat`]), on one connection if a frontend likes.
//!
//! This is a door like `/ai`, over the same handshake, writer and engine:
//! the handshake (`auth.token`, the per-IP limit, the client and its
//! writer set up before the connect packet, so a frontend that emits the
//! moment it is connected is served) is `socket`'s, with `door`'s
//! greeting, handlers and renderer. Each dialect file translates its
//! payloads into the engine's `StreamRequest` (admitted by `Relay::start`,
//! so the same limits, sessions, orchestrator, providers, backpressure and
//! cancellation apply) and says the engine's stream events in its own
//! words through a [`voice`]; `render` is the writer's renderer that keeps
//! which dialect started each stream ([`live`]) and what it said so far.
//! Wire types are in `protocol::dialects`. `POST /llm/chat`, the guide's
//! REST call, is an HTTP door (`http::llm`).

mod chat;
mod door;
mod live;
mod llm;
mod render;
mod voice;

pub use door::DialectDoor;

use crate::socket::{handshake, on_connect};
use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;

pub const NAMESPACE: &str = "/";

/// Register the default namespace on `io`.
pub fn register(io: &SocketIo) {
    io.ns(NAMESPACE, on_connect.with(handshake::<DialectDoor>));
}
