//! What a stream has produced so far: its position, the deltas it turned
//! into events, the tool calls it assembled, the reasoning data to hand
//! back, what a drop policy dropped, and the reply a session keeps.
//!
//! Every delta (text, reasoning, a piece of a tool call's arguments) takes
//! the next position; [`Progress::delta`] turns an upstream chunk into the
//! stream event that carries it, naming a tool call by the id and name its
//! first piece gave (or an id of the gateway's own, for upstreams that give
//! none). Texts are kept only where something needs them: the whole text
//! under `drop` (for `fullResponse`), the reply when the stream is a
//! session's turn. Plain bookkeeping: no queue, no upstream.

use crate::clients::random_hex;
use crate::outbox::StreamEvent;
use crate::protocol::{
    MessageReasoning, ReasoningData, ReasoningDelta, Token, ToolCall, ToolCallDelta, Usage,
};
use crate::sessions::TurnReply;
use crate::upstream::Chunk;
use std::sync::Arc;

#[derive(Default)]
pub struct Progress {
    /// Upstream deltas seen (the stream's position, `tokenCount`).
    pub position: u64,
    /// Deltas the `drop` policy dropped.
    pub dropped: u64,
    /// The whole text, kept only under `drop` so that `ai:done` can carry
    /// `fullResponse` when something was dropped.
    pub full: Option<String>,
    /// The reply as the outbox took it, kept only for a session's turn.
    pub reply: Option<TurnReply>,
    /// `reply`'s text and reasoning lengths before the last piece, to
    /// take that piece back if the outbox did not deliver it.
    marks: (usize, usize),
    /// Tool calls by index, assembled from their pieces.
    calls: Vec<ToolCall>,
    reasoning: ReasoningData,
}

impl Progress {
    pub fn new(keep_full: bool, keep_reply: bool) -> Self {
        Self {
            full: keep_full.then(String::new),
            reply: keep_reply.then(TurnReply::default),
            ..Self::default()
        }
    }

    /// The event for a delta chunk at the next position, or `None` for a
    /// chunk that is not a delta (kept for the end instead).
    pub fn delta(
        &mut self,
        chunk: Chunk,
        stream: &Arc<str>,
        agent: &Option<Arc<str>>,
    ) -> Option<StreamEvent> {
        let next = self.position + 1;
        let event = match chunk {
            Chunk::Token(data) => {
                self.keep_text(&data, false);
                StreamEvent::Token(Token {
                    stream_id: stream.clone(),
                    data,
                    token_count: next,
                    agent: agent.clone(),
                    metadata: None,
                })
            }
            Chunk::Reasoning(data) => {
                self.keep_text(&data, true);
                StreamEvent::Reasoning(ReasoningDelta {
                    stream_id: stream.clone(),
                    data,
                    token_count: next,
                    metadata: None,
                })
            }
            Chunk::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let call = self.call(index, id, name);
                call.arguments.push_str(&arguments);
                let (id, name) = (call.id.as_str().into(), call.name.as_str().into());
                StreamEvent::ToolCall(Box::new(ToolCallDelta {
                    stream_id: stream.clone(),
                    index,
                    id,
                    name,
                    arguments_delta: arguments,
                    token_count: next,
                    metadata: None,
                }))
            }
            Chunk::ReasoningData(data) => {
                self.reasoning.signature = data.signature.or(self.reasoning.signature.take());
                self.reasoning.redacted = self.reasoning.redacted.take().or(data.redacted);
                return None;
            }
            Chunk::Done { .. } => return None,
        };
        self.position = next;
        Some(event)
    }

    /// The call at `index`, made on its first piece.
    fn call(&mut self, index: u32, id: Option<String>, name: Option<String>) -> &mut ToolCall {
        let i = index as usize;
        while self.calls.len() <= i {
            self.calls.push(ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.calls[i];
        if call.id.is_empty() {
            call.id = id.unwrap_or_else(|| format!("call_{}", random_hex(6)));
        }
        if call.name.is_empty()
            && let Some(name) = name
        {
            call.name = name;
        }
        call
    }

    fn keep_text(&mut self, data: &str, reasoning: bool) {
        if !reasoning && let Some(full) = self.full.as_mut() {
            full.push_str(data);
        }
        if let Some(reply) = self.reply.as_mut() {
            let thinking = reply
                .reasoning
                .get_or_insert_with(MessageReasoning::default);
            let thought = thinking.text.get_or_insert_with(String::new);
            self.marks = (reply.text.len(), thought.len());
            if reasoning {
                thought.push_str(data);
            } else {
                reply.text.push_str(data);
            }
        }
    }

    /// The last delta was not delivered (dropped, or the client was too
    /// slow): the session's reply does not keep it.
    pub fn undelivered(&mut self) {
        let (text, thought) = self.marks;
        if let Some(reply) = self.reply.as_mut() {
            reply.text.truncate(text);
            if let Some(t) = reply.reasoning.as_mut().and_then(|r| r.text.as_mut()) {
                t.truncate(thought);
            }
        }
    }

    /// The calls the model made, each whole.
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// The reasoning data to hand back, if the provider gave any.
    pub fn reasoning_data(&self) -> Option<ReasoningData> {
        (!self.reasoning.is_empty()).then(|| self.reasoning.clone())
    }

    /// The reply a session keeps, with the calls and the reasoning data.
    pub fn take_reply(&mut self) -> Option<TurnReply> {
        let mut reply = self.reply.take()?;
        reply.tool_calls = self.calls.clone();
        let data = &self.reasoning;
        match reply.reasoning.as_mut() {
            Some(r) => {
                r.signature = data.signature.clone();
                r.redacted = data.redacted.clone();
                if r.text.as_deref() == Some("") {
                    r.text = None;
                }
            }
            None if !data.is_empty() => {
                reply.reasoning = Some(MessageReasoning {
                    text: None,
                    signature: data.signature.clone(),
                    redacted: data.redacted.clone(),
                });
            }
            None => {}
        }
        if reply
            .reasoning
            .as_ref()
            .is_some_and(|r| *r == MessageReasoning::default())
        {
            reply.reasoning = None;
        }
        Some(reply)
    }

    /// Usage as far as known for a stream that ended early: the gateway's
    /// own count, marked estimated.
    pub fn estimated_usage(&self, prompt_chars: usize) -> Usage {
        Usage {
            prompt_tokens: Some(prompt_chars.div_ceil(4) as u64),
            completion_tokens: Some(self.position),
            estimated: true,
            ..Usage::default()
        }
    }
}
