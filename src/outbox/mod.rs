//! `ClientOutbox`: the one bounded queue between a client's streams and
//! whatever writer carries them to the client, and the only place that
//! knows about backpressure.
//!
//! Stream tasks push ([`ClientOutbox::push_token`], `push_stream_event`),
//! doors push their own control events, and one writer at a time (the
//! Socket.IO writer of the attached socket, or an HTTP response body)
//! takes events out through an [`OutboxReader`]: `next`, then `sent` once
//! the transport took an event or `put_back` when it did not. The outbox
//! names no transport; a writer is anything that can take an [`Outbound`].
//!
//! Inside, concerns are split by owner: `queue` (per-stream FIFOs served
//! round-robin, control first, counts), [`credits`] (how far the writer
//! may run ahead of the client's acks), [`pressure`] (the policy table and
//! the engaged/relieved episodes), [`replay`] (what was sent and may be
//! sent again after a resume) and `rewind` (the resume itself). A client
//! is *behind* when its queue holds `threshold` events, because its credits
//! ran out or its writer could not hand events to the transport; its policy
//! then applies to new deltas (see [`pressure::admit`]). No lock is held
//! across an await.

mod client_outbox;
pub mod credits;
pub mod event;
mod mirror;
pub mod pressure;
mod queue;
mod reader;
pub mod replay;
mod rewind;

pub use client_outbox::{ClientOutbox, OutboxSettings, Pushed, TooSlow};
pub use event::{Control, Outbound, Outcome, StreamEvent};
pub use mirror::{ChannelMirror, MirrorOp};
pub use reader::OutboxReader;
pub use rewind::Resumed;

#[cfg(test)]
mod tests;
