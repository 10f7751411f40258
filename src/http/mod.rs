//! The HTTP doors, on the same port as `/ai`: server-sent events
//! (`/api/chat/stream`, [`sse`]), the session endpoints
//! (`/api/chat/sessions`, [`sessions`]), the OpenAI-compatible API
//! (`/v1`, [`openai`]) and the JWT guide's REST call (`/llm/chat`,
//! [`llm`]), over the same validation, limits, JWT,
//! orchestrator, providers, sessions, cancellation and metrics as `/ai`.
//!
//! Each streaming request is a client of its own whose writer is the
//! response body ([`stream`]); what the doors read first (the caller, the
//! JSON body) is in [`caller`], how they answer errors in [`error`]. Bodies
//! An HTTP stream resumed or cancelled on another node than its own is
//! handed to that node ([`forward`]). Bodies
//! are bounded by `server.max_payload_bytes` (tower-http's limit, its
//! refusal answered as JSON too). In front of every door (`/ai` included):
//! [`peer`] finds a request's real client address (the TCP peer, or the
//! client a trusted reverse proxy names); [`gate`] is the layer that sets
//! it on every request and admits or refuses new Engine.IO sessions;
//! [`head`] copies each request's head out of hyper's read buffer before
//! socketioxide keeps it (see there why).

pub mod caller;
pub mod error;
pub mod forward;
pub mod gate;
pub mod head;
pub mod llm;
pub mod openai;
pub mod peer;
pub mod sessions;
pub mod sse;
pub mod stream;

use crate::app::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::{ApiError, Shape};
use std::sync::Arc;
use tower_http::limit::RequestBodyLimitLayer;

/// The routes of every HTTP door.
pub fn routes(app: Arc<App>) -> Router {
    let limit = usize::try_from(app.config.server.max_payload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .merge(sse::routes())
        .merge(sessions::routes())
        .merge(openai::routes())
        .merge(llm::routes())
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limit))
        // Outside the limit, so that its refusal passes through here.
        .layer(axum::middleware::from_fn(json_refusals))
        .with_state(app)
}

/// A body over the limit is refused by tower-http before a handler runs,
/// in plain text: answer it as the door's JSON error instead.
async fn json_refusals(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let shape = if path.starts_with("/v1/") {
        Shape::OpenAi
    } else if path.starts_with("/llm/") {
        Shape::Llm
    } else {
        Shape::Plain
    };
    let response = next.run(req).await;
    let plain = !response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        let err =
            crate::protocol::FieldError::new("body", "is larger than server.max_payload_bytes");
        let mut e = ApiError::new(&err.into(), shape);
        e.wire.status = 413;
        return e.into_response();
    }
    response
}
