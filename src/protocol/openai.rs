//! The OpenAI-compatible wire contract (`POST /v1/chat/completions`,
//! `GET /v1/models`), as the official SDKs send and read it.
//!
//! Requests are read loosely (unknown fields ignored, `content` a string or
//! parts, `stop` a string or a list) and validated here; responses are
//! `Serialize` structs shaped exactly like OpenAI's, so that an SDK's own
//! parsing (and its stream accumulation) works unchanged.

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
    /// Read so that a request carrying them is not refused as malformed;
    /// what is done with them is the door's business.
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub user: Option<String>,
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
    pub tool_calls: Option<Vec<Value>>,
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
    pub image_url: Option<Value>,
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
    pub content: &'a str,
    pub refusal: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
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
