//! Any OpenAI-compatible server (OpenAI, DeepSeek, vLLM, llama.cpp's
//! `llama-server`, LM Studio, …): `POST {base}/chat/completions` with
//! `stream: true` and `stream_options.include_usage`, answered with SSE.
//!
//! [`provider`] holds the client and its URLs, [`request`] renders the
//! conversation, tools, tool choice and reasoning effort as this format
//! wants them, [`decode`] reads the chunks back into the gateway's deltas
//! (text, `reasoning_content`, `tool_calls` pieces by index) and usage.

mod decode;
mod provider;
mod request;

pub use decode::OpenAiEventDecoder;
pub use provider::OpenAiProvider;
