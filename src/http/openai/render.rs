//! A stream's events as OpenAI's answers: `chat.completion.chunk` events
//! (`stream: true`) or one `chat.completion` (`stream: false`).
//!
//! Chunks come exactly as OpenAI sends them: a first delta with `role`,
//! then content deltas, `reasoning_content` deltas and `tool_calls` deltas
//! by index (`id`, `type` and the name on a call's first piece only), a
//! final chunk with `finish_reason`, a usage chunk with no choices when the
//! request asked for one (every other chunk then carries `usage: null`),
//! then `data: [DONE]`. A failure after the first chunk is OpenAI's error
//! object as an event, and the body ends.

use super::completions::{Served, failure};
use crate::app::App;
use crate::http::error::ApiError;
use crate::http::stream::EventFeed;
use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::openai::{
    AssistantMessage, ChunkChoice, Completion, CompletionChoice, CompletionChunk,
    CompletionTokensDetails, CompletionUsage, Delta, DeltaFunction, DeltaToolCall,
    PromptTokensDetails, WholeFunction, WholeToolCall,
};
use crate::protocol::{CancelReason, Done, Usage};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// `stream: true`: chunks as OpenAI sends them, then `[DONE]`.
pub fn stream_response(
    app: &App,
    feed: EventFeed,
    served: Served,
    include_usage: bool,
) -> Response {
    let mut render = ChunkRender {
        id: served.id,
        model: served.model,
        created: served.created,
        include_usage,
        pending: VecDeque::new(),
        named: Vec::new(),
        finished: false,
    };
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
        ..Delta::default()
    };
    render.push(render.chunk(role, None));
    render.render(&served.first);
    let events =
        futures_util::stream::unfold((feed, render), |(mut feed, mut render)| async move {
            loop {
                if let Some(event) = render.pending.pop_front() {
                    return Some((Ok::<_, Infallible>(event), (feed, render)));
                }
                if render.finished {
                    return None;
                }
                feed.next(|item| render.render(item)).await?;
            }
        });
    let every = Duration::from_millis(app.config.http.sse_keepalive_ms);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(every).text("keep-alive"))
        .into_response()
}

/// Turns a stream's events into `chat.completion.chunk` events.
struct ChunkRender {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    pending: VecDeque<Event>,
    /// Tool calls (by index) whose first piece, with id and name, went out.
    named: Vec<u32>,
    finished: bool,
}

impl ChunkRender {
    fn chunk<'a>(
        &'a self,
        delta: Delta<'a>,
        finish: Option<&'a str>,
    ) -> Result<Event, axum::Error> {
        Event::default().json_data(CompletionChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: self.include_usage.then_some(None),
        })
    }

    fn push(&mut self, event: Result<Event, axum::Error>) {
        match event {
            Ok(e) => self.pending.push_back(e),
            Err(e) => tracing::error!(error = %e, "chunk did not serialize"),
        }
    }

    /// Queue the events `item` stands for.
    fn render(&mut self, item: &Outbound) {
        let Outbound::Stream(e) = item else { return };
        let delta = |content, reasoning_content| Delta {
            content,
            reasoning_content,
            ..Delta::default()
        };
        match e {
            StreamEvent::Token(t) => self.push(self.chunk(delta(Some(&t.data), None), None)),
            StreamEvent::Reasoning(r) => self.push(self.chunk(delta(None, Some(&r.data)), None)),
            StreamEvent::ToolCall(c) => {
                let first = !self.named.contains(&c.index);
                let call = DeltaToolCall {
                    index: c.index,
                    id: first.then_some(&*c.id),
                    kind: first.then_some("function"),
                    function: DeltaFunction {
                        name: first.then_some(&*c.name),
                        arguments: &c.arguments_delta,
                    },
                };
                let d = Delta {
                    tool_calls: vec![call],
                    ..Delta::default()
                };
                let event = self.chunk(d, None);
                self.push(event);
                if first {
                    self.named.push(c.index);
                }
            }
            StreamEvent::Done(d) => self.done(d),
            StreamEvent::Cancelled(c) => {
                let code = if c.reason == CancelReason::Timeout {
                    "timeout"
                } else {
                    "cancelled"
                };
                self.error(code, &format!("stream cancelled ({})", c.reason.as_str()));
            }
            StreamEvent::Failed(f) => self.error(f.code, &f.error),
            StreamEvent::Start(_) | StreamEvent::Complete(_) => {}
        }
    }

    fn done(&mut self, d: &Done) {
        let finish = self.chunk(Delta::default(), Some(&d.finish_reason));
        self.push(finish);
        if self.include_usage {
            let last = Event::default().json_data(CompletionChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                system_fingerprint: None,
                choices: Vec::new(),
                usage: Some(Some(usage_of(d.usage.as_ref(), d.total_tokens))),
            });
            self.push(last);
        }
        self.pending.push_back(Event::default().data("[DONE]"));
        self.finished = true;
    }

    /// An error after the first chunk: OpenAI's error object as an event,
    /// then the body ends (the SDKs raise it).
    fn error(&mut self, code: &'static str, message: &str) {
        let body = serde_json::json!({ "error": {
            "message": message, "type": "api_error", "param": null, "code": code } });
        self.push(Event::default().json_data(body));
        self.finished = true;
    }
}

/// The upstream's counts, or the gateway's own where it gave none.
fn usage_of(usage: Option<&Usage>, positions: u64) -> CompletionUsage {
    let prompt = usage.and_then(|u| u.prompt_tokens).unwrap_or(0);
    let completion = usage.and_then(|u| u.completion_tokens).unwrap_or(positions);
    CompletionUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        prompt_tokens_details: usage
            .and_then(|u| u.cache_read_tokens)
            .map(|cached_tokens| PromptTokensDetails { cached_tokens }),
        completion_tokens_details: usage
            .and_then(|u| u.reasoning_tokens)
            .map(|reasoning_tokens| CompletionTokensDetails { reasoning_tokens }),
    }
}

/// `stream: false`: the whole answer as one `chat.completion`.
pub async fn whole_response(mut feed: EventFeed, served: Served) -> Result<Response, ApiError> {
    let (mut text, mut thinking) = (String::new(), String::new());
    let mut next = Some(served.first.clone());
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => {
                let item = feed.next(|item| match item {
                    Outbound::Stream(StreamEvent::Token(t)) => {
                        text.push_str(&t.data);
                        None
                    }
                    Outbound::Stream(StreamEvent::Reasoning(r)) => {
                        thinking.push_str(&r.data);
                        None
                    }
                    Outbound::Stream(StreamEvent::ToolCall(_)) => None,
                    other => Some(other.clone()),
                });
                match item.await {
                    Some(Some(item)) => item,
                    Some(None) => continue,
                    None => return Err(failure("internal", "stream ended before it finished")),
                }
            }
        };
        match item {
            Outbound::Stream(StreamEvent::Token(t)) => text.push_str(&t.data),
            Outbound::Stream(StreamEvent::Reasoning(r)) => thinking.push_str(&r.data),
            Outbound::Stream(StreamEvent::Done(d)) => {
                return Ok(completion(&served, &d, &text, &thinking));
            }
            Outbound::Stream(StreamEvent::Failed(f)) => return Err(failure(f.code, &f.error)),
            Outbound::Stream(StreamEvent::Cancelled(c)) => {
                let code = if c.reason == CancelReason::Timeout {
                    "timeout"
                } else {
                    "cancelled"
                };
                return Err(failure(
                    code,
                    &format!("stream cancelled ({})", c.reason.as_str()),
                ));
            }
            _ => {}
        }
    }
}

fn completion(served: &Served, d: &Done, text: &str, thinking: &str) -> Response {
    let tool_calls = d
        .tool_calls
        .iter()
        .map(|c| WholeToolCall {
            id: &c.id,
            kind: "function",
            function: WholeFunction {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect::<Vec<_>>();
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    let body = Completion {
        id: &served.id,
        object: "chat.completion",
        created: served.created,
        model: &served.model,
        system_fingerprint: None,
        choices: vec![CompletionChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: None,
                reasoning_content: (!thinking.is_empty()).then_some(thinking),
                tool_calls,
            },
            logprobs: None,
            finish_reason: &d.finish_reason,
        }],
        usage: usage_of(d.usage.as_ref(), d.total_tokens),
    };
    Json(body).into_response()
}
