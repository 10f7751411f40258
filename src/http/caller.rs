//! What every HTTP door reads first: who is calling (the bearer JWT, when
//! auth is on) and the JSON body, each refused as a JSON error naming what
//! was wrong, never as a plain-text rejection.
//!
//! The token is checked by the same [`Authenticator`](crate::auth) as the
//! `/ai` handshake, so the keys, algorithm and claims are the same. The body
//! must be `application/json`, valid JSON, and an object that passes the
//! door's typed validation; every broken field is named (snake_case, as
//! these doors' clients spell them).

use super::error::{ApiError, Shape};
use crate::app::App;
use crate::auth::UserId;
use crate::error::GatewayError;
use crate::protocol::FieldError;
use crate::protocol::validate::{FieldNames, parse_payload_as};
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use validator::Validate;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The JWT `sub`, when auth is on.
    pub owner: Option<UserId>,
}

/// The caller of a request, from its `Authorization: Bearer` header.
pub fn caller(app: &App, headers: &HeaderMap, shape: Shape) -> Result<Caller, ApiError> {
    let Some(auth) = &app.auth else {
        return Ok(Caller { owner: None });
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    auth.verify(token)
        .map(|user| Caller { owner: Some(user) })
        .map_err(|e| ApiError::new(&e, shape))
}

/// The body as a typed, validated `T`.
pub fn json_body<T: DeserializeOwned + Validate>(
    headers: &HeaderMap,
    body: &Bytes,
    shape: Shape,
) -> Result<T, ApiError> {
    let invalid = |field: &str, rule: &str| {
        let e = GatewayError::from(FieldError::new(field, rule));
        ApiError::new(&e, shape)
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(invalid("content-type", "must be application/json"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid("body", &format!("must be valid JSON ({e})")))?;
    parse_payload_as(value, FieldNames::AsIs)
        .map_err(|e| ApiError::new(&GatewayError::InvalidRequest(e), shape))
}
