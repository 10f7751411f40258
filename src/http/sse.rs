//! The REST + SSE door: `POST /api/chat/stream` answers with server-sent
//! events; `GET /api/chat/stream/{id}` (with `Last-Event-ID`) resumes a
//! resumable stream; `DELETE` cancels one.
//!
//! A request is validated (JSON errors with 400/401/409/429 before anything
//! streams), opened as an HTTP stream ([`super::stream`]) and answered with
//! axum's `Sse`, whose events [`SseRender`] makes from the stream's events:
//! `event: start`, one `id: N` event per token (`count` is the position),
//! `event: reasoning` and `event: tool_call` for thinking and tool-call
//! pieces (their `id:` the position too), then the `done` object or the
//! error object, after which the body ends.
//! axum's keep-alive sends `: keep-alive` whenever nothing was sent for
//! `http.sse_keepalive_ms`.
//! With many nodes, a resume or cancel of a stream this node does not hold
//! is handed to the node that runs it ([`forward::to_home`]).

use super::caller::{caller, json_body, origin};
use super::error::{ApiError, Shape};
use super::forward;
use super::peer::ClientAddr;
use super::stream::{self, EventFeed, OnClose, client_name};
use crate::app::App;
use crate::clients::Liveness;
use crate::error::{GatewayError, Owned};
use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::sse::{
    ChatStreamRequest, SseDone, SseError, SseErrorBody, SseReasoning, SseStart, SseToken,
    SseToolCall, tokens_per_second,
};
use crate::protocol::{CancelReason, FieldError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/chat/stream", post(start)).route(
        "/api/chat/stream/{stream_id}",
        axum::routing::get(resume).delete(cancel),
    )
}

async fn start(
    State(app): State<Arc<App>>,
    address: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let opened = async {
        let from = origin(&app, &headers, address.map(|a| a.0), Shape::Plain)?;
        let req: ChatStreamRequest = json_body(&headers, &body, Shape::Plain)?;
        let (partial, on_close) = (req.partial, close_policy(req.resumable));
        let req = req
            .into_stream_request()
            .map_err(|e| ApiError::new(&e.into(), Shape::Plain))?;
        let (id, feed) = stream::open(&app, from, req, on_close)
            .await
            .map_err(|e| ApiError::new(&e, Shape::Plain))?;
        Ok::<_, ApiError>(respond(&app, id, feed, SseRender::new(partial)))
    };
    opened.await.unwrap_or_else(IntoResponse::into_response)
}

fn close_policy(resumable: bool) -> OnClose {
    if resumable {
        OnClose::Detach
    } else {
        OnClose::Cancel
    }
}

async fn resume(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let resumed = async {
        let who = caller(&app, &headers, Shape::Plain)?;
        let last = last_event_id(&headers)?;
        let unknown = || ApiError::new(&GatewayError::UnknownStream(id.clone()), Shape::Plain);
        let Some(client) = app.clients.registry.get(&client_name(&id, OnClose::Detach)) else {
            return match forward::to_home(&app, Method::GET, &id, &headers).await {
                Some(answer) => Ok(answer),
                None => Err(unknown()),
            };
        };
        if client.owner != who.0 {
            return Err(unknown());
        }
        let wanted = Some(vec![(id.clone(), last)]);
        let r = app
            .clients
            .reattach(client, wanted, Liveness::Connection)
            .await;
        if !r.unknown.is_empty() {
            return Err(unknown());
        }
        app.note_home(&r.client, true, None);
        let feed = EventFeed::new(&app, r.client, r.attachment, r.reader, OnClose::Detach);
        // The client has the text up to `last`: `partial` is not repeated.
        Ok(respond(&app, id.into(), feed, SseRender::new(false)))
    };
    resumed.await.unwrap_or_else(IntoResponse::into_response)
}

/// `Last-Event-ID: N`, the position the client has (absent: nothing).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            let e = FieldError::new(
                "Last-Event-ID",
                "must be the id of a token event (a number)",
            );
            ApiError::new(&e.into(), Shape::Plain)
        })
}

async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let cancelled = async {
        let who = caller(&app, &headers, Shape::Plain)?;
        let found = [OnClose::Detach, OnClose::Cancel]
            .into_iter()
            .find_map(|p| app.clients.registry.get(&client_name(&id, p)));
        let err = |e: GatewayError| ApiError::new(&e, Shape::Plain);
        let Some(client) = found else {
            return match forward::to_home(&app, Method::DELETE, &id, &headers).await {
                Some(answer) => Ok(answer),
                None => Err(err(GatewayError::UnknownStream(id.clone()))),
            };
        };
        if client.owner != who.0 {
            return Err(err(GatewayError::Forbidden {
                kind: Owned::Stream,
                id: id.clone(),
            }));
        }
        client
            .cancel_stream(&id, CancelReason::Client)
            .map_err(err)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    cancelled.await.unwrap_or_else(IntoResponse::into_response)
}

/// The event-stream response of `POST /api/chat/stream` for stream `id`
/// (no `partial`), for other doors that answer exactly as it does.
pub fn stream_response(app: &App, id: Arc<str>, feed: EventFeed) -> Response {
    respond(app, id, feed, SseRender::new(false))
}

/// The event-stream response for stream `id`.
fn respond(app: &App, id: Arc<str>, feed: EventFeed, render: SseRender) -> Response {
    let events =
        futures_util::stream::unfold((feed, render), |(mut feed, mut render)| async move {
            loop {
                if render.finished {
                    return None;
                }
                if let Some(event) = feed.next(|item| render.event(item)).await? {
                    return Some((Ok::<_, Infallible>(event), (feed, render)));
                }
            }
        });
    let every = Duration::from_millis(app.config.http.sse_keepalive_ms);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(every).text("keep-alive"))
        .into_response();
    let h = response.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-stream-id", v);
    }
    response
}

/// Turns a stream's events into SSE events.
struct SseRender {
    /// The text so far, kept only when the request asked for `partial`.
    partial: Option<String>,
    /// The last event went out: the body ends.
    finished: bool,
}

impl SseRender {
    fn new(partial: bool) -> Self {
        Self {
            partial: partial.then(String::new),
            finished: false,
        }
    }

    /// The SSE event for `item`, if it has one here.
    fn event(&mut self, item: &Outbound) -> Option<Event> {
        let Outbound::Stream(e) = item else {
            return None;
        };
        let event = match e {
            StreamEvent::Start(s) => Event::default().event("start").json_data(SseStart {
                stream_id: s.stream_id.clone(),
                session_id: s.session_id.clone(),
                provider: s.provider.clone(),
                model: s.model.clone(),
                agent: s.agent.clone(),
                intent: s.intent.clone(),
            }),
            StreamEvent::Token(t) => {
                if let Some(text) = self.partial.as_mut() {
                    text.push_str(&t.data);
                }
                let token = SseToken {
                    token: &t.data,
                    count: t.token_count,
                    partial: self.partial.as_deref(),
                };
                Event::default()
                    .id(t.token_count.to_string())
                    .json_data(token)
            }
            StreamEvent::Reasoning(r) => Event::default()
                .event("reasoning")
                .id(r.token_count.to_string())
                .json_data(SseReasoning {
                    stream_id: &r.stream_id,
                    data: &r.data,
                    token_count: r.token_count,
                }),
            StreamEvent::ToolCall(c) => Event::default()
                .event("tool_call")
                .id(c.token_count.to_string())
                .json_data(SseToolCall {
                    stream_id: &c.stream_id,
                    index: c.index,
                    id: &c.id,
                    name: &c.name,
                    arguments_delta: &c.arguments_delta,
                    token_count: c.token_count,
                }),
            StreamEvent::Complete(_) => return None,
            StreamEvent::Done(d) => {
                self.finished = true;
                Event::default().json_data(SseDone {
                    done: true,
                    tokens: d.total_tokens,
                    duration: d.duration,
                    tokens_per_second: tokens_per_second(d.total_tokens, d.duration),
                    finish_reason: d.finish_reason.clone(),
                    usage: d.usage.clone(),
                    session_id: d.session_id.clone(),
                    tool_calls: d.tool_calls.clone(),
                    reasoning: d.reasoning.clone(),
                })
            }
            StreamEvent::Cancelled(c) => {
                self.finished = true;
                Event::default().json_data(SseError {
                    error: SseErrorBody {
                        code: "cancelled",
                        message: format!("stream cancelled ({})", c.reason.as_str()),
                        retryable: c.reason != CancelReason::Client,
                        reason: Some(c.reason),
                    },
                })
            }
            StreamEvent::Failed(f) => {
                self.finished = true;
                Event::default().json_data(SseError {
                    error: SseErrorBody {
                        code: f.code,
                        message: f.error.clone(),
                        retryable: f.retryable,
                        reason: None,
                    },
                })
            }
        };
        event
            .inspect_err(|e| tracing::error!(error = %e, "SSE event did not serialize"))
            .ok()
    }
}
