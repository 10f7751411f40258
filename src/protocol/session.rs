//! The wire shapes of a conversation kept by the gateway (PROTOCOL.md part
//! 2, "Sessions"): a stored message, a session's summary and its full
//! record, the JSON bodies of the HTTP session endpoints, and the rule a
//! `sessionId` must follow.
//!
//! The session store (`crate::sessions`) keeps its messages in exactly
//! this shape, so a turn is rendered once, when it is appended, and a
//! remote store can keep the same JSON; the HTTP door serializes these
//! types as they are. Plain data: nothing here knows a store, a socket or
//! an upstream.

use super::agent::{Content, MessageReasoning, ToolCall};
use super::ai::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a turn ended, kept on the message that closes it (the reply, or the
/// prompt when there is no reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnStatus {
    Complete,
    Cancelled,
    Error,
}

/// One message of a session, as `GET /api/chat/sessions/{id}` shows it:
/// the assistant's tool calls (and the reasoning its provider wants back,
/// sent again next turn) and the tools' results are kept as turns too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMessage {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<MessageReasoning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TurnStatus>,
    pub timestamp: u64,
}

impl SessionMessage {
    /// The message as the upstream receives it.
    pub fn to_chat(&self) -> ChatMessage {
        ChatMessage {
            role: self.role,
            content: Content::Text(self.content.clone()),
            tool_calls: self.tool_calls.clone(),
            tool_call_id: self.tool_call_id.clone(),
            reasoning: self.reasoning.clone(),
        }
    }

    /// Bytes it holds, for the session's bounds.
    pub fn bytes(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        let reasoning = self.reasoning.as_ref().map_or(0, |r| {
            [&r.text, &r.signature, &r.redacted]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum()
        });
        self.content.len() + calls + reasoning
    }
}

/// A session in `GET /api/chat/sessions`: `messages` is how many it holds
/// now, `turns` how many turns it has had (older ones may have been
/// dropped by the bounds).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub id: Arc<str>,
    pub created_at: u64,
    pub updated_at: u64,
    pub turns: u64,
    pub messages: usize,
}

/// The body of `GET /api/chat/sessions`: the caller's sessions, most
/// recently updated first.
#[derive(Debug, Clone, Serialize)]
pub struct SessionList {
    pub sessions: Vec<SessionSummary>,
}

/// The body of `GET /api/chat/sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionDetail {
    pub id: Arc<str>,
    pub created_at: u64,
    pub updated_at: u64,
    pub turns: u64,
    pub messages: Vec<SessionMessage>,
}

/// A `sessionId` (and a `streamId`): 1..=64 of `[A-Za-z0-9_.:-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_render_as_the_protocol_writes_them() {
        let m = SessionMessage {
            role: Role::Assistant,
            content: "hi".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: None,
            status: Some(TurnStatus::Cancelled),
            timestamp: 7,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"role": "assistant", "content": "hi", "status": "cancelled", "timestamp": 7})
        );
    }

    #[test]
    fn ids_follow_the_stream_id_rule() {
        assert!(is_valid_id("chat-1.a:b_c"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id(&"x".repeat(65)));
    }
}
