//! The OpenAI-compatible wire contract (`POST /v1/chat/completions`,
//! `GET /v1/models`), as the official SDKs send and read it.
//!
//! Requests are read loosely (unknown fields ignored, `content` a string or
//! parts, `stop` a string or a list) and validated here; responses are
//! `Serialize` structs shaped exactly like OpenAI's, so that an SDK's own
//! parsing (and its stream accumulation) works unchanged.

use super::agent::Effort;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use validator::Validate;

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize, Validate)]
pub struct ChatCompletionRequest {
    #[validate(length(min = 1, max = 200, message = "must be 1..=200 characters"))]
    pub model: String,
    /// Checked by the door as it reads them (at least one, the last a
    /// `user` message or tool results).
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[validate(range(min = 0.0, max = 2.0, message = "must be between 0.0 and 2.0"))]
    pub temperature: Option<f64>,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_tokens: Option<u32>,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    /// `"auto"`, `"none"`, `"required"` or `{ "type": "function",
    /// "function": { "name" } }`.
    pub tool_choice: Option<Value>,
    pub reasoning_effort: Option<Effort>,
    pub user: Option<String>,
}

/// `tools[i]`: `{ "type": "function", "function": { name, description?,
/// parameters? } }`.
#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: Function,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
}

/// An assistant message's `tool_calls[i]`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageToolCall {
    pub id: String,
    pub function: CallFunction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Vec<MessageToolCall>,
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

/// `content`: a string, or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub image_url: Option<ImageUrl>,
}

/// `image_url`: a URL, or a `data:<type>;base64,<data>` URL.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

// ---------------------------------------------------------------------------
// Responses

/// `chat.completion.chunk`.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: Option<&'static str>,
    pub choices: Vec<ChunkChoice<'a>>,
    /// Absent unless the request asked for usage; then `null` on every
    /// chunk but the last, which carries it with no choices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<CompletionUsage>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'a str>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<DeltaToolCall<'a>>,
}

/// `delta.tool_calls[i]`: `id`, `type` and the name only on a call's
/// first piece, as OpenAI sends them.
#[derive(Debug, Clone, Serialize)]
pub struct DeltaToolCall<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: DeltaFunction<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeltaFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// `chat.completion` (`stream: false`).
#[derive(Debug, Clone, Serialize)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: Option<&'static str>,
    pub choices: Vec<CompletionChoice<'a>>,
    pub usage: CompletionUsage,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    pub logprobs: Option<()>,
    pub finish_reason: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage<'a> {
    pub role: &'static str,
    /// `null` when the model only called tools.
    pub content: Option<&'a str>,
    pub refusal: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<WholeToolCall<'a>>,
}

/// `message.tool_calls[i]` of a whole completion.
#[derive(Debug, Clone, Serialize)]
pub struct WholeToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: WholeFunction<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WholeFunction<'a> {
    pub name: &'a str,
    pub arguments: &'a str,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

/// OpenAI's error body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: &'static str,
}
