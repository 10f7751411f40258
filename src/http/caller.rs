//! What every HTTP door reads first: who is calling (the bearer JWT, when
//! auth is on) and the JSON body, each refused as a JSON error naming what
//! was wrong, never as a plain-text rejection.
//!
//! The token is checked by the same [`Authenticator`](crate::auth) as the
//! `/ai` handshake, so a token means the same user on every door; with auth
//! off there is no caller in particular (`Caller(None)`). The body
//! must be `application/json`, valid JSON, and an object that passes the
//! door's typed validation; every broken field is named (snake_case, as
//! these doors' clients spell them).

use super::error::{ApiError, Shape};
use super::peer::ClientAddr;
use crate::app::App;
use crate::auth::{UserId, Verified};
use crate::clients::Origin;
use crate::error::GatewayError;
use crate::protocol::FieldError;
use crate::protocol::validate::{FieldNames, parse_payload_as};
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use validator::Validate;

/// Who is calling: the JWT `sub` (`None` with auth off).
#[derive(Debug, Clone)]
pub struct Caller(pub Option<UserId>);

/// The caller of a request, from its `Authorization: Bearer` header; a
/// missing or bad token (auth on) is a 401 in `shape`.
pub fn caller(app: &App, headers: &HeaderMap, shape: Shape) -> Result<Caller, ApiError> {
    Ok(Caller(verified(app, headers, shape)?.map(|v| v.user)))
}

/// Where a request that starts a stream comes from: the caller's token
/// (with its expiry) and the real client address the connection gate
/// found, which per-address budgets are keyed by when auth is off.
pub fn origin(
    app: &App,
    headers: &HeaderMap,
    address: Option<ClientAddr>,
    shape: Shape,
) -> Result<Origin, ApiError> {
    Ok(Origin {
        owner: verified(app, headers, shape)?,
        address: address.map(|a| a.0),
    })
}

fn verified(app: &App, headers: &HeaderMap, shape: Shape) -> Result<Option<Verified>, ApiError> {
    let Some(auth) = &app.auth else {
        return Ok(None);
    };
    let refuse = |e: GatewayError| ApiError::new(&e, shape);
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(bearer(value.to_str().ok()).ok_or_else(|| {
            refuse(GatewayError::Unauthorized(
                "Authorization must be `Bearer <JWT>`".into(),
            ))
        })?),
    };
    auth.verify_token(token).map(Some).map_err(refuse)
}

/// `/api/…` handlers take the caller as an extractor.
impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        caller(app, &parts.headers, Shape::Plain)
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive).
fn bearer(value: Option<&str>) -> Option<&str> {
    let (scheme, token) = value?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The body as a typed, validated `T` (fields named as in Rust:
/// snake_case).
pub fn json_body<T: DeserializeOwned + Validate>(
    headers: &HeaderMap,
    body: &Bytes,
    shape: Shape,
) -> Result<T, ApiError> {
    json_body_as(headers, body, shape, FieldNames::AsIs)
}

/// [`json_body`], naming broken fields as `names` says (a camelCase body
/// names them in camelCase).
pub fn json_body_as<T: DeserializeOwned + Validate>(
    headers: &HeaderMap,
    body: &Bytes,
    shape: Shape,
    names: FieldNames,
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
    parse_payload_as(value, names)
        .map_err(|e| ApiError::new(&GatewayError::InvalidRequest(e), shape))
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn reads_a_bearer_token_only() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(None), None);
    }
}
