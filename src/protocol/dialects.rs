//! The wire contracts of the earlier designs' frontends (PROTOCOL.md part
//! 3), kept so that those frontends connect unchanged: the `llm:*`
//! dialect of the JWT streaming guide (and its REST `POST /llm/chat`), and
//! the `chat_*` dialect of the Flask-SocketIO chat designs (with the REST +
//! SSE report's `chat_stream`).
//!
//! Client payloads are read loosely (unknown fields ignored) and turned
//! into the engine's [`StreamRequest`] here; the field names in errors are
//! the frontends' own (`messages[2].content`, `session_id`). Server
//! payloads are `Serialize` structs whose fields are in the order those
//! designs print them, borrowing from the stream's events so that a token
//! costs one serialization. Nothing here knows a socket, a queue or a
//! provider: which providers exist is asked of the caller.

use super::ai::{ChatMessage, Role, StreamRequest, Usage};
use super::session::is_valid_id;
use super::validate::FieldError;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use validator::Validate;

/// Event names of both dialects, as they appear on the wire.
pub mod event {
    pub const LLM_CHAT_STREAM: &str = "llm:chat:stream";
    pub const LLM_CANCEL: &str = "llm:stream:cancel";
    pub const LLM_START: &str = "llm:stream:start";
    pub const LLM_TOKEN: &str = "llm:stream:token";
    pub const LLM_DONE: &str = "llm:stream:done";
    pub const LLM_ERROR: &str = "llm:stream:error";
    pub const LLM_CANCELLED: &str = "llm:stream:cancelled";

    pub const CONNECTED: &str = "connected";
    pub const CHAT_MESSAGE: &str = "chat_message";
    pub const CHAT_STREAM: &str = "chat_stream";
    pub const CANCEL_MESSAGE: &str = "cancel_message";
    pub const CHAT_CHUNK: &str = "chat_chunk";
    pub const CHAT_COMPLETE: &str = "chat_complete";
    pub const CHAT_TOKEN: &str = "chat_token";
    pub const CHAT_DONE: &str = "chat_done";
    pub const CHAT_ERROR: &str = "chat_error";
    /// `chat_error`'s alias, for the frontends that listen to that name.
    pub const ERROR: &str = "error";
}

// ---------------------------------------------------------------------------
// Ids the frontends choose

/// An id a frontend chose (`sessionId`, `session_id`): kept as it was sent,
/// so that every event echoes it unchanged (a frontend comparing with `===`
/// gets its number back as a number), and as text, which is how the
/// gateway uses it (a number is taken as its decimal string).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientId {
    pub sent: Value,
    pub text: String,
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id;
        impl Visitor<'_> for Id {
            type Value = ClientId;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ClientId, E> {
                Ok(ClientId {
                    sent: Value::from(s),
                    text: s.to_string(),
                })
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ClientId, E> {
                Ok(number(n.into()))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ClientId, E> {
                Ok(number(n.into()))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<ClientId, E> {
                serde_json::Number::from_f64(n)
                    .map(number)
                    .ok_or_else(|| E::custom("must be a finite number"))
            }
        }
        d.deserialize_any(Id)
    }
}

/// As it was sent (validator reports the value of a broken field).
impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sent.serialize(s)
    }
}

fn number(n: serde_json::Number) -> ClientId {
    ClientId {
        text: n.to_string(),
        sent: Value::Number(n),
    }
}

fn validate_stream_key(id: &ClientId) -> Result<(), validator::ValidationError> {
    if (1..=128).contains(&id.text.chars().count()) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("session_id")
            .with_message("must be 1..=128 characters".into()))
    }
}

fn validate_chat_session(id: &ClientId) -> Result<(), validator::ValidationError> {
    if is_valid_id(&id.text) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("session_id")
            .with_message("must be a number or 1..=64 characters of [A-Za-z0-9_.:-]".into()))
    }
}

// ---------------------------------------------------------------------------
// The `llm:*` dialect: client -> server

/// The guide's provider names that are not configured names: `claude` is
/// the `anthropic` provider. (`gemini` and `deepseek` are providers
/// configured under those very names.)
const ALIASES: &[(&str, &str)] = &[("claude", "anthropic")];

/// The provider a guide's frontend means by `name`: the configured provider
/// of that name, else the one its alias names when that is configured,
/// else `name` itself, which the engine then refuses as not configured.
pub fn provider_for(name: &str, configured: impl Fn(&str) -> bool) -> String {
    if configured(name) {
        return name.to_string();
    }
    ALIASES
        .iter()
        .find(|(alias, target)| *alias == name && configured(target))
        .map_or(name, |(_, target)| target)
        .to_string()
}

/// `llm:chat:stream` on the socket (where `sessionId` is required) and the
/// body of `POST /llm/chat` (where `stream` is read and `sessionId` is not).
/// The stream goes straight to `provider` with the messages as they are:
/// the last one, a `user` message, is the prompt.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct LlmChatRequest {
    #[validate(custom(function = "validate_stream_key"))]
    pub session_id: Option<ClientId>,
    #[validate(length(min = 1, max = 64, message = "must be 1..=64 characters"))]
    pub provider: String,
    #[validate(length(min = 1, message = "must hold at least one message"))]
    pub messages: Vec<ChatMessage>,
    #[validate(length(min = 1, max = 128, message = "must be 1..=128 characters"))]
    pub model: Option<String>,
    #[validate(range(min = 0.0, max = 2.0, message = "must be between 0.0 and 2.0"))]
    pub temperature: Option<f64>,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub stream: bool,
}

impl LlmChatRequest {
    /// The field that holds the prompt (the last message's content), as the
    /// frontend names it, for errors about the prompt.
    pub fn prompt_field(&self) -> String {
        format!(
            "messages[{}].content",
            self.messages.len().saturating_sub(1)
        )
    }

    /// The engine's request, straight to `provider` (already resolved with
    /// [`provider_for`]): the last message is the prompt and must be a
    /// user's, the ones before it the conversation.
    pub fn into_stream_request(self, provider: String) -> Result<StreamRequest, FieldError> {
        let field = self.prompt_field();
        let mut history = self.messages;
        let prompt = match history.pop() {
            Some(m) if m.role == Role::User && !m.content.text().is_empty() => {
                m.content.text().into_owned()
            }
            Some(m) if m.role == Role::User => {
                return Err(FieldError::new(field, "must be a non-empty string"));
            }
            _ => {
                return Err(FieldError::new(
                    "messages",
                    "must end with a user message (the prompt)",
                ));
            }
        };
        Ok(StreamRequest {
            prompt: Some(prompt),
            messages: history,
            provider: Some(provider),
            model: self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            use_orchestrator: Some(false),
            ..StreamRequest::default()
        })
    }
}

/// `llm:stream:cancel`.
#[derive(Debug, Clone, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct LlmCancelRequest {
    #[validate(custom(function = "validate_stream_key"))]
    pub session_id: ClientId,
}

// ---------------------------------------------------------------------------
// The `llm:*` dialect: server -> client

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmStart<'a> {
    pub session_id: &'a Value,
    pub provider: &'a str,
    pub model: &'a str,
    pub timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmToken<'a> {
    pub session_id: &'a Value,
    pub token: &'a str,
    pub timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmDone<'a> {
    pub session_id: &'a Value,
    pub provider: &'a str,
    pub full_response: &'a str,
    pub token_count: u64,
    pub timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmError<'a> {
    pub session_id: &'a Value,
    pub error: &'a str,
    pub timestamp: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmCancelled<'a> {
    pub session_id: &'a Value,
    pub timestamp: u64,
}

/// `POST /llm/chat` with `stream: false`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmChatReply<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub content: &'a str,
    pub token_count: u64,
    pub usage: Option<&'a Usage>,
    pub finish_reason: &'a str,
}

// ---------------------------------------------------------------------------
// The `chat_*` dialect

/// `chat_message` and `chat_stream`; other fields (`workspace_id`,
/// `rag_type`, …) are ignored.
#[derive(Debug, Clone, Deserialize, Validate)]
pub struct ChatMessageRequest {
    #[validate(length(min = 1, message = "must be a non-empty string"))]
    pub message: String,
    #[validate(custom(function = "validate_chat_session"))]
    pub session_id: Option<ClientId>,
}

impl ChatMessageRequest {
    /// The engine's request, routed by the orchestrator as `ai:stream` is
    /// by default; `session_id` names the gateway's session.
    pub fn into_stream_request(self) -> StreamRequest {
        StreamRequest {
            prompt: Some(self.message),
            session_id: self.session_id.map(|id| id.text),
            use_orchestrator: Some(true),
            ..StreamRequest::default()
        }
    }
}

/// `cancel_message`: no payload, or the session whose stream to cancel.
#[derive(Debug, Clone, Default, Deserialize, Validate)]
pub struct CancelMessageRequest {
    #[validate(custom(function = "validate_chat_session"))]
    pub session_id: Option<ClientId>,
}

/// `connected`, the greeting of the default namespace.
#[derive(Debug, Serialize)]
pub struct Greeting {
    pub message: &'static str,
    /// ISO 8601, as those designs send it.
    pub timestamp: String,
}

#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub chunk: &'a str,
    pub session_id: &'a Value,
}

#[derive(Debug, Serialize)]
pub struct ChatComplete<'a> {
    pub session_id: &'a Value,
    pub message_id: &'a str,
    pub full_response: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ChatToken<'a> {
    pub token: &'a str,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct ChatDone<'a> {
    pub session_id: &'a Value,
    pub tokens: u64,
    pub duration: u64,
    #[serde(rename = "tokensPerSecond")]
    pub tokens_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct ChatError<'a> {
    pub error: &'a str,
    pub session_id: &'a Value,
}

/// `error`, `chat_error`'s alias.
#[derive(Debug, Serialize)]
pub struct ErrorAlias<'a> {
    pub error: &'a str,
}

#[cfg(test)]
mod tests {
    use super::super::parse_payload;
    use super::super::validate::{FieldNames, parse_payload_as};
    use super::*;
    use serde_json::json;

    #[test]
    fn aliases_apply_only_when_the_name_is_not_configured() {
        let configured = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
        assert_eq!(
            provider_for("claude", configured(&["anthropic"])),
            "anthropic"
        );
        assert_eq!(provider_for("claude", configured(&["claude"])), "claude");
        assert_eq!(provider_for("claude", configured(&["ollama"])), "claude");
        assert_eq!(provider_for("gemini", configured(&["gemini"])), "gemini");
    }

    #[test]
    fn the_last_user_message_is_the_prompt() {
        let r: LlmChatRequest = parse_payload(json!({
            "sessionId": "s1", "provider": "ollama", "maxTokens": 5,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "again"}]
        }))
        .unwrap();
        let s = r.into_stream_request("ollama".into()).unwrap();
        assert_eq!(s.prompt.as_deref(), Some("again"));
        assert_eq!(s.messages.len(), 3);
        assert_eq!(s.messages[2].content, "hello".into());
        assert_eq!(s.use_orchestrator, Some(false));
        assert_eq!(s.max_tokens, Some(5));
    }

    #[test]
    fn llm_errors_name_the_frontends_fields() {
        let err = |v: Value| {
            let r: LlmChatRequest = parse_payload(v).unwrap();
            r.into_stream_request("ollama".into()).unwrap_err()
        };
        let e = err(json!({"provider": "p", "messages": [{"role": "assistant", "content": "x"}]}));
        assert_eq!(e.field, "messages");
        let e = err(json!({"provider": "p", "messages": [{"role": "user", "content": ""}]}));
        assert_eq!(e.field, "messages[0].content");
        let e =
            parse_payload::<LlmChatRequest>(json!({"provider": "p", "messages": []})).unwrap_err();
        assert_eq!(e.0[0].field, "messages");
        let e = parse_payload::<LlmChatRequest>(json!({"messages": []})).unwrap_err();
        assert_eq!(e.0[0].field, "provider");
    }

    #[test]
    fn a_numeric_session_id_is_its_decimal_string_and_echoed_as_a_number() {
        let r: ChatMessageRequest =
            parse_payload_as(json!({"message": "hi", "session_id": 42}), FieldNames::AsIs).unwrap();
        let id = r.session_id.clone().unwrap();
        assert_eq!(id.sent, json!(42));
        assert_eq!(r.into_stream_request().session_id.as_deref(), Some("42"));
        let e = parse_payload_as::<ChatMessageRequest>(
            json!({"message": "hi", "session_id": true}),
            FieldNames::AsIs,
        )
        .unwrap_err();
        assert_eq!(e.0[0].field, "session_id");
        assert!(e.0[0].rule.contains("a string or a number"), "{:?}", e.0[0]);
        let e = parse_payload_as::<ChatMessageRequest>(
            json!({"message": "hi", "session_id": "a b"}),
            FieldNames::AsIs,
        )
        .unwrap_err();
        assert_eq!(e.0[0].field, "session_id");
    }

    #[test]
    fn payload_fields_go_out_in_the_designs_order() {
        let sid = json!("s1");
        let done = LlmDone {
            session_id: &sid,
            provider: "anthropic",
            full_response: "Bonjour",
            token_count: 2,
            timestamp: 7,
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"sessionId":"s1","provider":"anthropic","fullResponse":"Bonjour","tokenCount":2,"timestamp":7}"#
        );
        let n = json!(42);
        let complete = ChatComplete {
            session_id: &n,
            message_id: "s_1",
            full_response: "ok",
        };
        assert_eq!(
            serde_json::to_string(&complete).unwrap(),
            r#"{"session_id":42,"message_id":"s_1","full_response":"ok"}"#
        );
    }
}
