//! Anthropic's Messages API, streaming: `POST {base}/v1/messages` with
//! `stream: true`.
//!
//! [`provider`] holds the client and its URLs; [`request`] renders the
//! conversation as Anthropic takes it (system messages as the top-level
//! `system`, content blocks: text, base64 or URL images, `tool_use`,
//! `tool_result`, the thinking blocks a tool loop must send back), tools,
//! tool choice and the thinking budget; [`decode`] reads the event stream
//! back into the gateway's deltas (`text_delta`, `thinking_delta`,
//! `input_json_delta` by tool-use block), the opaque reasoning data
//! (`signature_delta`, `redacted_thinking`) and usage with its cache
//! counts.

mod decode;
mod provider;
mod request;

pub use decode::AnthropicEventDecoder;
pub use provider::AnthropicProvider;
