//! The `POST /api/chat/stream` wire contract: the request the REST + SSE
//! frontends send (snake_case) and the payloads of the event stream they
//! read.
//!
//! A request becomes the engine's [`StreamRequest`] with
//! [`ChatStreamRequest::into_stream_request`]; the event payloads are
//! plain `Serialize` structs that the HTTP door's SSE writer fills from the
//! stream's events.

use super::agent::{ReasoningData, ReasoningRequest, ToolCall, ToolChoice, ToolSpec};
use super::ai::{
    AgentContext, CancelReason, ChatMessage, Role, StreamRequest, Usage, validate_session_id,
};
use super::validate::FieldError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use validator::Validate;

/// `POST /api/chat/stream`: the `/ai` request's fields in snake_case, the
/// prompt named `message` (left out only when `messages` ends with tool
/// results: an agent's loop continuing after its tools ran).
#[derive(Debug, Clone, Deserialize, Validate)]
pub struct ChatStreamRequest {
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub message: Option<String>,
    #[serde(default)]
    #[validate(nested)]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    #[validate(nested)]
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    #[validate(nested)]
    pub reasoning: Option<ReasoningRequest>,
    #[validate(custom(function = "validate_session_id"))]
    pub session_id: Option<String>,
    #[validate(length(min = 1, max = 128, message = "must be 1..=128 characters"))]
    pub model: Option<String>,
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub provider: Option<String>,
    #[validate(range(min = 0.0, max = 2.0, message = "must be between 0.0 and 2.0"))]
    pub temperature: Option<f64>,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_tokens: Option<u32>,
    pub use_orchestrator: Option<bool>,
    pub agent_context: Option<AgentContext>,
    /// Add the text so far to every token event.
    #[serde(default)]
    pub partial: bool,
    /// A dropped connection does not cancel the stream (see resume).
    #[serde(default)]
    pub resumable: bool,
}

impl ChatStreamRequest {
    /// The engine's request (the orchestrator routes it unless told not to).
    pub fn into_stream_request(self) -> Result<StreamRequest, FieldError> {
        let continues = self.messages.last().is_some_and(|m| m.role == Role::Tool);
        if self.message.is_none() && !continues {
            return Err(FieldError::new(
                "message",
                "is required (it may be left out only when messages end with tool results)",
            ));
        }
        Ok(StreamRequest {
            prompt: self.message,
            messages: self.messages,
            tools: self.tools,
            tool_choice: self.tool_choice,
            reasoning: self.reasoning,
            session_id: self.session_id,
            use_orchestrator: Some(self.use_orchestrator.unwrap_or(true)),
            model: self.model,
            provider: self.provider,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            agent_context: self.agent_context,
            ..StreamRequest::default()
        })
    }
}

/// `event: start`.
#[derive(Debug, Clone, Serialize)]
pub struct SseStart {
    pub stream_id: Arc<str>,
    pub session_id: Option<Arc<str>>,
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub agent: Option<Arc<str>>,
    pub intent: Option<Arc<str>>,
}

/// A token event (its `id:` is `count`).
#[derive(Debug, Clone, Serialize)]
pub struct SseToken<'a> {
    pub token: &'a str,
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<&'a str>,
}

/// `event: reasoning`: a piece of the model's thinking (the `/ai` event's
/// fields, in snake_case; its `id:` is `token_count`).
#[derive(Debug, Clone, Serialize)]
pub struct SseReasoning<'a> {
    pub stream_id: &'a str,
    pub data: &'a str,
    pub token_count: u64,
}

/// `event: tool_call`: a piece of a tool call's arguments.
#[derive(Debug, Clone, Serialize)]
pub struct SseToolCall<'a> {
    pub stream_id: &'a str,
    pub index: u32,
    pub id: &'a str,
    pub name: &'a str,
    pub arguments_delta: &'a str,
    pub token_count: u64,
}

/// The last event of a stream that completed.
#[derive(Debug, Clone, Serialize)]
pub struct SseDone {
    pub done: bool,
    pub tokens: u64,
    pub duration: u64,
    #[serde(rename = "tokensPerSecond")]
    pub tokens_per_second: f64,
    pub finish_reason: String,
    pub usage: Option<Usage>,
    pub session_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningData>,
}

/// Tokens per second over `duration_ms`, to two decimals (a duration
/// under a millisecond counts as one).
pub fn tokens_per_second(tokens: u64, duration_ms: u64) -> f64 {
    let secs = (duration_ms as f64 / 1000.0).max(0.001);
    ((tokens as f64 / secs) * 100.0).round() / 100.0
}

/// The last event of a stream that failed or was cancelled.
#[derive(Debug, Clone, Serialize)]
pub struct SseError {
    pub error: SseErrorBody,
}

#[derive(Debug, Clone, Serialize)]
pub struct SseErrorBody {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
    /// Why a cancelled stream ended (`code` is then `cancelled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}
