//! The `/ai` door: the Socket.IO namespace, its handshake, thin event
//! handlers, and the writer that carries a client's outbox to its socket.
//! The handshake, the [`Binding`], payload reading and the writer serve
//! every Socket.IO namespace: a namespace is a [`Door`] (its greeting,
//! handlers, liveness and [`Render`]); the default namespace's dialects
//! (`crate::dialects`) are the other one.
//!
//! The handshake middleware (`handshake`) runs before socketioxide sends
//! the connect packet: it applies the per-address join limit (to the real
//! client address the connection gate put on the request), reads the
//! `auth` object and, when auth is on, verifies `auth.token`, and checks
//! the process's cap on clients; a refusal is a `connect_error`
//! (`unauthorized: …`, `rate_limited: …`, `server_busy: …`) and nothing
//! else happens. On success it makes the client, queues `ai:connected`,
//! attaches it, starts its writer and registers the event handlers, all
//! before the connect packet goes out, so that an event the client sends
//! the moment it is connected finds its handler. The writer waits for
//! `on_connect` (which runs after the connect packet) before it emits.
//! A socket carries its [`Binding`] (the client it serves now, and the
//! attachment) in its extensions; handlers read it, never a lookup table.
//! Each handler (`handlers`) decodes its payload, calls one engine part
//! and answers through the client's outbox (`reply`).
//!
//! With many nodes, a client may reconnect on another node than the one
//! running its streams: `remote.rs` is that node's side (find the home,
//! tail the events it writes, forward acks and cancels), `home.rs` the
//! home's (obey commands, resume onto a stand-in, write the events to
//! Redis in batches). `mirror.rs` writes every `/ai` stream's events to
//! its log in Redis as they are produced; `lost_home.rs` resumes a client
//! whose home died from those logs, ending its streams with `node_lost`.

mod binding;
mod handlers;
mod handshake;
mod home;
mod lost_home;
mod mirror;
pub mod payload;
mod remote;
mod render;
mod reply;
mod writer;

pub use binding::Binding;
pub use handshake::{Door, handshake, on_connect};
pub use home::spawn_commands;
pub use mirror::spawn_log_writer;
pub use render::Render;

use handshake::AiDoor;

use socketioxide::SocketIo;
use socketioxide::handler::ConnectHandler;

pub const NAMESPACE: &str = "/ai";

/// Register the namespace on `io`.
pub fn register(io: &SocketIo) {
    io.ns(NAMESPACE, on_connect.with(handshake::<AiDoor>));
}
