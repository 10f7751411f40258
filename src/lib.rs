//! streamgate: a gateway that streams LLM tokens to IDE-style assistant
//! frontends.
//!
//! One engine behind several doors. The engine: [`clients`] (who is
//! connected, attach / detach / resume), [`outbox`] (each client's bounded
//! queue, credits, backpressure and replay log; no transport),
//! [`relay`] (one task per stream, upstream to outbox), [`sessions`]
//! (conversations kept by the gateway), [`orchestrator`] (which agent and
//! provider), [`upstream`] (the providers' wire formats). The doors:
//! [`socket`] (the `/ai` Socket.IO namespace, and the handshake and writer
//! every namespace shares), [`dialects`] (the earlier designs' `llm:*` and
//! `chat_*` events on the default namespace), [`http`] (SSE streams, the
//! session endpoints, the OpenAI-compatible `/v1`, `/llm/chat`, and in
//! front of every door the real client address and the connection gate,
//! which [`connections`] counts for), [`pages`] (the playground and ops
//! page) and [`ops`] (health, stats, metrics). [`app`] builds the engine
//! from a [`Config`]; [`server`] puts the doors on one port. Dependencies
//! run one way: doors → app → clients / relay → outbox / orchestrator →
//! upstream. See ARCHITECTURE.md for the path of a token.

pub mod app;
pub mod auth;
pub mod clients;
pub mod config;
pub mod connections;
pub mod dialects;
pub mod error;
pub mod guard;
pub mod http;
pub mod memory;
pub mod ops;
pub mod orchestrator;
pub mod outbox;
pub mod pages;
pub mod protocol;
pub mod rate_limit;
pub mod relay;
pub mod server;
pub mod sessions;
pub mod shutdown;
pub mod socket;
pub mod telemetry;
pub mod upstream;

pub use app::{App, StartError};
pub use config::Config;
pub use server::{Running, start};
