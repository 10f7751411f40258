//! Conversations kept by the gateway: a `sessionId` on `ai:stream` names a
//! session whose turns the gateway stores and sends upstream again, so a
//! frontend sends only the new prompt each turn (PROTOCOL.md part 2,
//! "Sessions").
//!
//! Data flows one way. `Relay::start` opens a turn with
//! [`SessionLease::begin`]: the store creates the session for its owner
//! (the JWT `sub`; nobody in particular with auth off) or checks that the
//! caller owns it, marks it busy (one live stream per session) and hands
//! back the stored history, which becomes the route's upstream messages
//! between the agent's system prompt and the new prompt. The lease rides
//! in the stream's `StreamGuard`: when the stream ends, the turn (the
//! prompt and the reply as the client received it, with its status) is
//! appended with [`SessionLease::end`] before the terminal event is
//! queued, and however else the stream task ends (a panic, a refused
//! admission) dropping the lease releases the busy mark. The HTTP door
//! reads and deletes sessions through the same [`SessionStore`].
//!
//! [`SessionStore`] (`store.rs`) is the async, object-safe contract, so a
//! shared store (Redis) can take the place of [`MemoryStore`]
//! (`memory.rs`: per-session, per-user and process-wide bounds, idle
//! expiry on access and by a periodic sweep) without changing a caller.
//! [`Turn`] (`turn.rs`) is what a finished stream hands over. This module
//! knows no door, no socket and no upstream.

mod lease;
mod memory;
mod store;
mod turn;

pub use lease::SessionLease;
pub use memory::MemoryStore;
pub use store::{Begun, LeaseKey, SessionFigures, SessionStore};
pub use turn::{Turn, TurnReply};
