//! Ollama's streaming chat API: `POST /api/chat` answering NDJSON.
//!
//! [`provider`] holds the client and its URLs; [`request`] renders the
//! conversation as Ollama takes it (`images` as base64 on a message,
//! `tool_calls` with their arguments as objects, `tool` messages, `tools`,
//! `think`); [`decode`] reads one NDJSON line at a time
//! ([`OllamaLines`], over the shared line framing of `upstream::ndjson`).

mod decode;
mod provider;
mod request;

pub use decode::OllamaLines;
pub use provider::OllamaProvider;
