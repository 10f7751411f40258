//! Who a connection belongs to: JWT verification for the `/ai` handshake.
//!
//! [`Authenticator::from_config`] runs once at startup: it turns the
//! `[auth]` section into one decoding key and one [`Validation`] whose
//! algorithm list is pinned to that key's type (HS256 for a secret, RS256
//! for an RSA public key, ES256 for an EC P-256 one), so a token can never
//! choose its own algorithm (`alg: none` does not even parse). The
//! namespace middleware calls [`Authenticator::verify_token`] with
//! `auth.token`; the [`Verified`] it returns (the `sub` as the [`UserId`]
//! that owns the connection's client and streams, and the token's `exp`)
//! travels with the client, so that a stream started after the token
//! expired is refused too. A header that marks extensions critical
//! (`crit`, RFC 7515 §4.1.11) is refused: this server understands none.
//! Claims the gateway requires are checked here, by presence and type,
//! so that a claim of the wrong type is never reported as missing; their
//! values (`exp`, `nbf`, `iss`, `aud`) are checked by jsonwebtoken. Why a
//! token was refused is mapped to words in `crate::error` (the one mapping
//! to the wire).

use crate::config::AuthConfig;
use crate::error::GatewayError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// The JWT `sub` of a connection: the user that owns its client and
/// streams. Kept in the socket's extensions by the handshake middleware.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(pub Arc<str>);

/// A token that passed: who it is for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    /// `exp`, in seconds since 1970.
    pub expires_at: u64,
}

/// Longest `sub` accepted; it is a map key and shows up in logs.
const MAX_SUB_LEN: usize = 256;

/// Shortest HS256 secret accepted without a warning (256 bits).
const MIN_SECRET_LEN: usize = 32;

/// Longest token looked at; anything longer is refused before decoding.
const MAX_TOKEN_LEN: usize = 8_192;

/// The key and rules every handshake token is checked against.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    /// `iss` / `aud` must be present (their values are checked by
    /// jsonwebtoken when configured).
    needs_iss: bool,
    needs_aud: bool,
}

/// Startup stops on this: the configured key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.jwt_public_key: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("auth.jwt_public_key: {path} is neither an RSA nor an EC P-256 public key in PEM")]
    UnknownKey { path: String },
}

/// The claims the gateway reads itself, loosely, so that a missing claim
/// and one of the wrong type are told apart; `exp`, `nbf`, `iss` and `aud`
/// values are checked by jsonwebtoken from the same payload.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
}

impl Authenticator {
    /// `None` when auth is off (no key configured).
    pub fn from_config(config: &AuthConfig) -> Result<Option<Self>, AuthSetupError> {
        let (key, algorithm) = if !config.jwt_secret.is_empty() {
            if config.jwt_secret.len() < MIN_SECRET_LEN {
                tracing::warn!(
                    "auth.jwt_secret is shorter than {MIN_SECRET_LEN} bytes: an HS256 secret should \
                     hold at least 256 random bits (e.g. `openssl rand -hex 32`)"
                );
            }
            (
                DecodingKey::from_secret(config.jwt_secret.as_bytes()),
                Algorithm::HS256,
            )
        } else if !config.jwt_public_key.is_empty() {
            let path = &config.jwt_public_key;
            let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read {
                path: path.clone(),
                source,
            })?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (key, Algorithm::ES256)
            } else {
                return Err(AuthSetupError::UnknownKey { path: path.clone() });
            }
        } else {
            return Ok(None);
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        if config.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&config.issuer]);
        }
        if config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&config.audience]);
        }
        // Presence is checked in `claims`, where a claim of the wrong type
        // is told apart from a missing one (jsonwebtoken says "missing"
        // for both).
        validation.set_required_spec_claims::<&str>(&[]);
        Ok(Some(Self {
            key,
            validation,
            algorithm,
            needs_iss: !config.issuer.is_empty(),
            needs_aud: !config.audience.is_empty(),
        }))
    }

    /// The algorithm every token must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Check `token` (`auth.token` of the handshake; `None` when absent)
    /// and return its `sub`. The error is `unauthorized` with a reason a
    /// person can act on, never the token itself.
    pub fn verify(&self, token: Option<&str>) -> Result<UserId, GatewayError> {
        self.verify_token(token).map(|v| v.user)
    }

    /// As [`Authenticator::verify`], with the token's expiry.
    pub fn verify_token(&self, token: Option<&str>) -> Result<Verified, GatewayError> {
        let token = match token.map(str::trim) {
            None | Some("") => return Err(GatewayError::Unauthorized("missing token".into())),
            Some(t) => t,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(GatewayError::Unauthorized(format!(
                "malformed token (longer than {MAX_TOKEN_LEN} bytes)"
            )));
        }
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| GatewayError::from_jwt(&e, self.algorithm))?;
        if let Some(crit) = &data.header.crit {
            return Err(GatewayError::Unauthorized(format!(
                "token header marks extensions critical that this server does not understand \
                 (crit: {})",
                crit.join(", ")
            )));
        }
        self.claims(data.claims)
    }

    /// The claims the gateway requires, present and of the right type.
    fn claims(&self, claims: Claims) -> Result<Verified, GatewayError> {
        let refuse = |why: String| Err(GatewayError::Unauthorized(why));
        let lacks = |claim: &str| refuse(format!("token lacks the {claim} claim"));
        // jsonwebtoken has checked the value of a present exp: a number.
        let expires_at = match claims.exp.as_ref().and_then(Value::as_f64) {
            Some(exp) => exp.round() as u64,
            None => return lacks("exp"),
        };
        if self.needs_iss && claims.iss.is_none() {
            return lacks("iss");
        }
        if self.needs_aud && claims.aud.is_none() {
            return lacks("aud");
        }
        match claims.sub {
            Some(Value::String(sub)) if (1..=MAX_SUB_LEN).contains(&sub.len()) => Ok(Verified {
                user: UserId(sub.into()),
                expires_at,
            }),
            None => lacks("sub"),
            Some(_) => refuse(format!("sub must be a string of 1..={MAX_SUB_LEN} bytes")),
        }
    }
}
