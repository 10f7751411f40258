//! The JWT streaming guide's REST call: `POST /llm/chat` (PROTOCOL.md
//! part 3), `{ provider, messages, model?, temperature?, maxTokens?,
//! stream? }` with the bearer JWT when auth is on.
//!
//! The body is read and translated exactly as the guide's socket event
//! `llm:chat:stream` is (`protocol::dialects::LlmChatRequest`: straight to
//! the named provider, the guide's aliases resolved, the last message the
//! prompt), then opened as an HTTP stream ([`super::stream`]) that
//! closing the connection cancels. `stream: true` answers exactly as
//! `POST /api/chat/stream` does ([`super::sse::stream_response`]);
//! `stream: false` reads the stream to its end and answers `200 {
//! provider, model, content, tokenCount, usage, finishReason }`. Refusals
//! are `{ "error": "<sentence>" }` with 400 / 401 / 404 (a provider that
//! is not configured: `Provider not found: <name>`) / 429, and a stream
//! that fails is a 502.

use super::caller::{json_body_as, origin};
use super::error::{ApiError, Shape};
use super::peer::ClientAddr;
use super::sse;
use super::stream::{self, EventFeed, OnClose};
use crate::app::App;
use crate::error::GatewayError;
use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::dialects::{LlmChatReply, LlmChatRequest, provider_for};
use crate::protocol::validate::FieldNames;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/llm/chat", post(chat))
}

/// A refusal before anything streamed, in the guide's shape.
fn refused(e: &GatewayError) -> ApiError {
    let err = ApiError::new(e, Shape::Llm);
    match e {
        GatewayError::UnknownProvider { .. } => err.with_status(404, "provider_not_found"),
        _ => err,
    }
}

async fn chat(
    State(app): State<Arc<App>>,
    address: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answered = async {
        let from = origin(&app, &headers, address.map(|a| a.0), Shape::Llm)?;
        let req: LlmChatRequest = json_body_as(&headers, &body, Shape::Llm, FieldNames::Camel)?;
        let streaming = req.stream;
        let provider = provider_for(&req.provider, |name| app.providers.get(name).is_some());
        let prompt_field = req.prompt_field();
        let sreq = req
            .into_stream_request(provider)
            .map_err(|e| refused(&e.into()))?;
        let (id, feed) = stream::open(&app, from, sreq, OnClose::Cancel)
            .await
            .map_err(|e| refused(&e.with_field_renamed("prompt", &prompt_field)))?;
        app.stats.dialect_llm_rest_streams.fetch_add(1, Relaxed);
        if streaming {
            Ok(sse::stream_response(&app, id, feed))
        } else {
            whole(feed).await
        }
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// A stream that ended without completing, as the guide's 502.
fn failed(code: &'static str, message: &str) -> ApiError {
    ApiError::of_stream(code, message, true, Shape::Llm).with_status(502, code)
}

/// `stream: false`: read the stream to its end and answer it whole.
async fn whole(mut feed: EventFeed) -> Result<Response, ApiError> {
    let mut content = String::new();
    let mut served = None;
    loop {
        let next = feed.next(|item| match item {
            Outbound::Stream(StreamEvent::Token(t)) => {
                content.push_str(&t.data);
                None
            }
            Outbound::Stream(e) => Some(e.clone()),
            _ => None,
        });
        let event = match next.await {
            Some(Some(event)) => event,
            Some(None) => continue,
            None => return Err(failed("internal", "the stream ended before it finished")),
        };
        match event {
            StreamEvent::Start(s) => served = Some((s.provider, s.model)),
            StreamEvent::Done(d) => {
                let (provider, model) = served.unwrap_or_default();
                let reply = LlmChatReply {
                    provider: &provider,
                    model: &model,
                    content: d.full_response.as_deref().unwrap_or(&content),
                    token_count: d.total_tokens,
                    usage: d.usage.as_ref(),
                    finish_reason: &d.finish_reason,
                };
                return Ok(Json(reply).into_response());
            }
            StreamEvent::Failed(f) => return Err(failed(f.code, &f.error)),
            StreamEvent::Cancelled(c) => {
                let message = format!("stream cancelled ({})", c.reason.as_str());
                return Err(failed("cancelled", &message));
            }
            StreamEvent::Token(_)
            | StreamEvent::Reasoning(_)
            | StreamEvent::ToolCall(_)
            | StreamEvent::Complete(_) => {}
        }
    }
}
