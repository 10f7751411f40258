//! The OpenAI-compatible door: `POST /v1/chat/completions` (streaming and
//! not) and `GET /v1/models`, so that any tool speaking OpenAI's API (the
//! official SDKs, IDE extensions that take a base URL) uses the gateway
//! unchanged.
//!
//! [`request`] turns OpenAI's body into the engine's request (the route
//! from `model`, the conversation with its images, tool calls and tool
//! results, the tools and the choice among them, the reasoning effort);
//! [`completions`] opens it as an HTTP stream and answers once the stream
//! has started (so a failure before any text is an HTTP error in OpenAI's
//! shape); [`render`] makes OpenAI's chunks (content, `reasoning_content`,
//! `tool_calls` by index) or its whole completion from the stream's events;
//! [`models`] lists the routes.

mod completions;
mod models;
mod render;
mod request;

use crate::app::App;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/chat/completions", post(completions::completions))
        .route("/v1/models", get(models::models))
}
