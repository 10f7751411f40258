//! The upstream door: LLM providers behind one trait.
//!
//! A [`Provider`] turns an [`UpstreamRequest`] into a [`ChunkStream`]: text
//! tokens in upstream order, then one [`Chunk::Done`] with the finish reason
//! and usage. `open` resolves once the upstream has accepted the request
//! (HTTP status read); the body is read lazily as the stream is polled, so a
//! consumer that stops polling holds the upstream back through TCP, and one
//! that drops the stream closes the upstream connection. Each wire format
//! lives in its own file (`ollama` over the [`ndjson`] pipeline; `openai`
//! and `anthropic` over the [`sse`] one), and all of them share the HTTP
//! client, key handling, status mapping and probe of [`http`]. This
//! module knows nothing of clients, queues or doors: the relay consumes
//! its streams. [`ProviderSet`] builds the providers from config and knows
//! each one's fallback chain.

mod anthropic;
pub mod http;
pub mod ndjson;
mod ollama;
mod openai;
mod provider;
mod set;
mod simulated;
pub mod sse;

pub use anthropic::{AnthropicEventDecoder, AnthropicProvider};
pub use ollama::{OllamaLines, OllamaProvider};
pub use openai::{OpenAiEventDecoder, OpenAiProvider};
pub use provider::{Accepts, Chunk, ChunkStream, Provider, ProviderProfile, UpstreamRequest};
pub use set::ProviderSet;
pub use simulated::SimulatedProvider;
