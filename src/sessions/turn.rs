//! [`Turn`]: one exchange of a session, as a finished stream hands it to
//! the store, and the messages it is kept as.
//!
//! The reply is the text the client received (the deltas up to the
//! stream's terminal position); a turn with no reply text keeps only the
//! prompt. The turn's status goes on its last message, so that a reader of
//! the session sees how each turn ended. Plain data; no store, no stream.

use crate::protocol::{Role, SessionMessage, TurnStatus};

/// One exchange: the user's prompt and the assistant's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub prompt: String,
    /// When the stream was admitted (ms since the epoch).
    pub asked_at: u64,
    /// The reply as the client received it; `None` or empty when no token
    /// arrived.
    pub reply: Option<String>,
    pub status: TurnStatus,
    /// When the stream ended (ms since the epoch).
    pub ended_at: u64,
}

impl Turn {
    /// The messages this turn is kept as: the prompt, then the reply when
    /// there is one; the status on the last of them.
    pub fn into_messages(self) -> Vec<SessionMessage> {
        let message = |role, content, status, timestamp| SessionMessage {
            role,
            content,
            tool_calls: None,
            tool_call_id: None,
            status,
            timestamp,
        };
        match self.reply.filter(|r| !r.is_empty()) {
            Some(reply) => vec![
                message(Role::User, self.prompt, None, self.asked_at),
                message(Role::Assistant, reply, Some(self.status), self.ended_at),
            ],
            None => vec![message(
                Role::User,
                self.prompt,
                Some(self.status),
                self.asked_at,
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(reply: Option<&str>, status: TurnStatus) -> Turn {
        Turn {
            prompt: "q".into(),
            asked_at: 1,
            reply: reply.map(str::to_owned),
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
