//! The session endpoints: `GET /api/chat/sessions` (the caller's sessions,
//! most recent first), `GET /api/chat/sessions/{id}` (one with its
//! messages) and `DELETE /api/chat/sessions/{id}` (204; 409 while a stream
//! runs on it).
//!
//! Each handler is one call on the `App`'s session store with the caller
//! the [`Caller`] extractor read (errors as `/api` JSON, [`ApiError`]); the store decides ownership, and
//! another user's session answers exactly as an unknown one (404). Bodies
//! are the `protocol::session` types, serialized as they are.

use super::caller::Caller;
use super::error::ApiError;
use crate::app::App;
use crate::error::GatewayError;
use crate::protocol::session::is_valid_id;
use crate::protocol::{SessionDetail, SessionList};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/chat/sessions", get(list))
        .route("/api/chat/sessions/{id}", get(read).delete(remove))
}

async fn list(State(app): State<Arc<App>>, Caller(owner): Caller) -> Json<SessionList> {
    let sessions = app.sessions.list(owner.as_ref()).await;
    Json(SessionList { sessions })
}

async fn read(
    State(app): State<Arc<App>>,
    Caller(owner): Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    let id = session_id(id)?;
    Ok(Json(app.sessions.get(owner.as_ref(), &id).await?))
}

async fn remove(
    State(app): State<Arc<App>>,
    Caller(owner): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = session_id(id)?;
    app.sessions.delete(owner.as_ref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An id no session can have is unknown (named in at most 64 characters).
fn session_id(id: String) -> Result<String, GatewayError> {
    if is_valid_id(&id) {
        Ok(id)
    } else {
        Err(GatewayError::UnknownSession(id.chars().take(64).collect()))
    }
}
