//! The HTTP API door, on the same port as `/ai`: today the session
//! endpoints of PROTOCOL.md part 2 (`GET /api/chat/sessions`, `GET` and
//! `DELETE /api/chat/sessions/{id}`).
//!
//! A request is turned into one call on an engine part held by the `App`
//! (the session store) and its answer into JSON: [`caller`] reads who is
//! asking from `Authorization: Bearer <JWT>` with the same authenticator
//! the `/ai` handshake uses; [`reply`] renders a `GatewayError` as a status
//! and `{ "error": { "code", "message" } }`, its text from the one wire
//! mapping in `error.rs`; [`sessions`] holds the routes and handlers. This
//! door knows no socket, no stream and no store's insides.

pub mod caller;
pub mod reply;
pub mod sessions;

pub use sessions::routes;
