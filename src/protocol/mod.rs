//! Wire types: what each door reads from and writes to its clients.
//!
//! [`ai`] is the `/ai` Socket.IO contract, and its `StreamRequest` the
//! engine's request whichever door it came through; [`session`] the shapes
//! of a conversation the gateway keeps (stored messages, the HTTP bodies);
//! [`sse`] is `POST /api/chat/stream`, [`openai`] the OpenAI-compatible
//! `/v1` API. [`validate`] turns loose JSON into typed requests and names
//! every broken field. docs/protocol.md restates the contracts. Types here
//! are plain data: they know no socket, no queue and no upstream.

pub mod agent;
pub mod ai;
pub mod openai;
pub mod session;
pub mod sse;
pub mod validate;

pub use agent::*;
pub use ai::*;
pub use session::{SessionDetail, SessionList, SessionMessage, SessionSummary, TurnStatus};
pub use validate::{FieldError, Invalid, camel, parse_payload, serialized_size_within};

/// Milliseconds since the Unix epoch, the protocol's one clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
