//! Typed configuration: built-in defaults, then a TOML file, then the
//! environment, each layer overriding the one before (figment).
//!
//! `config/default.toml` documents every key with its default, and a test
//! checks that it parses to exactly [`Config::default`], so the file and the
//! code cannot drift apart. Environment variables come in two kinds: the
//! names kept from earlier deployments (`WS_PORT`, `STREAM_TIMEOUT`, ...,
//! mapped in [`LEGACY_ENV`]) and `STREAMGATE_<SECTION>__<KEY>` for the rest.
//! [`Config::validate`] rejects bad values with the key's name and the rule:
//! the range rules are `validator` attributes on the fields, and what
//! relates several keys (a fallback naming another provider, a burst for a
//! limit that is on) is checked by hand after them. A bad value is told
//! with its dotted key (as README names it) and where it came from: the
//! environment variable that was set, with its value, or the file.

use crate::protocol::BackpressurePolicy;
use crate::protocol::validate::{FieldError, FieldNames, validation_errors};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use validator::Validate;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[validate(nested)]
    pub server: ServerConfig,
    #[validate(nested)]
    pub streams: StreamsConfig,
    #[validate(nested)]
    pub session: SessionConfig,
    #[validate(nested)]
    pub sessions: SessionsConfig,
    #[validate(nested)]
    pub backpressure: BackpressureConfig,
    #[validate(nested)]
    pub routing: RoutingConfig,
    #[validate(nested)]
    pub http: HttpConfig,
    #[validate(nested)]
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub limits: RateLimitConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
}

/// Who may connect: JWT verification on the `/ai` handshake. Auth is on
/// when a key is set (exactly one of the two). `Debug` hides the secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 shared secret (env `STREAMGATE_JWT_SECRET`).
    pub jwt_secret: String,
    /// Path of a PEM public key, RSA (RS256) or EC P-256 (ES256) (env
    /// `STREAMGATE_JWT_PUBLIC_KEY`).
    pub jwt_public_key: String,
    /// When set, a token's `iss` must equal it.
    pub issuer: String,
    /// When set, a token's `aud` must contain it.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Abuse limits (GCRA, governor). A `*_per_minute` of 0 turns that limit
/// off. Bursts are the number of requests allowed at once on a full
/// bucket; the bucket then refills at the per-minute rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Events per client, every event but `ai:ack`.
    pub events_per_minute: u32,
    pub events_burst: u32,
    /// `ai:ack` per client: clients send one every 32 tokens or 100 ms per
    /// live stream, so acks have their own, larger budget.
    pub acks_per_minute: u32,
    pub acks_burst: u32,
    /// `ai:stream` per user (JWT `sub`; per client when auth is off).
    pub streams_per_minute: u32,
    pub streams_burst: u32,
    /// New connections per client address: Engine.IO sessions and, apart,
    /// `/ai` joins (a client makes one of each per connection).
    pub connections_per_minute: u32,
    pub connections_burst: u32,
    /// Live connections (Engine.IO sessions: a WebSocket, or a
    /// long-polling session) per client address (0: no cap).
    pub max_connections_per_address: usize,
    /// Live connections in the process (0: no cap).
    pub max_connections: usize,
    /// Clients held in the process, attached or inside their reconnect
    /// window (0: no cap).
    pub max_clients: usize,
    /// Live streams in the process, each an upstream request (0: no cap).
    pub max_live_streams: usize,
    /// Bytes held for replay by all clients together (0: no cap).
    pub max_replay_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// `["*"]` allows any origin. Env `WS_CORS_ORIGIN` takes a comma list.
    #[serde(deserialize_with = "list_or_comma_string")]
    pub cors_origins: Vec<String>,
    /// Largest Engine.IO/Socket.IO packet a client may send, in bytes.
    pub max_payload_bytes: u64,
    /// Engine.IO ping interval and timeout (transport liveness).
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub ping_interval_ms: u64,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub ping_timeout_ms: u64,
    /// socketioxide's per-connection buffer of packets.
    #[validate(range(min = 8, message = "must be at least 8"))]
    pub socket_buffer: usize,
    /// The WebSocket read buffer each connection holds for its whole life
    /// (tungstenite allocates it up front; a larger frame grows it while
    /// it is read). Clients send small frames (acks, heartbeats), so a
    /// small one saves memory per idle connection.
    #[validate(range(min = 256, message = "must be at least 256"))]
    pub ws_read_buffer_bytes: usize,
    /// How long shutdown waits for streams to send their terminal events.
    pub shutdown_grace_ms: u64,
    /// An Engine.IO session that has not joined `/ai` this long after its
    /// handshake is closed.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub connect_timeout_ms: u64,
    /// Peers (IP addresses or CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the real client address. Env
    /// `STREAMGATE_SERVER__TRUSTED_PROXIES` takes a comma list.
    #[serde(deserialize_with = "list_or_comma_string")]
    #[validate(custom(function = "ip_networks"))]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_concurrent_streams: usize,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub stream_timeout_ms: u64,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub first_token_timeout_ms: u64,
    /// Once streaming, no token for this long ends the stream with
    /// `ai:stream:error` `timeout` (time the client holds it back is not
    /// counted).
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub idle_timeout_ms: u64,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_prompt_chars: usize,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_tokens_limit: u32,
    pub max_messages: usize,
    /// Bytes of all `messages[].content` together.
    pub max_messages_bytes: usize,
    pub max_agent_context_bytes: usize,
    /// Empty means any model.
    pub allowed_models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    #[validate(range(min = 100, message = "must be at least 100"))]
    pub heartbeat_interval_ms: u64,
    pub reconnect_window_ms: u64,
    /// Per stream: emitted tokens kept (until acknowledged) so that a
    /// resume can send again what a dropped connection swallowed.
    pub replay_buffer_tokens: usize,
    pub replay_buffer_bytes: usize,
    /// The byte cap while a client has never sent `ai:ack`: nothing it
    /// says bounds the records, which every stream of every such client
    /// would otherwise fill.
    pub replay_unacked_bytes: usize,
    /// Per client: bytes kept for replay across all its streams, ended
    /// ones included; past it the oldest entries go first.
    pub replay_bytes_per_client: usize,
}

/// Conversations the gateway keeps (`sessionId` on `ai:stream`): the
/// bounds that keep their memory finite. Per session: `max_messages` and
/// `max_bytes` (message text), the oldest turns dropped first; idle for
/// `ttl_ms` and it is gone. Per user: `max_per_user` sessions, the least
/// recently used evicted first. For the process: `max_total` sessions and
/// `max_total_bytes` of text, least recently used (of any user) evicted
/// first, because `max_per_user` × users is bounded by nothing. (`session`
/// above is the connection's life: heartbeat, reconnect window.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Messages per session (a turn is one or two: prompt and reply).
    #[validate(range(min = 2, message = "must be at least 2 (one turn)"))]
    pub max_messages: usize,
    /// Bytes of message text per session.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_bytes: usize,
    /// Idle time after which a session is gone.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub ttl_ms: u64,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_per_user: usize,
    /// Sessions in the whole process, every user together.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_total: usize,
    /// Bytes of message text in the whole process.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub max_total_bytes: usize,
}

/// Many nodes on one Redis (PROTOCOL.md part 2, "Many nodes"). Off while
/// `url` is empty: then nothing connects to Redis and every node is alone,
/// as before. With a `url`, sessions, per-user stream limits, the node's
/// liveness and its figures live in Redis under `key_prefix`, so several
/// gateways sharing one Redis (and one prefix) answer as one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`, `unix://`); empty: off
    /// (env `REDIS_URL`).
    #[validate(custom(function = "redis_url"))]
    pub url: String,
    /// This node's name among the nodes; empty: `<hostname>-<pid>`.
    #[validate(length(max = 64, message = "must be at most 64 characters"))]
    pub node_id: String,
    /// Put before every key, so several gateways (or tests) can share one
    /// Redis without seeing each other.
    #[validate(length(min = 1, max = 64, message = "must be 1 to 64 characters"))]
    pub key_prefix: String,
    /// How often a node says it is alive and publishes its figures; it
    /// counts as gone after 3 intervals without.
    #[validate(range(min = 100, message = "must be at least 100"))]
    pub heartbeat_interval_ms: u64,
    /// The base URL other nodes reach this node's HTTP door at (they
    /// forward a resumed or cancelled HTTP stream to the node running
    /// it); empty: `http://<server.host>:<port>`, with the hostname for
    /// an unspecified host (`0.0.0.0`, `::`).
    #[validate(custom(function = "http_url"))]
    pub advertise_url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            node_id: String::new(),
            key_prefix: "sg:".into(),
            heartbeat_interval_ms: 1_000,
            advertise_url: String::new(),
        }
    }
}

impl RedisConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

fn http_url(url: &str) -> Result<(), validator::ValidationError> {
    if url.is_empty() || url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        let mut e = validator::ValidationError::new("http_url");
        e.message = Some("must be empty or an http:// (https://) URL".into());
        Err(e)
    }
}

fn redis_url(url: &str) -> Result<(), validator::ValidationError> {
    let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if url.is_empty() || schemes.iter().any(|s| url.starts_with(s)) {
        Ok(())
    } else {
        let mut e = validator::ValidationError::new("redis_url");
        e.message = Some("must be empty or a redis:// (rediss://, unix://) URL".into());
        Err(e)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Queued events per client before backpressure engages.
    #[validate(range(min = 2, message = "must be at least 2"))]
    pub threshold: usize,
    pub policy: BackpressurePolicy,
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub ack_window: usize,
    pub max_bytes_per_client: usize,
    pub slow_client_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Provider for requests that name none.
    pub default_provider: String,
    /// The agents file; empty means the copy of `config/agents.toml` built
    /// into the binary, so the gateway starts from any directory.
    pub agents_file: String,
    /// Below this intent-router confidence a prompt goes to the default agent.
    #[validate(range(min = 0.0, max = 1.0, message = "must be between 0.0 and 1.0"))]
    pub min_confidence: f64,
    /// Pause before fallback attempt `n` (n × this), so a failing upstream
    /// is not hammered and a flapping one gets a moment to recover.
    pub fallback_backoff_ms: u64,
    /// A provider to ask when the rules are unsure (below
    /// `min_confidence`); empty turns the LLM router off.
    pub llm_provider: String,
    /// Its model; empty means the provider's default model.
    pub llm_model: String,
    /// How long the stream waits for the LLM router's answer before the
    /// rules' decision stands.
    #[validate(range(min = 1, message = "must be at least 1"))]
    pub llm_timeout_ms: u64,
}

/// The HTTP doors (`/api/chat/stream`, `/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A `: keep-alive` comment is sent on an event stream after this long
    /// with nothing else sent, so proxies do not time out a slow first token.
    #[validate(range(min = 100, message = "must be at least 100"))]
    pub sse_keepalive_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            sse_keepalive_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Ollama,
    /// Any OpenAI-compatible `/v1/chat/completions` server.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    Simulated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    #[validate(length(min = 1, message = "must not be empty"))]
    pub default_model: String,
    pub connect_timeout_ms: u64,
    /// Providers tried in order when this one cannot serve a stream before
    /// its first token.
    pub fallback: Vec<String>,
    /// `simulated` only: pace of the generated tokens (0 = as fast as possible).
    #[validate(custom(function = "finite_non_negative"))]
    pub tokens_per_second: f64,
    /// `simulated` only: tokens per reply when the request sets no maxTokens.
    pub reply_tokens: u32,
    /// `openai`/`anthropic`: the environment variable holding the API key
    /// (read once at startup, never logged). Empty means the SDK's usual
    /// name: `OPENAI_API_KEY` or `ANTHROPIC_API_KEY`. An unset variable
    /// means no key (fine for local OpenAI-compatible servers).
    pub api_key_env: String,
    /// `anthropic`: `max_tokens` when the request sets none (the Messages
    /// API requires one).
    pub max_tokens_default: u32,
    /// Whether requests with `tools` may go to this provider (unset: yes,
    /// but for `simulated`). A model that cannot take them: say `false`.
    pub accepts_tools: Option<bool>,
    /// Whether requests with images may go to this provider (unset: yes,
    /// but for `simulated`).
    pub accepts_images: Option<bool>,
    /// Live streams this provider serves at once (0: only the process
    /// cap, `limits.max_live_streams`).
    pub max_streams: usize,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            kind: ProviderKind::Simulated,
            base_url: String::new(),
            default_model: String::new(),
            connect_timeout_ms: 2_000,
            fallback: Vec::new(),
            tokens_per_second: 50.0,
            reply_tokens: 64,
            api_key_env: String::new(),
            max_tokens_default: 4_096,
            accepts_tools: None,
            accepts_images: None,
            max_streams: 0,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut providers = BTreeMap::new();
        providers.insert(
            "ollama".to_string(),
            ProviderConfig {
                kind: ProviderKind::Ollama,
                base_url: "http://localhost:11434".into(),
                default_model: "llama3.2".into(),
                fallback: vec!["simulated".into()],
                ..ProviderConfig::default()
            },
        );
        providers.insert(
            "simulated".to_string(),
            ProviderConfig {
                kind: ProviderKind::Simulated,
                default_model: "simulated-1".into(),
                ..ProviderConfig::default()
            },
        );
        Self {
            server: ServerConfig::default(),
            streams: StreamsConfig::default(),
            session: SessionConfig::default(),
            sessions: SessionsConfig::default(),
            backpressure: BackpressureConfig::default(),
            routing: RoutingConfig::default(),
            http: HttpConfig::default(),
            redis: RedisConfig::default(),
            auth: AuthConfig::default(),
            limits: RateLimitConfig::default(),
            providers,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3000,
            cors_origins: vec!["*".into()],
            max_payload_bytes: 1_048_576,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            socket_buffer: 128,
            ws_read_buffer_bytes: 1024,
            shutdown_grace_ms: 2_000,
            connect_timeout_ms: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 10,
            stream_timeout_ms: 300_000,
            first_token_timeout_ms: 60_000,
            idle_timeout_ms: 30_000,
            max_prompt_chars: 32_768,
            max_tokens_limit: 8_192,
            max_messages: 256,
            max_messages_bytes: 262_144,
            max_agent_context_bytes: 16_384,
            allowed_models: Vec::new(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 30_000,
            reconnect_window_ms: 30_000,
            replay_buffer_tokens: 1_024,
            replay_buffer_bytes: 262_144,
            replay_unacked_bytes: 32_768,
            replay_bytes_per_client: 1_048_576,
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            max_messages: 200,
            max_bytes: 524_288,
            ttl_ms: 86_400_000,
            max_per_user: 100,
            max_total: 10_000,
            max_total_bytes: 268_435_456,
        }
    }
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        Self {
            threshold: 100,
            policy: BackpressurePolicy::Coalesce,
            ack_window: 256,
            max_bytes_per_client: 1_048_576,
            slow_client_timeout_ms: 30_000,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            jwt_public_key: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 30,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            events_per_minute: 1_800,
            events_burst: 120,
            acks_per_minute: 60_000,
            acks_burst: 1_000,
            streams_per_minute: 900,
            streams_burst: 60,
            connections_per_minute: 600,
            connections_burst: 200,
            max_connections_per_address: 500,
            max_connections: 10_000,
            max_clients: 10_000,
            max_live_streams: 1_000,
            max_replay_bytes: 268_435_456,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = if self.jwt_secret.is_empty() {
            ""
        } else {
            "[redacted]"
        };
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &secret)
            .field("jwt_public_key", &self.jwt_public_key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl AuthConfig {
    /// Is a key configured (and so authentication on)?
    pub fn enabled(&self) -> bool {
        !self.jwt_secret.is_empty() || !self.jwt_public_key.is_empty()
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_provider: "ollama".into(),
            agents_file: String::new(),
            min_confidence: 0.3,
            fallback_backoff_ms: 100,
            llm_provider: String::new(),
            llm_model: String::new(),
            llm_timeout_ms: 1_500,
        }
    }
}

/// Environment names kept from earlier deployments, and the key each sets.
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("WS_PORT", "server.port"),
    ("WS_CORS_ORIGIN", "server.cors_origins"),
    ("MAX_CONCURRENT_STREAMS", "streams.max_concurrent_streams"),
    ("STREAM_TIMEOUT", "streams.stream_timeout_ms"),
    ("RECONNECT_TIMEOUT", "session.reconnect_window_ms"),
    ("BACKPRESSURE_THRESHOLD", "backpressure.threshold"),
    ("OLLAMA_BASE_URL", "providers.ollama.base_url"),
    ("OLLAMA_DEFAULT_MODEL", "providers.ollama.default_model"),
    ("OPENAI_BASE_URL", "providers.openai.base_url"),
    ("ANTHROPIC_BASE_URL", "providers.anthropic.base_url"),
    ("REDIS_URL", "redis.url"),
    // Named in docs/protocol.md; without the mapping the `STREAMGATE_` prefix
    // below would read them as top-level keys.
    ("STREAMGATE_JWT_SECRET", "auth.jwt_secret"),
    ("STREAMGATE_JWT_PUBLIC_KEY", "auth.jwt_public_key"),
];

/// Providers that the official SDKs' environment variables set up: when
/// either variable is set (non-empty), a provider of that name and kind is
/// added under the config file, so the file can still change any of it and
/// `*_BASE_URL` (in [`LEGACY_ENV`]) overrides its base URL. When neither is
/// set the provider does not exist: an unconfigured cloud API must not make
/// startup fail, nor `/readyz` probe the internet.
pub const SDK_PROVIDERS: &[(&str, ProviderKind, &str, &str)] = &[
    (
        "openai",
        ProviderKind::Openai,
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
    ),
    (
        "anthropic",
        ProviderKind::Anthropic,
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
    ),
];

impl ProviderKind {
    /// The provider `SDK_PROVIDERS` adds for this kind, before the file and
    /// the environment apply.
    pub fn sdk_defaults(self) -> ProviderConfig {
        let (base_url, default_model) = match self {
            ProviderKind::Openai => ("https://api.openai.com", "gpt-4o-mini"),
            ProviderKind::Anthropic => ("https://api.anthropic.com", "claude-3-5-haiku-latest"),
            ProviderKind::Ollama => ("http://localhost:11434", "llama3.2"),
            ProviderKind::Simulated => ("", "simulated-1"),
        };
        ProviderConfig {
            kind: self,
            base_url: base_url.into(),
            default_model: default_model.into(),
            connect_timeout_ms: 5_000,
            ..ProviderConfig::default()
        }
    }
}

/// Startup stops on this, with the key and the rule in the message, and
/// where the value came from when it was not a default.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("config: {key} {rule}{}", from_clause(from))]
    Invalid {
        key: String,
        rule: String,
        /// `NAME=value` of the variable that set it, or the file.
        from: Option<String>,
    },
}

fn from_clause(from: &Option<String>) -> String {
    from.as_ref()
        .map(|f| format!(" (from {f})"))
        .unwrap_or_default()
}

impl ConfigError {
    fn invalid(key: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            rule: rule.into(),
            from: None,
        }
    }

    /// Say where the value of the key came from.
    fn traced(self, figment: &Figment) -> Self {
        match self {
            Self::Invalid { key, rule, .. } => Self::Invalid {
                from: source_of(&key, figment),
                key,
                rule,
            },
            other => other,
        }
    }

    /// A figment error, told by its dotted key and its source when it has
    /// a key (an unknown key keeps figment's own words).
    fn from_figment(e: figment::Error, figment: &Figment) -> Self {
        if e.path.is_empty() {
            return Self::Load(Box::new(e));
        }
        let key = e.path.join(".").to_lowercase();
        Self::invalid(key, format!(": {}", e.kind)).traced(figment)
    }
}

/// Where the value of `key` came from: the environment variable that set
/// it (`NAME=value`; the value hidden for secrets), or the file. The
/// environment is read in the order the layers apply (`STREAMGATE_…`
/// last, so it wins).
fn source_of(key: &str, figment: &Figment) -> Option<String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let shown = |name: &str, value: String| {
        if key.contains("secret") {
            format!("{name} (value hidden)")
        } else {
            format!("{name}={value}")
        }
    };
    let prefixed = format!("STREAMGATE_{}", key.replace('.', "__").to_uppercase());
    if let Some(v) = set(&prefixed) {
        return Some(shown(&prefixed, v));
    }
    if let Some((name, _)) = LEGACY_ENV.iter().find(|(_, k)| *k == key)
        && let Some(v) = set(name)
    {
        return Some(shown(name, v));
    }
    match figment.find_metadata(key)?.source.as_ref()? {
        figment::Source::File(path) => Some(path.display().to_string()),
        _ => None,
    }
}

impl Config {
    /// Defaults, then `file` (when given; it must exist), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        for (name, kind, base_env, key_env) in SDK_PROVIDERS {
            let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
            if set(base_env) || set(key_env) {
                let key = format!("providers.{name}");
                figment = figment.merge(Serialized::default(&key, kind.sdk_defaults()));
            }
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::invalid(
                    "--config",
                    format!("names a file that does not exist: {}", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        // An empty variable counts as unset (as in `OPENAI_BASE_URL=` in an env file).
        let set_legacy: Vec<&str> = LEGACY_ENV
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
            .collect();
        let legacy = Env::raw().only(&set_legacy).map(|k| {
            LEGACY_ENV
                .iter()
                .find(|(name, _)| k.as_str().eq_ignore_ascii_case(name))
                .map(|(_, key)| (*key).into())
                .unwrap_or_else(|| k.into())
        });
        figment = figment.merge(legacy).merge(
            Env::prefixed("STREAMGATE_")
                .split("__")
                // STREAMGATE_LOG_FORMAT is the command line's (--log-format).
                .ignore(&["jwt_secret", "jwt_public_key", "log_format"]),
        );
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::from_figment(e, &figment))?;
        config.validate().map_err(|e| e.traced(&figment))?;
        Ok(config)
    }

    /// Every rule, the first broken one reported with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let first = |e: validator::ValidationErrors, prefix: &str| {
            let f = validation_errors(e, FieldNames::AsIs).0.remove(0);
            ConfigError::invalid(format!("{prefix}{}", f.field), f.rule)
        };
        Validate::validate(self).map_err(|e| first(e, ""))?;
        for (name, p) in &self.providers {
            p.validate()
                .map_err(|e| first(e, &format!("providers.{name}.")))?;
        }
        self.check_relations()
            .map_err(|f| ConfigError::invalid(f.field, f.rule))
    }

    /// Rules that relate several keys.
    fn check_relations(&self) -> Result<(), FieldError> {
        let bad = |key: &str, rule: String| Err(FieldError::new(key, rule));
        if !self.routing.llm_provider.is_empty()
            && !self.providers.contains_key(&self.routing.llm_provider)
        {
            return bad(
                "routing.llm_provider",
                "must be empty or name a configured provider".into(),
            );
        }
        if !self.auth.jwt_secret.is_empty() && !self.auth.jwt_public_key.is_empty() {
            return bad(
                "auth.jwt_secret",
                "and auth.jwt_public_key must not both be set (one key type pins the algorithm)"
                    .into(),
            );
        }
        if self.sessions.max_bytes > self.sessions.max_total_bytes {
            return bad(
                "sessions.max_bytes",
                "must be at most sessions.max_total_bytes (one session must fit)".into(),
            );
        }
        let l = &self.limits;
        for (key, rate, burst) in [
            ("limits.events_burst", l.events_per_minute, l.events_burst),
            ("limits.acks_burst", l.acks_per_minute, l.acks_burst),
            (
                "limits.streams_burst",
                l.streams_per_minute,
                l.streams_burst,
            ),
            (
                "limits.connections_burst",
                l.connections_per_minute,
                l.connections_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return bad(key, "must be at least 1 while its limit is on".into());
            }
        }
        let configured = || {
            self.providers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.providers.contains_key(&self.routing.default_provider) {
            return bad(
                "routing.default_provider",
                format!("must name a configured provider ({})", configured()),
            );
        }
        for (name, p) in &self.providers {
            let key = |k: &str| format!("providers.{name}.{k}");
            if p.kind != ProviderKind::Simulated
                && !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
            {
                return bad(
                    &key("base_url"),
                    "must be an http:// or https:// URL".into(),
                );
            }
            if p.kind == ProviderKind::Anthropic && p.max_tokens_default == 0 {
                return bad(&key("max_tokens_default"), "must be at least 1".into());
            }
            if let Some(f) = p
                .fallback
                .iter()
                .find(|f| *f == name || !self.providers.contains_key(*f))
            {
                return bad(
                    &key("fallback"),
                    format!("must name other configured providers (got {f:?})"),
                );
            }
        }
        Ok(())
    }

    pub fn stream_timeout(&self) -> Duration {
        Duration::from_millis(self.streams.stream_timeout_ms)
    }

    pub fn first_token_timeout(&self) -> Duration {
        Duration::from_millis(self.streams.first_token_timeout_ms)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.session.heartbeat_interval_ms)
    }
}

/// An IP address (`10.1.2.3`, `::1`) or a CIDR block (`10.0.0.0/8`).
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Every entry an IP address or a CIDR block.
fn ip_networks(list: &[String]) -> Result<(), validator::ValidationError> {
    match list.iter().find(|p| parse_network(p).is_none()) {
        None => Ok(()),
        Some(bad) => Err(validator::ValidationError::new("ip_networks")
            .with_message(format!("must list IP addresses or CIDR blocks (got {bad:?})").into())),
    }
}

fn finite_non_negative(v: f64) -> Result<(), validator::ValidationError> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(validator::ValidationError::new("finite")
            .with_message("must be a finite number >= 0".into()))
    }
}

fn list_or_comma_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::One(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let from_file: Config = Figment::new()
            .merge(Toml::file(&path))
            .extract()
            .expect("config/default.toml parses");
        assert_eq!(from_file, Config::default());
    }

    #[test]
    fn sdk_providers_are_valid_and_need_http_urls() {
        let mut c = Config::default();
        for (name, kind, _, _) in SDK_PROVIDERS {
            c.providers.insert(name.to_string(), kind.sdk_defaults());
        }
        c.validate().unwrap();
        c.providers.get_mut("openai").unwrap().base_url = "api.openai.com".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("providers.openai.base_url"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let mut c = Config::default();
        c.streams.max_concurrent_streams = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("streams.max_concurrent_streams"), "{e}");
        let mut c = Config::default();
        c.providers.get_mut("ollama").unwrap().fallback = vec!["nope".into()];
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("providers.ollama.fallback"), "{e}");
    }
}
