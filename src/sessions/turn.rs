//! [`Turn`]: one exchange of a session, as a finished stream hands it to
//! the store, and the messages it is kept as.
//!
//! A turn's input is the user's prompt, or the tools' results the client
//! sent back (an agent's loop), or both. The reply is what the client
//! received (the text up to the stream's terminal position, the tool calls
//! of a completed turn, the reasoning the provider wants back); a turn with
//! no reply keeps only its input. The turn's status goes on its last
//! message, so that a reader of the session sees how each turn ended. Plain
//! data; no store, no stream.

use crate::protocol::{ChatMessage, MessageReasoning, Role, SessionMessage, ToolCall, TurnStatus};

/// One exchange: its input and the assistant's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Tool results first (they answer the previous turn's calls), then
    /// the prompt.
    pub input: Vec<ChatMessage>,
    /// When the stream was admitted (ms since the epoch).
    pub asked_at: u64,
    /// The reply as the client received it; `None` when nothing arrived.
    pub reply: Option<TurnReply>,
    pub status: TurnStatus,
    /// When the stream ended (ms since the epoch).
    pub ended_at: u64,
}

/// The assistant's side of a turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnReply {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub reasoning: Option<MessageReasoning>,
}

impl TurnReply {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.tool_calls.is_empty() && self.reasoning.is_none()
    }
}

impl Turn {
    /// The messages this turn is kept as: its input, then the reply when
    /// there is one; the status on the last of them.
    pub fn into_messages(self) -> Vec<SessionMessage> {
        let mut out: Vec<SessionMessage> = self
            .input
            .into_iter()
            .map(|m| SessionMessage {
                role: m.role,
                content: m.content.text().into_owned(),
                tool_calls: Vec::new(),
                tool_call_id: m.tool_call_id,
                reasoning: None,
                status: None,
                timestamp: self.asked_at,
            })
            .collect();
        if let Some(reply) = self.reply.filter(|r| !r.is_empty()) {
            out.push(SessionMessage {
                role: Role::Assistant,
                content: reply.text,
                tool_calls: reply.tool_calls,
                tool_call_id: None,
                reasoning: reply.reasoning,
                status: None,
                timestamp: self.ended_at,
            });
        }
        if let Some(last) = out.last_mut() {
            last.status = Some(self.status);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(reply: Option<&str>, status: TurnStatus) -> Turn {
        Turn {
            input: vec![ChatMessage::text(Role::User, "q")],
            asked_at: 1,
            reply: reply.map(|text| TurnReply {
                text: text.into(),
                ..TurnReply::default()
            }),
            status,
            ended_at: 2,
        }
    }

    #[test]
    fn the_status_goes_on_the_last_message() {
        let m = turn(Some("part"), TurnStatus::Cancelled).into_messages();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].role, m[0].status), (Role::User, None));
        assert_eq!(
            (m[1].role, m[1].content.as_str(), m[1].status),
            (Role::Assistant, "part", Some(TurnStatus::Cancelled))
        );
        assert_eq!(m[1].timestamp, 2);
    }

    #[test]
    fn no_reply_keeps_only_the_prompt() {
        for reply in [None, Some("")] {
            let m = turn(reply, TurnStatus::Error).into_messages();
            assert_eq!(m.len(), 1);
            assert_eq!(
                (m[0].role, m[0].status),
                (Role::User, Some(TurnStatus::Error))
            );
        }
    }
}
