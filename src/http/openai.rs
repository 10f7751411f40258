//! The OpenAI-compatible door: `POST /v1/chat/completions` (streaming and
//! not) and `GET /v1/models`, so that any tool speaking OpenAI's API (the
//! official SDKs, IDE extensions that take a base URL) uses the gateway
//! unchanged.
//!
//! `model` picks the route: `"<provider>/<model>"` (a configured provider),
//! `"agent:<name>"`, `"streamgate/auto"` (the orchestrator decides), or a
//! bare model name for the default provider. The conversation's last
//! message is the prompt. The request is opened as an HTTP stream
//! ([`super::stream`]); the response waits for the stream's start (which
//! names the provider that serves, for `x-streamgate-provider`) and its
//! first event, so a failure before any text is an HTTP error in OpenAI's
//! shape, with OpenAI's statuses. Then `stream: true` answers with
//! `chat.completion.chunk` events and `data: [DONE]` ([`ChunkRender`]),
//! `stream: false` with one `chat.completion`.

use super::caller::{caller, json_body};
use super::error::{ApiError, Shape};
use super::stream::{self, EventFeed, OnClose};
use crate::app::App;
use crate::error::{GatewayError, ProviderError};
use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::openai::{
    AssistantMessage, ChatCompletionRequest, ChunkChoice, Completion, CompletionChoice,
    CompletionChunk, CompletionUsage, Content, Delta, Message, Model, ModelList,
};
use crate::protocol::{ChatMessage, FieldError, Invalid, Role, StreamRequest, Usage, now_ms};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
}

/// A gateway error as `/v1` answers it: unknown models are 404s.
fn api_error(e: &GatewayError) -> ApiError {
    let err = ApiError::new(e, Shape::OpenAi);
    match e {
        GatewayError::UnknownAgent { .. }
        | GatewayError::UnknownProvider { .. }
        | GatewayError::ModelNotAllowed { .. }
        | GatewayError::Provider(ProviderError::Rejected { status: 404, .. }) => {
            err.with_status(404, "model_not_found")
        }
        _ => err,
    }
}

async fn completions(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let answered = async {
        let who = caller(&app, &headers, Shape::OpenAi)?;
        let req: ChatCompletionRequest = json_body(&headers, &body, Shape::OpenAi)?;
        let (streaming, include_usage) = (
            req.stream,
            req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        );
        let sreq = stream_request(&app, req)?;
        let (id, mut feed) = stream::open(&app, who.0, sreq, OnClose::Cancel)
            .await
            .map_err(|e| api_error(&e))?;
        let served = first_events(&mut feed).await?;
        let provider = served.provider.clone();
        let mut response = if streaming {
            stream_response(&app, feed, served, include_usage)
        } else {
            whole_response(feed, served).await?
        };
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert("x-streamgate-stream-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&provider) {
            h.insert("x-streamgate-provider", v);
        }
        Ok::<_, ApiError>(response)
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// The engine's request for an OpenAI body: the route from `model`, the
/// prompt from the last message, the rest as history.
fn stream_request(app: &App, req: ChatCompletionRequest) -> Result<StreamRequest, ApiError> {
    let invalid = |e: Invalid| api_error(&GatewayError::InvalidRequest(e));
    let (prompt, history) = conversation(req.messages).map_err(|e| invalid(e.into()))?;
    let mut out = StreamRequest {
        prompt,
        messages: history,
        temperature: req.temperature,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop: req.stop.map(|s| s.into_vec()).unwrap_or_default(),
        use_orchestrator: Some(false),
        ..StreamRequest::default()
    };
    let model = req.model;
    if model == "streamgate/auto" {
        out.use_orchestrator = Some(true);
    } else if let Some(agent) = model.strip_prefix("agent:") {
        out.agent = Some(agent.to_string());
    } else if let Some((provider, m)) = model.split_once('/')
        && app.providers.get(provider).is_some()
    {
        out.provider = Some(provider.to_string());
        out.model = Some(m.to_string());
    } else {
        // A bare name (which may itself hold a '/'): the default provider.
        out.model = Some(model);
    }
    Ok(out)
}

/// The prompt (the last message, a user's) and the messages before it.
fn conversation(messages: Vec<Message>) -> Result<(String, Vec<ChatMessage>), FieldError> {
    let mut history = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                let rule = format!("must be system, developer, user or assistant (got {other:?})");
                return Err(FieldError::new(format!("messages[{i}].role"), rule));
            }
        };
        history.push(ChatMessage {
            role,
            content: text_of(m.content, i)?,
        });
    }
    match history.pop() {
        Some(last) if last.role == Role::User => Ok((last.content, history)),
        Some(_) => Err(FieldError::new("messages", "must end with a user message")),
        None => Err(FieldError::new(
            "messages",
            "must hold at least one message",
        )),
    }
}

/// A message's text: the string, or its text parts joined.
fn text_of(content: Option<Content>, i: usize) -> Result<String, FieldError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.into_iter().enumerate() {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        let field = format!("messages[{i}].content[{j}].type");
                        let rule = format!("must be a text part with text (got {kind:?})");
                        return Err(FieldError::new(field, rule));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// Who served, and the first event after the start (held for the body).
struct Served {
    provider: Arc<str>,
    /// `provider/model`, as responses name the model.
    model: String,
    created: u64,
    id: String,
    first: Outbound,
}

/// Wait for the start and the event after it; a failure before any text
/// is an HTTP error.
async fn first_events(feed: &mut EventFeed) -> Result<Served, ApiError> {
    let gone = || {
        api_error(&GatewayError::Internal(
            "stream ended before it started".into(),
        ))
    };
    let (provider, model, id) = loop {
        let start = feed.next(|item| match item {
            Outbound::Stream(StreamEvent::Start(s)) => {
                Some((s.provider.clone(), s.model.clone(), s.stream_id.clone()))
            }
            _ => None,
        });
        if let Some(found) = start.await.ok_or_else(gone)? {
            break found;
        }
    };
    let first = feed.next(Clone::clone).await.ok_or_else(gone)?;
    if let Outbound::Stream(StreamEvent::Failed(f)) = &first {
        let err = failure(f.code, &f.error);
        return Err(match f.status {
            404 => err.with_status(404, "model_not_found"),
            _ => err,
        });
    }
    Ok(Served {
        model: format!("{provider}/{model}"),
        provider,
        created: now_ms() / 1000,
        id: format!("chatcmpl-{id}"),
        first,
    })
}

/// A stream's failure, as the error the SDKs expect for its code.
fn failure(code: &'static str, message: &str) -> ApiError {
    ApiError::of_stream(code, message, true, Shape::OpenAi)
}

/// `stream: true`: chunks as OpenAI sends them, then `[DONE]`.
fn stream_response(app: &App, feed: EventFeed, served: Served, include_usage: bool) -> Response {
    let mut render = ChunkRender {
        id: served.id,
        model: served.model,
        created: served.created,
        include_usage,
        pending: VecDeque::new(),
        finished: false,
    };
    let role = Delta {
        role: Some("assistant"),
        content: Some(""),
    };
    let first = Event::default().json_data(render.chunk(role, None));
    render.pending.extend(first.ok());
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
    finished: bool,
}

impl ChunkRender {
    fn chunk<'a>(&'a self, delta: Delta<'a>, finish: Option<&'a str>) -> CompletionChunk<'a> {
        CompletionChunk {
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
        }
    }

    /// Queue the events `item` stands for.
    fn render(&mut self, item: &Outbound) {
        let Outbound::Stream(e) = item else { return };
        match e {
            StreamEvent::Token(t) => {
                let content = Some(t.data.as_str());
                let chunk = self.chunk(
                    Delta {
                        role: None,
                        content,
                    },
                    None,
                );
                let event = Event::default().json_data(&chunk);
                match event {
                    Ok(e) => self.pending.push_back(e),
                    Err(e) => tracing::error!(error = %e, "chunk did not serialize"),
                }
            }
            StreamEvent::Done(d) => {
                let finish = d.finish_reason.clone();
                let chunk = self.chunk(Delta::default(), Some(&finish));
                let event = Event::default().json_data(&chunk);
                if let Ok(e) = event {
                    self.pending.push_back(e);
                }
                if self.include_usage {
                    let usage = usage_of(d.usage.as_ref(), d.total_tokens);
                    let mut last = self.chunk(Delta::default(), None);
                    last.choices.clear();
                    last.usage = Some(Some(usage));
                    if let Ok(e) = Event::default().json_data(&last) {
                        self.pending.push_back(e);
                    }
                }
                self.pending.push_back(Event::default().data("[DONE]"));
                self.finished = true;
            }
            StreamEvent::Cancelled(c) => {
                let message = format!("stream cancelled ({})", c.reason.as_str());
                self.error("cancelled", &message);
            }
            StreamEvent::Failed(f) => self.error(f.code, &f.error),
            StreamEvent::Start(_) | StreamEvent::Complete(_) => {}
        }
    }

    /// An error after the first chunk: OpenAI's error object as an event,
    /// then the body ends (the SDKs raise it).
    fn error(&mut self, code: &'static str, message: &str) {
        let body = serde_json::json!({ "error": {
            "message": message, "type": "api_error", "param": null, "code": code } });
        if let Ok(e) = Event::default().json_data(body) {
            self.pending.push_back(e);
        }
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
    }
}

/// `stream: false`: the whole answer as one `chat.completion`.
async fn whole_response(mut feed: EventFeed, served: Served) -> Result<Response, ApiError> {
    let mut text = String::new();
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
            Outbound::Stream(StreamEvent::Done(d)) => {
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
                            content: &text,
                            refusal: None,
                        },
                        logprobs: None,
                        finish_reason: &d.finish_reason,
                    }],
                    usage: usage_of(d.usage.as_ref(), d.total_tokens),
                };
                return Ok(Json(body).into_response());
            }
            Outbound::Stream(StreamEvent::Failed(f)) => return Err(failure(f.code, &f.error)),
            Outbound::Stream(StreamEvent::Cancelled(c)) => {
                let code = if c.reason == crate::protocol::CancelReason::Timeout {
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

async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers, Shape::OpenAi) {
        return e.into_response();
    }
    let created = (now_ms() / 1000).saturating_sub(app.started.elapsed().as_secs());
    let model = |id: String, owned_by: &str| Model {
        id,
        object: "model",
        created,
        owned_by: owned_by.to_string(),
    };
    let mut data = vec![model("streamgate/auto".into(), "streamgate")];
    data.extend(
        app.orchestrator
            .agent_names()
            .map(|a| model(format!("agent:{a}"), "streamgate")),
    );
    let allowed = &app.config.streams.allowed_models;
    for p in app.providers.iter() {
        let name = p.name();
        if allowed.is_empty() {
            data.push(model(format!("{name}/{}", p.default_model()), name));
        } else {
            data.extend(allowed.iter().map(|m| model(format!("{name}/{m}"), name)));
        }
    }
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}
