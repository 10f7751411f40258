//! The `/ai` wire contract: every event name and payload type the gateway
//! sends or accepts on the `/ai` namespace, in one place.
//!
//! Client payloads arrive as loose JSON (`serde_json::Value`) and are turned
//! into typed requests by [`super::parse_payload`], which reports a failure
//! as the field that broke and the rule it broke, so that the error event
//! can name them. Server payloads are plain `Serialize` structs with
//! camelCase keys; handlers never build JSON by hand. docs/protocol.md
//! restates the contract; this file is its code.

use super::agent::{
    Content, MAX_TOOLS, MessageReasoning, ReasoningData, ReasoningRequest, ToolCall, ToolChoice,
    ToolSpec, check_content, check_tools,
};
use super::session::is_valid_id;
use super::validate::{FieldError, serialized_size_within};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use validator::Validate;

/// Event names, as they appear on the wire.
pub mod event {
    pub const CONNECTED: &str = "ai:connected";
    pub const STREAM: &str = "ai:stream";
    pub const STREAM_START: &str = "ai:stream:start";
    pub const TOKEN: &str = "ai:token";
    pub const REASONING: &str = "ai:reasoning";
    pub const TOOL_CALL: &str = "ai:tool_call";
    pub const STREAM_COMPLETE: &str = "ai:stream:complete";
    pub const DONE: &str = "ai:done";
    pub const STREAM_CANCELLED: &str = "ai:stream:cancelled";
    pub const STREAM_ERROR: &str = "ai:stream:error";
    pub const CANCEL: &str = "ai:cancel";
    pub const HEARTBEAT: &str = "ai:heartbeat";
    pub const HEARTBEAT_ACK: &str = "ai:heartbeat:ack";
    pub const ACK: &str = "ai:ack";
    pub const BACKPRESSURE: &str = "ai:backpressure";
    pub const RECONNECT: &str = "ai:reconnect";
    pub const RECONNECT_SUCCESS: &str = "ai:reconnect:success";
    pub const RECONNECT_FAILED: &str = "ai:reconnect:failed";
    pub const ERROR: &str = "ai:error";
}

// ---------------------------------------------------------------------------
// Client -> server

/// How a client wants to be treated when it falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackpressurePolicy {
    #[default]
    Coalesce,
    Slow,
    Drop,
}

impl BackpressurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coalesce => "coalesce",
            Self::Slow => "slow",
            Self::Drop => "drop",
        }
    }
}

/// The handshake `auth` object. Every field is optional so that a client
/// sending nothing at all still connects when auth is off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeAuth {
    pub token: Option<String>,
    pub backpressure_policy: Option<BackpressurePolicy>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    /// A tool's result, answering the assistant's call `toolCallId`.
    Tool,
}

/// One message of a conversation: text or parts (images), and for an
/// agent's loop the assistant's tool calls (with the reasoning its
/// provider wants back) and the tools' results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub role: Role,
    pub content: Content,
    /// (`tool_calls` too, for the snake_case HTTP frontends.)
    #[serde(default, skip_serializing_if = "Vec::is_empty", alias = "tool_calls")]
    #[validate(nested)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "tool_call_id"
    )]
    #[validate(length(min = 1, max = 256, message = "must be 1..=256 characters"))]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<MessageReasoning>,
}

impl ChatMessage {
    /// A text message.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: Content::Text(content.into()),
            ..Self::default()
        }
    }

    /// The rules that relate its fields, named under `field`.
    fn check(&self, field: &str) -> Result<(), FieldError> {
        check_content(&self.content, &format!("{field}.content"))?;
        let name = |f: &str| format!("{field}.{f}");
        match self.role {
            Role::Tool if self.tool_call_id.is_none() => Err(FieldError::new(
                name("toolCallId"),
                "is required for a tool message",
            )),
            Role::Assistant | Role::Tool => Ok(()),
            _ if !self.tool_calls.is_empty() => Err(FieldError::new(
                name("toolCalls"),
                "only an assistant message carries tool calls",
            )),
            _ if self.reasoning.is_some() => Err(FieldError::new(
                name("reasoning"),
                "only an assistant message carries reasoning",
            )),
            _ => Ok(()),
        }?;
        for (i, call) in self.tool_calls.iter().enumerate() {
            let parsed = serde_json::from_str::<Value>(&call.arguments);
            if !parsed.is_ok_and(|v| v.is_object()) {
                let f = format!("{field}.toolCalls[{i}].arguments");
                return Err(FieldError::new(f, "must be a JSON object as text"));
            }
        }
        Ok(())
    }
}

/// Editor context an IDE frontend attaches to a prompt. Kept as free-form
/// JSON (the orchestrator reads the fields it knows); its size is capped.
pub type AgentContext = serde_json::Map<String, Value>;

/// `ai:stream`: what a client asks for, and the engine's request whichever
/// door it came through (doors translate their own bodies into it). Range
/// rules that depend on config (`maxPromptChars`, `maxTokensLimit`) are
/// checked by [`StreamRequest::check_bounds`].
#[derive(Debug, Clone, Default, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct StreamRequest {
    /// Required, unless `messages` ends with tool results (the model then
    /// continues after them).
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub prompt: Option<String>,
    #[serde(default)]
    #[validate(nested)]
    pub messages: Vec<ChatMessage>,
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
    #[validate(custom(function = "validate_stream_id"))]
    pub stream_id: Option<String>,
    /// The conversation this stream is a turn of (PROTOCOL.md part 2,
    /// "Sessions"): the gateway keeps its history, so `messages` must be
    /// empty with it.
    #[validate(custom(function = "validate_session_id"))]
    pub session_id: Option<String>,
    #[serde(default)]
    #[validate(nested)]
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    #[validate(nested)]
    pub reasoning: Option<ReasoningRequest>,
    /// The agent to serve, by name: set by doors whose clients pick one
    /// (`agent:<name>` on `/v1`); never read from an `/ai` payload.
    #[serde(skip)]
    pub agent: Option<String>,
    /// Stop sequences for the upstream: set by doors that take them
    /// (`stop` on `/v1`); never read from an `/ai` payload.
    #[serde(skip)]
    pub stop: Vec<String>,
    /// The prompt is the last of `messages` (a user message with images,
    /// as `/v1` sends it): set by doors only.
    #[serde(skip)]
    pub prompt_in_messages: bool,
}

/// Limits from config that a request is checked against.
#[derive(Debug, Clone)]
pub struct RequestBounds {
    pub max_prompt_chars: usize,
    pub max_tokens_limit: u32,
    pub max_messages: usize,
    pub max_messages_bytes: usize,
    pub max_agent_context_bytes: usize,
}

/// Size rules of `ai:stream`, checked on the raw JSON before it is decoded
/// into a [`StreamRequest`], so that an over-limit payload is refused
/// before any typed copy of it is built (the JSON itself is bounded by the
/// transport's `max_payload_bytes`). Fields of the wrong type are left to
/// [`super::parse_payload`], which names them.
pub fn check_stream_sizes(payload: &Value, bounds: &RequestBounds) -> Result<(), FieldError> {
    if let Some(Value::String(prompt)) = payload.get("prompt") {
        check_prompt(prompt, bounds.max_prompt_chars)?;
    }
    if let Some(Value::Array(messages)) = payload.get("messages") {
        let text_len = |c: &Value| match c {
            Value::String(s) => s.len(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(str::len)
                .sum(),
            _ => 0,
        };
        let lengths = messages
            .iter()
            .filter_map(|m| m.get("content"))
            .map(text_len);
        check_messages(messages.len(), lengths, bounds)?;
    }
    if let Some(Value::Array(tools)) = payload.get("tools")
        && tools.len() > MAX_TOOLS
    {
        let rule = format!("must hold at most {MAX_TOOLS} tools (got {})", tools.len());
        return Err(FieldError::new("tools", rule));
    }
    if let Some(ctx @ Value::Object(_)) = payload.get("agentContext") {
        check_agent_context(ctx, bounds.max_agent_context_bytes)?;
    }
    Ok(())
}

fn check_prompt(prompt: &str, max_chars: usize) -> Result<(), FieldError> {
    // A char is 1..=4 bytes: most prompts are decided by their length alone.
    if prompt.len() <= max_chars {
        return Ok(());
    }
    let chars = prompt.chars().count();
    if chars > max_chars {
        return Err(FieldError::new(
            "prompt",
            format!("must be at most {max_chars} characters (got {chars})"),
        ));
    }
    Ok(())
}

fn check_messages(
    count: usize,
    text_lengths: impl Iterator<Item = usize>,
    bounds: &RequestBounds,
) -> Result<(), FieldError> {
    if count > bounds.max_messages {
        return Err(FieldError::new(
            "messages",
            format!(
                "must hold at most {} messages (got {count})",
                bounds.max_messages
            ),
        ));
    }
    let mut total = 0usize;
    for len in text_lengths {
        total = total.saturating_add(len);
        if total > bounds.max_messages_bytes {
            return Err(FieldError::new(
                "messages",
                format!(
                    "content must total at most {} bytes",
                    bounds.max_messages_bytes
                ),
            ));
        }
    }
    Ok(())
}

fn check_agent_context(ctx: &impl Serialize, max_bytes: usize) -> Result<(), FieldError> {
    serialized_size_within(ctx, max_bytes)
        .map(|_| ())
        .ok_or_else(|| {
            FieldError::new(
                "agentContext",
                format!("must be at most {max_bytes} bytes serialized"),
            )
        })
}

/// What `messages` is told when it comes with a `sessionId`.
pub const MESSAGES_WITH_SESSION: &str =
    "not allowed with sessionId (the session holds the history)";

impl StreamRequest {
    /// Rules beyond each field's own shape: the one that relates two
    /// fields (`messages` with `sessionId`), then those that depend on
    /// config. Returns the first broken one; the payload-shape rules have
    /// already passed by then.
    pub fn check_bounds(&self, bounds: &RequestBounds) -> Result<(), FieldError> {
        // With a session, `messages` may carry only this turn's tool
        // results: the rest of the history is the session's.
        if self.session_id.is_some() && self.messages.iter().any(|m| m.role != Role::Tool) {
            return Err(FieldError::new("messages", MESSAGES_WITH_SESSION));
        }
        match &self.prompt {
            Some(prompt) => check_prompt(prompt, bounds.max_prompt_chars)?,
            None if self.ends_with_tool_results() || self.prompt_in_messages => {}
            None => {
                return Err(FieldError::new(
                    "prompt",
                    "is required (it may be left out only when messages end with tool results)",
                ));
            }
        }
        if let Some(n) = self.max_tokens
            && n > bounds.max_tokens_limit
        {
            return Err(FieldError::new(
                "maxTokens",
                format!("must be between 1 and {}", bounds.max_tokens_limit),
            ));
        }
        check_messages(
            self.messages.len(),
            self.messages.iter().map(|m| m.content.text().len()),
            bounds,
        )?;
        for (i, m) in self.messages.iter().enumerate() {
            m.check(&format!("messages[{i}]"))?;
        }
        check_tools(&self.tools, self.tool_choice.as_ref())?;
        if let Some(ctx) = &self.agent_context {
            check_agent_context(ctx, bounds.max_agent_context_bytes)?;
        }
        Ok(())
    }

    /// The prompt's text (empty when the request continues after tool
    /// results).
    pub fn prompt_text(&self) -> &str {
        self.prompt.as_deref().unwrap_or("")
    }

    /// Does `messages` end with tool results (so no prompt is needed)?
    pub fn ends_with_tool_results(&self) -> bool {
        self.messages.last().is_some_and(|m| m.role == Role::Tool)
    }

    /// Does any message carry an image?
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| m.content.has_images())
    }
}

fn validate_stream_id(id: &str) -> Result<(), validator::ValidationError> {
    validate_id("stream_id", id)
}

pub fn validate_session_id(id: &str) -> Result<(), validator::ValidationError> {
    validate_id("session_id", id)
}

fn validate_id(code: &'static str, id: &str) -> Result<(), validator::ValidationError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(validator::ValidationError::new(code)
            .with_message("must be 1..=64 characters of [A-Za-z0-9_.:-]".into()))
    }
}

/// `ai:cancel`.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub stream_id: String,
}

/// `ai:ack`: the client has rendered `streamId` up to `tokenCount`.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct AckRequest {
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub stream_id: String,
    pub token_count: u64,
}

/// `ai:reconnect`: take over a previous connection's client and resume
/// its streams.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectRequest {
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub previous_client_id: String,
    #[validate(length(min = 1, max = 128, message = "must be 1..=128 characters"))]
    pub resume_token: String,
    #[validate(length(max = 64, message = "must list at most 64 streams"), nested)]
    pub streams: Option<Vec<ResumeStream>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ResumeStream {
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub stream_id: String,
    pub last_token_count: Option<u64>,
}

/// `ai:heartbeat`: carries nothing, but must be an object (or absent).
#[derive(Debug, Clone, Default, Deserialize, Validate)]
pub struct HeartbeatRequest {}

// ---------------------------------------------------------------------------
// Server -> client

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connected {
    pub client_id: Arc<str>,
    pub resume_token: String,
    pub max_concurrent_streams: usize,
    pub backpressure_threshold: usize,
    pub backpressure_policy: BackpressurePolicy,
    pub ack_window: usize,
    pub heartbeat_interval_ms: u64,
    pub reconnect_window_ms: u64,
    pub server_version: &'static str,
    pub timestamp: u64,
}

/// Socket.IO acknowledgement of `ai:stream`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamAck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AckError {
    pub code: &'static str,
    pub message: String,
    /// As `ai:error`'s `details` (e.g. `retryAfterMs`); left out when empty.
    #[serde(skip_serializing_if = "is_empty_object")]
    pub details: Value,
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty()) || v.is_null()
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStart {
    pub stream_id: Arc<str>,
    pub provider: Arc<str>,
    pub model: Arc<str>,
    pub agent: Option<Arc<str>>,
    pub intent: Option<Arc<str>>,
    /// The session this stream is a turn of (null without one).
    pub session_id: Option<Arc<str>>,
    pub timestamp: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub stream_id: Arc<str>,
    pub data: String,
    pub token_count: u64,
    pub agent: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TokenMetadata>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMetadata {
    pub coalesced: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamComplete {
    pub stream_id: Arc<str>,
    pub agent: Option<Arc<str>>,
    pub intent: Option<Arc<str>>,
    pub confidence: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Counted by the gateway, not the upstream (a cancelled stream whose
    /// upstream never said).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub stream_id: Arc<str>,
    pub total_tokens: u64,
    pub duration: u64,
    pub finish_reason: String,
    pub usage: Option<Usage>,
    pub dropped_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_response: Option<String>,
    /// The session this stream was a turn of (null without one) and the
    /// turn's number in it (1 for the first; null without a session).
    pub session_id: Option<Arc<str>>,
    pub turn: Option<u64>,
    /// The calls the model made, each whole, when it stopped to call tools.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Opaque reasoning data to send back with the next turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningData>,
}

/// Why a stream ended before its upstream finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    Client,
    Timeout,
    Disconnect,
    Shutdown,
    ClientTooSlow,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Timeout => "timeout",
            Self::Disconnect => "disconnect",
            Self::Shutdown => "shutdown",
            Self::ClientTooSlow => "client_too_slow",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCancelled {
    pub stream_id: Arc<str>,
    pub reason: CancelReason,
    pub token_count: u64,
    /// As far as known (`estimated` when the upstream never said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamError {
    pub stream_id: Arc<str>,
    pub code: &'static str,
    pub error: String,
    pub retryable: bool,
    /// The HTTP status an HTTP door answers the failure with, when it can
    /// still answer with one (not part of the `/ai` event).
    #[serde(skip)]
    pub status: u16,
}

/// `ai:error`: anything not tied to a live stream.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEvent {
    pub code: &'static str,
    pub error: String,
    pub details: Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectSuccess {
    pub previous_client_id: String,
    pub new_client_id: Arc<str>,
    pub resume_token: String,
    pub streams: Vec<ResumedStream>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumedStream {
    pub stream_id: Arc<str>,
    /// `streaming`, `completed`, `cancelled` or `failed`.
    pub state: &'static str,
    pub token_count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectFailed {
    pub previous_client_id: String,
    /// `unknown` or `forbidden`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackpressureState {
    Engaged,
    Relieved,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backpressure {
    pub state: BackpressureState,
    pub message: String,
    pub queue_size: usize,
    pub threshold: usize,
    pub policy: BackpressurePolicy,
    pub dropped_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAck {
    pub active_streams: usize,
    pub queue_size: usize,
    pub timestamp: u64,
}

#[cfg(test)]
mod tests {
    use super::super::parse_payload;
    use super::*;
    use serde_json::json;

    /// The first broken rule, from the payload's shape or, once that
    /// passes, from the rules that relate fields.
    fn err(v: Value) -> FieldError {
        let bounds = RequestBounds {
            max_prompt_chars: 100,
            max_tokens_limit: 100,
            max_messages: 10,
            max_messages_bytes: 1_000,
            max_agent_context_bytes: 1_000,
        };
        match parse_payload::<StreamRequest>(v) {
            Err(mut e) => e.0.remove(0),
            Ok(req) => req.check_bounds(&bounds).expect_err("a broken rule"),
        }
    }

    #[test]
    fn names_every_broken_field() {
        let all = parse_payload::<StreamRequest>(json!({"prompt": "", "temperature": 9.0}))
            .unwrap_err()
            .0;
        let names: Vec<_> = all.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["prompt", "temperature"]);
    }

    #[test]
    fn names_the_field_and_rule() {
        assert_eq!(err(json!({})).field, "prompt");
        assert_eq!(err(json!({"prompt": ""})).field, "prompt");
        assert_eq!(
            err(json!({"prompt": "x", "temperature": 3.0})).field,
            "temperature"
        );
        assert_eq!(
            err(json!({"prompt": "x", "streamId": "a b"})).field,
            "streamId"
        );
        assert_eq!(
            err(json!({"prompt": "x", "maxTokens": 0})).field,
            "maxTokens"
        );
        assert_eq!(err(json!([1])).field, "payload");
        let e = err(json!({"prompt": 5}));
        assert!(e.rule.contains("expected a string"), "{e:?}");
        let e = err(json!({"prompt": "x", "messages": [{"role": "robot", "content": "x"}]}));
        assert!(e.rule.contains("robot"), "{e:?}");
    }

    #[test]
    fn accepts_a_full_request() {
        let r: StreamRequest = parse_payload(json!({
            "prompt": "Explain", "messages": [{"role": "user", "content": "hi"}],
            "model": "m", "temperature": 0.7, "maxTokens": 10, "useOrchestrator": false,
            "agentContext": {"activeFile": "App.js"}, "streamId": "s_1.a:b-c", "extra": 1
        }))
        .unwrap();
        assert_eq!(r.stream_id.as_deref(), Some("s_1.a:b-c"));
        assert_eq!(r.max_tokens, Some(10));
    }
}
