//! `POST /v1/chat/completions`: read the body, open the stream, and answer
//! once it has started.
//!
//! The response waits for the stream's start (which names the provider
//! that serves, for `x-streamgate-provider`) and its first event, so a
//! failure before any text is an HTTP error in OpenAI's shape with
//! OpenAI's statuses; then `stream: true` answers with chunks, `stream:
//! false` with one completion ([`super::render`]). Closing the connection
//! cancels the stream and its upstream, as on every HTTP door.

use super::render::{stream_response, whole_response};
use super::request::stream_request;
use crate::app::App;
use crate::error::{GatewayError, ProviderError};
use crate::http::caller::{json_body, origin};
use crate::http::error::{ApiError, Shape};
use crate::http::peer::ClientAddr;
use crate::http::stream::{self, EventFeed, OnClose};
use crate::outbox::{Outbound, StreamEvent};
use crate::protocol::now_ms;
use crate::protocol::openai::ChatCompletionRequest;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// A gateway error as `/v1` answers it: unknown models are 404s.
pub fn api_error(e: &GatewayError) -> ApiError {
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

pub async fn completions(
    State(app): State<Arc<App>>,
    address: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answered = async {
        let from = origin(&app, &headers, address.map(|a| a.0), Shape::OpenAi)?;
        let req: ChatCompletionRequest = json_body(&headers, &body, Shape::OpenAi)?;
        let (streaming, include_usage) = (
            req.stream,
            req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        );
        let sreq = stream_request(&app, req)?;
        let (id, mut feed) = stream::open(&app, from, sreq, OnClose::Cancel)
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

/// Who served, and the first event after the start (held for the body).
pub struct Served {
    pub provider: Arc<str>,
    /// `provider/model`, as responses name the model.
    pub model: String,
    pub created: u64,
    pub id: String,
    pub first: Outbound,
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
pub fn failure(code: &'static str, message: &str) -> ApiError {
    ApiError::of_stream(code, message, true, Shape::OpenAi)
}
