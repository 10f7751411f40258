//! Who is asking over HTTP: `Authorization: Bearer <JWT>`, verified by the
//! same [`Authenticator`](crate::auth::Authenticator) as the `/ai`
//! handshake, so a token means the same user on both doors.
//!
//! With auth off there is no caller in particular (`Caller(None)`): every
//! session is nobody's, as on `/ai`. With auth on, a missing or bad token
//! is refused here (401) before any handler runs.

use super::reply::ApiError;
use crate::app::App;
use crate::auth::UserId;
use crate::error::GatewayError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::sync::Arc;

/// The user a request comes from (`None` with auth off).
pub struct Caller(pub Option<UserId>);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Some(auth) = &app.auth else {
            return Ok(Self(None));
        };
        let token = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(bearer(value.to_str().ok()).ok_or_else(|| {
                GatewayError::Unauthorized("Authorization must be `Bearer <JWT>`".into())
            })?),
        };
        Ok(Self(Some(auth.verify(token)?)))
    }
}

/// The token of a `Bearer` credential (the scheme is case-insensitive).
fn bearer(value: Option<&str>) -> Option<&str> {
    let (scheme, token) = value?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
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
