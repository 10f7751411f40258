//! How the HTTP API answers an error: the status the error calls for and
//! the body `{ "error": { "code", "message" } }`, both read from the one
//! wire mapping ([`GatewayError::wire`]), so the code and the words are
//! those every other door uses.

use crate::error::GatewayError;
use crate::protocol::{HttpError, HttpErrorBody};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A [`GatewayError`] on its way out of an HTTP handler.
#[derive(Debug)]
pub struct ApiError(pub GatewayError);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        Self(e)
    }
}

/// The HTTP status of an error.
fn status_of(e: &GatewayError) -> StatusCode {
    match e {
        GatewayError::Unauthorized(_) | GatewayError::TakenOver => StatusCode::UNAUTHORIZED,
        GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
        GatewayError::UnknownSession(_) | GatewayError::UnknownStream(_) => StatusCode::NOT_FOUND,
        GatewayError::SessionBusy(_) | GatewayError::DuplicateStreamId(_) => StatusCode::CONFLICT,
        GatewayError::RateLimited { .. } | GatewayError::TooManyStreams { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        GatewayError::InvalidRequest(_)
        | GatewayError::ModelNotAllowed { .. }
        | GatewayError::UnknownProvider { .. } => StatusCode::BAD_REQUEST,
        GatewayError::Provider(_) => StatusCode::BAD_GATEWAY,
        GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let wire = self.0.wire();
        let body = HttpError {
            error: HttpErrorBody {
                code: wire.code,
                message: wire.message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
