//! How the HTTP doors answer an error: a [`WireError`] rendered as JSON in
//! the shape the door's clients read, with its status (and `Retry-After`
//! when the error says how long to wait).
//!
//! `/api/…` answers `{ "error": { "code", "message", "details" } }`; `/v1/…`
//! answers OpenAI's `{ "error": { "message", "type", "param", "code" } }`,
//! so that the official SDKs raise their own typed errors; `/llm/…`
//! answers the JWT guide's `{ "error": "<sentence>" }`. The status is the
//! wire error's, except where a door says otherwise (an unknown model on
//! `/v1` is a 404, as OpenAI answers it).

use crate::error::{GatewayError, WireError, status_for};
use crate::protocol::openai::{ErrorBody, ErrorObject};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Whose error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/api/…`: the gateway's own.
    Plain,
    /// `/v1/…`: OpenAI's.
    OpenAi,
    /// `/llm/…`: the JWT guide's `{ "error": "<sentence>" }`, its
    /// sentence in the guide's words ([`GatewayError::dialect_message`]).
    Llm,
}

/// An error on its way out of an HTTP door.
#[derive(Debug)]
pub struct ApiError {
    pub wire: WireError,
    pub shape: Shape,
    /// OpenAI's `code` where it names the case differently (e.g.
    /// `model_not_found`); the wire code otherwise.
    pub openai_code: Option<&'static str>,
}

impl ApiError {
    pub fn new(err: &GatewayError, shape: Shape) -> Self {
        let mut wire = err.wire();
        if shape == Shape::Llm {
            wire.message = err.dialect_message();
        }
        Self {
            wire,
            shape,
            openai_code: None,
        }
    }

    /// A stream's failure after admission (its code and message were all
    /// that reached the door).
    pub fn of_stream(code: &'static str, message: &str, retryable: bool, shape: Shape) -> Self {
        Self {
            wire: WireError {
                code,
                message: message.to_string(),
                retryable,
                details: json!({}),
                status: status_for(code),
                retry_after: None,
            },
            shape,
            openai_code: None,
        }
    }

    /// Answer with `status` and, on `/v1`, OpenAI's `code` for the case.
    pub fn with_status(mut self, status: u16, openai_code: &'static str) -> Self {
        self.wire.status = status;
        self.openai_code = Some(openai_code);
        self
    }
}

/// OpenAI's `type` for a status.
fn openai_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 409 | 413 | 415 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// `?` on a gateway error in an `/api/…` handler.
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        Self::new(&e, Shape::Plain)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let w = self.wire;
        let status = StatusCode::from_u16(w.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.shape {
            Shape::Plain => (
                status,
                Json(json!({ "error": { "code": w.code, "message": w.message, "details": w.details } })),
            )
                .into_response(),
            Shape::OpenAi => {
                let param = w.details.get("field").and_then(|f| f.as_str()).map(str::to_owned);
                let body = ErrorBody {
                    error: ErrorObject {
                        message: w.message,
                        kind: openai_type(w.status),
                        param,
                        code: self.openai_code.unwrap_or(w.code),
                    },
                };
                (status, Json(body)).into_response()
            }
            Shape::Llm => (status, Json(json!({ "error": w.message }))).into_response(),
        };
        if w.status == 401 {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = w.retry_after {
            // Whole seconds, rounded up, never 0.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
