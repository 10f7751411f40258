//! Typed errors and their one mapping onto the protocol's error codes.
//!
//! Everything that can go wrong for a client ends up as a [`GatewayError`];
//! [`GatewayError::wire`] (built from [`GatewayError::code`],
//! [`GatewayError::retryable`], [`GatewayError::client_message`] and
//! [`GatewayError::details`]) is the only place where it becomes wire text,
//! so no internal detail (upstream URLs, keys, paths) can leak by way of a
//! stray `to_string()` elsewhere. Doors render a [`WireError`] in their own
//! shape (an `ai:error` event, an ack, a `connect_error` message).

use crate::protocol::{FieldError, Invalid};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid request: {0:?}")]
    InvalidRequest(Invalid),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("rate limited: {limit:?}")]
    RateLimited {
        limit: RateLimit,
        retry_after: Duration,
    },
    #[error("too many streams (limit {limit})")]
    TooManyStreams { limit: usize },
    /// The process (or, with `provider`, every provider the route could
    /// use) runs its maximum of live streams.
    #[error("stream capacity reached (limit {limit}, provider {provider:?})")]
    StreamCapacity {
        provider: Option<String>,
        limit: usize,
    },
    /// A cap on what the gateway holds (see [`Capacity`]).
    #[error("server busy: {limit:?} (max {max})")]
    ServerBusy { limit: Capacity, max: usize },
    #[error("duplicate stream id {0}")]
    DuplicateStreamId(String),
    #[error("unknown stream {0}")]
    UnknownStream(String),
    #[error("model {model} not allowed")]
    ModelNotAllowed { model: String, allowed: Vec<String> },
    #[error("unknown provider {name}")]
    UnknownProvider { name: String, known: Vec<String> },
    #[error("unknown agent {name}")]
    UnknownAgent { name: String, known: Vec<String> },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The session already has a live stream (one at a time).
    #[error("session {0} busy")]
    SessionBusy(String),
    /// No such session for this user (another user's reads as this).
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// Another user's session or stream, written to.
    #[error("{kind:?} {id} belongs to another user")]
    Forbidden { kind: Owned, id: String },
    /// Another connection resumed this client.
    #[error("taken over by another connection")]
    TakenOver,
    /// The shared store (Redis, with many nodes) could not be reached or
    /// answered nonsense; the `String` is for logs only.
    #[error("shared store unavailable: {0}")]
    SharedStoreUnavailable(String),
    /// The node running the stream (named, for logs) stopped beating.
    #[error("node {0} lost")]
    NodeLost(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A [`GatewayError`] as a client sees it.
#[derive(Debug, Clone)]
pub struct WireError {
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
    pub details: Value,
    /// The HTTP status an HTTP door answers it with.
    pub status: u16,
    /// How long to wait before retrying, when the error says.
    pub retry_after: Option<Duration>,
}

impl WireError {
    /// The text of a refused handshake (`connect_error`): `code: message`.
    pub fn handshake_message(&self) -> String {
        if self.message.starts_with(self.code) {
            self.message.clone()
        } else {
            format!("{}: {}", self.code, self.message)
        }
    }
}

/// What a [`GatewayError::Forbidden`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Session,
    Stream,
}

/// Which abuse limit refused a request (see `config::RateLimitConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Events of one client.
    Events,
    /// `ai:ack` of one client.
    Acks,
    /// Streams started by one user.
    Streams,
    /// Streams started from one client address (auth off: there are no
    /// users).
    StreamsFromAddress,
    /// New connections (Engine.IO sessions, `/ai` joins) from one address.
    Connections,
}

/// A cap on what the gateway holds (see `config::RateLimitConfig`),
/// named as its config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    /// Live connections of one client address.
    ConnectionsPerAddress,
    /// Live connections in the process.
    Connections,
    /// Clients held in the process.
    Clients,
    /// Replay bytes held in the process.
    ReplayBytes,
}

impl Capacity {
    /// The config key of the cap (`limits.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            Self::ConnectionsPerAddress => "max_connections_per_address",
            Self::Connections => "max_connections",
            Self::Clients => "max_clients",
            Self::ReplayBytes => "max_replay_bytes",
        }
    }

    /// Whether it is the process's own (not one address's).
    pub fn is_process_wide(self) -> bool {
        !matches!(self, Self::ConnectionsPerAddress)
    }
}

/// What went wrong talking to an upstream. The `String`s are for logs; the
/// client gets [`GatewayError::client_message`], which names the provider
/// and the kind of failure only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Connect refused, DNS, TLS, or a status that says "not now" (5xx, 429).
    #[error("{provider} unreachable: {detail}")]
    Unavailable { provider: String, detail: String },
    /// The upstream answered, but with an error, or its stream broke.
    #[error("{provider} failed: {detail}")]
    Upstream { provider: String, detail: String },
    /// The upstream refused the request itself (a 4xx other than 429):
    /// trying again, or elsewhere, would not help.
    #[error("{provider} refused the request (HTTP {status}): {detail}")]
    Rejected {
        provider: String,
        status: u16,
        detail: String,
    },
    /// No first token within the first-token timeout.
    #[error("{provider} sent no token within {after:?}")]
    FirstTokenTimeout { provider: String, after: Duration },
    /// Streaming had begun, then no chunk came for the idle timeout.
    #[error("{provider} sent nothing for {after:?} mid-stream")]
    IdleTimeout { provider: String, after: Duration },
}

impl ProviderError {
    pub fn provider(&self) -> &str {
        match self {
            Self::Unavailable { provider, .. }
            | Self::Upstream { provider, .. }
            | Self::Rejected { provider, .. }
            | Self::FirstTokenTimeout { provider, .. }
            | Self::IdleTimeout { provider, .. } => provider,
        }
    }

    /// Worth trying the next provider of a fallback chain (before the
    /// first token only; after it, a failure ends the stream).
    pub fn can_fall_back(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::FirstTokenTimeout { .. }
        )
    }
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::UnknownProvider { .. } | Self::UnknownAgent { .. } => {
                "invalid_request"
            }
            Self::Unauthorized(_) | Self::TakenOver => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyStreams { .. } | Self::StreamCapacity { .. } => "too_many_streams",
            Self::ServerBusy { .. } | Self::SharedStoreUnavailable(_) => "server_busy",
            Self::DuplicateStreamId(_) => "duplicate_stream_id",
            Self::UnknownStream(_) => "unknown_stream",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::SessionBusy(_) => "session_busy",
            Self::UnknownSession(_) => "unknown_session",
            Self::Provider(ProviderError::Unavailable { .. }) => "upstream_unavailable",
            Self::Provider(ProviderError::Upstream { .. } | ProviderError::Rejected { .. }) => {
                "upstream_error"
            }
            Self::Provider(
                ProviderError::FirstTokenTimeout { .. } | ProviderError::IdleTimeout { .. },
            ) => "timeout",
            Self::NodeLost(_) => "node_lost",
            Self::Internal(_) => "internal",
        }
    }

    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::TooManyStreams { .. }
                | Self::SessionBusy(_)
                | Self::StreamCapacity { .. }
                | Self::ServerBusy { .. }
                | Self::SharedStoreUnavailable(_)
                | Self::NodeLost(_)
                | Self::Provider(_)
                | Self::Internal(_)
        )
    }

    /// The sentence a person reads: what was wrong and what is allowed.
    pub fn client_message(&self) -> String {
        match self {
            Self::InvalidRequest(Invalid(fields)) => fields
                .iter()
                .map(|f| format!("{} {}", f.field, f.rule))
                .collect::<Vec<_>>()
                .join("; "),
            Self::Unauthorized(why) => format!("unauthorized: {why}"),
            Self::RateLimited { limit, retry_after } => {
                let what = match limit {
                    RateLimit::Events => "too many events from this client",
                    RateLimit::Acks => {
                        "too many ai:ack events from this client (acks are cumulative; send one per 32 tokens or 100 ms)"
                    }
                    RateLimit::Streams => "too many streams started by this user",
                    RateLimit::StreamsFromAddress => "too many streams started from this address",
                    RateLimit::Connections => "too many new connections from this address",
                };
                format!("{what}; retry after {} ms", retry_after_ms(*retry_after))
            }
            Self::TooManyStreams { limit } => {
                format!(
                    "this client already has {limit} live streams (the limit); wait for one to end"
                )
            }
            Self::StreamCapacity {
                provider: None,
                limit,
            } => format!(
                "the gateway runs its maximum of {limit} live streams; retry when one has ended"
            ),
            Self::StreamCapacity {
                provider: Some(p),
                limit,
            } => format!(
                "provider {p} runs its maximum of {limit} live streams and the route has no \
                 other provider with room; retry when one has ended"
            ),
            Self::ServerBusy { limit, max } => server_busy_message(*limit, *max),
            Self::SharedStoreUnavailable(_) => {
                "the gateway cannot reach its shared store (Redis) now; retry shortly".to_string()
            }
            Self::NodeLost(_) => {
                "the gateway node running this stream stopped (what it had produced \
                 and had not yet delivered is lost with it); start the stream again"
                    .to_string()
            }
            Self::DuplicateStreamId(id) => {
                format!("streamId {id:?} is already a live stream of this client")
            }
            Self::UnknownStream(id) => format!("no live stream {id:?} on this client"),
            Self::SessionBusy(id) => {
                format!("session {id:?} already has a live stream; retry when it has ended")
            }
            Self::UnknownSession(id) => format!("no session {id:?} for this user"),
            Self::Forbidden { kind, id } => {
                let what = match kind {
                    Owned::Session => "session",
                    Owned::Stream => "stream",
                };
                format!("{what} {id:?} belongs to another user")
            }
            Self::ModelNotAllowed { model, allowed } => {
                format!(
                    "model {model:?} is not allowed; allowed: {}",
                    allowed.join(", ")
                )
            }
            Self::UnknownProvider { name, known } => {
                format!(
                    "provider {name:?} is not configured; configured: {}",
                    known.join(", ")
                )
            }
            Self::UnknownAgent { name, known } => {
                format!(
                    "agent {name:?} is not configured; configured: {}",
                    known.join(", ")
                )
            }
            Self::Provider(ProviderError::Unavailable { provider, .. }) => {
                format!("provider {provider} could not be reached")
            }
            Self::Provider(ProviderError::Upstream { provider, .. }) => {
                format!("provider {provider} failed while streaming")
            }
            Self::Provider(ProviderError::Rejected {
                provider, status, ..
            }) => match status {
                404 => format!("provider {provider} does not know the requested model (HTTP 404)"),
                s => format!("provider {provider} refused the request (HTTP {s})"),
            },
            Self::Provider(ProviderError::FirstTokenTimeout { provider, after }) => {
                format!(
                    "provider {provider} sent no token within {} ms",
                    after.as_millis()
                )
            }
            Self::Provider(ProviderError::IdleTimeout { provider, after }) => {
                format!(
                    "provider {provider} sent no token for {} ms mid-stream (idle timeout); \
                     its request was closed",
                    after.as_millis()
                )
            }
            Self::TakenOver => {
                "this client was taken over by another connection (ai:reconnect)".to_string()
            }
            Self::Internal(_) => "internal error".to_string(),
        }
    }

    /// The sentence the earlier designs' frontends are told (PROTOCOL.md
    /// part 3), in their own words where they had some: `Provider not
    /// found: <name>` and `session busy`; otherwise [`Self::client_message`].
    pub fn dialect_message(&self) -> String {
        match self {
            Self::UnknownProvider { name, .. } => format!("Provider not found: {name}"),
            Self::SessionBusy(_) => "session busy".to_string(),
            e => e.client_message(),
        }
    }

    /// The same error with the request field `from` named `to`, for a
    /// door whose clients call the engine's field by another name (the
    /// prompt is `message` in one design, the last message in another).
    pub fn with_field_renamed(self, from: &str, to: &str) -> Self {
        match self {
            Self::InvalidRequest(Invalid(mut fields)) => {
                for f in fields.iter_mut().filter(|f| f.field == from) {
                    f.field = to.to_string();
                }
                Self::InvalidRequest(Invalid(fields))
            }
            e => e,
        }
    }

    /// The whole of what a client is told.
    pub fn wire(&self) -> WireError {
        WireError {
            code: self.code(),
            message: self.client_message(),
            retryable: self.retryable(),
            details: self.details(),
            status: self.http_status(),
            retry_after: match self {
                Self::RateLimited { retry_after, .. } => Some(*retry_after),
                _ => None,
            },
        }
    }

    fn http_status(&self) -> u16 {
        match self {
            // An upstream that does not know the model: as OpenAI answers it.
            Self::Provider(ProviderError::Rejected { status: 404, .. }) => 404,
            e => status_for(e.code()),
        }
    }
    /// `details` of `ai:error`.
    pub fn details(&self) -> Value {
        match self {
            Self::InvalidRequest(Invalid(fields)) => {
                let first = fields.first();
                json!({
                    "field": first.map(|f| f.field.as_str()),
                    "rule": first.map(|f| f.rule.as_str()),
                    "fields": fields,
                })
            }
            Self::RateLimited { retry_after, .. } => {
                json!({ "retryAfterMs": retry_after_ms(*retry_after) })
            }
            Self::TooManyStreams { limit } => json!({ "limit": limit, "scope": "client" }),
            Self::StreamCapacity {
                provider: None,
                limit,
            } => json!({ "limit": limit, "scope": "gateway" }),
            Self::StreamCapacity {
                provider: Some(p),
                limit,
            } => json!({ "limit": limit, "scope": "provider", "provider": p }),
            Self::ServerBusy { limit, max } => json!({ "limit": limit.key(), "max": max }),
            Self::ModelNotAllowed { allowed, .. } => {
                json!({ "field": "model", "allowed": allowed })
            }
            Self::UnknownProvider { known, .. } => json!({ "field": "provider", "allowed": known }),
            Self::UnknownAgent { known, .. } => json!({ "field": "agent", "allowed": known }),
            Self::DuplicateStreamId(id) | Self::UnknownStream(id) => {
                json!({ "field": "streamId", "streamId": id })
            }
            Self::SessionBusy(id)
            | Self::UnknownSession(id)
            | Self::Forbidden {
                kind: Owned::Session,
                id,
            } => json!({ "field": "sessionId", "sessionId": id }),
            Self::Forbidden {
                kind: Owned::Stream,
                id,
            } => json!({ "field": "streamId", "streamId": id }),
            Self::TakenOver => json!({ "reason": "taken_over" }),
            _ => json!({}),
        }
    }
}

impl GatewayError {
    /// A refused handshake token, in words a person can act on. The
    /// token and the library's own wording never reach the client.
    pub fn from_jwt(e: &jsonwebtoken::errors::Error, expected: jsonwebtoken::Algorithm) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        let why = match e.kind() {
            K::ExpiredSignature => "token expired".to_string(),
            K::ImmatureSignature => "token not valid yet (nbf is in the future)".to_string(),
            K::InvalidSignature => "bad signature".to_string(),
            K::InvalidIssuer => "wrong issuer (iss)".to_string(),
            K::InvalidAudience => "wrong audience (aud)".to_string(),
            K::MissingRequiredClaim(claim) => format!("token lacks the {claim} claim"),
            K::InvalidClaimFormat(claim) if claim == "exp" || claim == "nbf" => format!(
                "claim {claim} has the wrong type (it must be a number of seconds since 1970 \
                 that fits in 64 bits)"
            ),
            K::InvalidClaimFormat(claim) => format!("claim {claim} has the wrong type"),
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                format!("algorithm not accepted (this server takes {expected:?} only)")
            }
            K::Json(_) => "malformed token (unreadable header or claims; alg none is not accepted)"
                .to_string(),
            _ => "malformed token".to_string(),
        };
        Self::Unauthorized(why)
    }
}

/// The HTTP status an HTTP door answers a wire code with.
pub fn status_for(code: &str) -> u16 {
    match code {
        "invalid_request" | "model_not_allowed" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "unknown_stream" | "unknown_session" => 404,
        "duplicate_stream_id" | "session_busy" => 409,
        "rate_limited" | "too_many_streams" => 429,
        "upstream_error" => 502,
        "upstream_unavailable" | "node_lost" | "server_busy" => 503,
        "timeout" => 504,
        _ => 500,
    }
}

fn server_busy_message(limit: Capacity, max: usize) -> String {
    let what = match limit {
        Capacity::ConnectionsPerAddress => {
            format!("this address already holds {max} connections (the most one address may hold)")
        }
        Capacity::Connections => format!("the gateway holds its maximum of {max} connections"),
        Capacity::Clients => format!("the gateway holds its maximum of {max} clients"),
        Capacity::ReplayBytes => format!(
            "the gateway's replay memory is nearly full ({max} bytes; clients that never send \
             ai:ack hold it)"
        ),
    };
    format!("{what}; retry later")
}

/// Milliseconds to wait, rounded up so that a client waiting that long
/// is really allowed again (never 0).
fn retry_after_ms(d: Duration) -> u64 {
    (d.as_micros().div_ceil(1_000) as u64).max(1)
}

impl From<FieldError> for GatewayError {
    fn from(e: FieldError) -> Self {
        Self::InvalidRequest(e.into())
    }
}

impl From<Invalid> for GatewayError {
    fn from(e: Invalid) -> Self {
        Self::InvalidRequest(e)
    }
}
