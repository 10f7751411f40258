//! [`RedisLink`]: the node's one connection to Redis, its key names, and
//! whether Redis answers.
//!
//! Every command of the cluster module goes through [`RedisLink::observe`],
//! so the reachability state is the outcome of the latest command, and
//! its changes are logged once each (lost, back) however many commands
//! fail in between.

use crate::config::RedisConfig;
use crate::error::GatewayError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What went wrong with Redis. Mapped to `server_busy` (retryable) for a
/// client, through [`GatewayError::SharedStoreUnavailable`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered, but with a shape this gateway did not write.
    #[error("unexpected redis data: {0}")]
    Data(String),
}

impl From<ClusterError> for GatewayError {
    fn from(e: ClusterError) -> Self {
        GatewayError::SharedStoreUnavailable(e.to_string())
    }
}

/// Whether Redis answered the latest command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No command has completed yet.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl LinkState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Up,
            2 => Self::Down,
            _ => Self::Unknown,
        }
    }
}

/// The connection, the prefix and this node's id; shared (`Arc`) by the
/// heartbeat, the session store and the rate limit.
pub struct RedisLink {
    conn: ConnectionManager,
    /// For connections of their own (blocking reads must not hold up the
    /// shared connection's other commands).
    client: redis::Client,
    prefix: Arc<str>,
    node: Arc<str>,
    heartbeat: Duration,
    state: AtomicU8,
    /// Why the latest failure failed (for `/readyz`).
    last_error: Mutex<Option<String>>,
    /// When the link went down (for telling a late reply from a return).
    down_since: Mutex<Option<std::time::Instant>>,
}

/// A success this soon after a loss is a reply that was on its way
/// before it (commands share one multiplexed connection), not Redis back.
const LATE_REPLY: Duration = Duration::from_millis(250);

impl RedisLink {
    /// Set up the connection without waiting for it (it is made on the
    /// first command, and again after every loss); fails only on a URL
    /// the client cannot use.
    pub fn open(config: &RedisConfig) -> Result<Self, ClusterError> {
        let client = redis::Client::open(config.url.as_str())?;
        let heartbeat = Duration::from_millis(config.heartbeat_interval_ms);
        // Commands fail within about one heartbeat when Redis is gone, so
        // a stream admission waits that long at most before falling back.
        let wait = heartbeat.clamp(Duration::from_millis(200), Duration::from_secs(2));
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(wait))
            .set_response_timeout(Some(wait))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(wait);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), settings)?;
        Ok(Self {
            conn,
            client,
            prefix: config.key_prefix.as_str().into(),
            node: node_id(&config.node_id),
            heartbeat,
            state: AtomicU8::new(0),
            last_error: Mutex::new(None),
            down_since: Mutex::new(None),
        })
    }

    /// A handle to send commands on (cheap: the connection is shared).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own, for one reader that blocks (`XREAD
    /// BLOCK`): no response timeout, since a block is an answer that
    /// takes its time.
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
        self.own_connection(None).await
    }

    /// A connection of its own whose replies may take `response_timeout`
    /// at most (`None`: no limit): for traffic that must not queue up the
    /// shared connection's commands behind it (the stream logs' large
    /// pipelines), or wait behind them.
    pub async fn own_connection(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<redis::aio::MultiplexedConnection, ClusterError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.heartbeat.max(Duration::from_millis(200))))
            .set_response_timeout(response_timeout);
        let r = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        self.observe(r)
    }

    /// `prefix` + `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Relaxed))
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Note the outcome of one command and pass it on. A Redis error that
    /// is the server's answer (a script's error, a wrong type) is not a
    /// lost connection and does not change the state.
    pub fn observe<T>(&self, result: redis::RedisResult<T>) -> Result<T, ClusterError> {
        match &result {
            Ok(_) => self.set_state(LinkState::Up, None),
            Err(e) if is_unreachable(e) => self.set_state(LinkState::Down, Some(e.to_string())),
            Err(_) => {}
        }
        result.map_err(ClusterError::from)
    }

    /// `SET key value PX ttl` on the shared connection.
    pub async fn set_px(&self, key: &str, value: &str, ttl: Duration) -> Result<(), ClusterError> {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await;
        self.observe(r)
    }

    /// `GET key`, read as JSON this gateway wrote; `None` when absent.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ClusterError> {
        let r: redis::RedisResult<Option<String>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn())
            .await;
        let Some(body) = self.observe(r)? else {
            return Ok(None);
        };
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|e| ClusterError::Data(e.to_string()))
    }

    /// Ask Redis whether it answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), ClusterError> {
        let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut self.conn()).await;
        self.observe(r).map(drop)
    }

    fn set_state(&self, new: LinkState, error: Option<String>) {
        if new == LinkState::Up && self.is_fresh_loss() {
            return;
        }
        if let Some(e) = &error
            && let Ok(mut last) = self.last_error.lock()
        {
            *last = Some(e.clone());
        }
        let old = LinkState::from_u8(self.state.swap(new as u8, Relaxed));
        if old == new {
            return;
        }
        if let Ok(mut since) = self.down_since.lock() {
            *since = (new == LinkState::Down).then(std::time::Instant::now);
        }
        let url_free = error.as_deref().unwrap_or("");
        match (old, new) {
            (LinkState::Down, LinkState::Up) => {
                tracing::info!(node = %self.node, "redis back: the node is ready again")
            }
            (_, LinkState::Up) => tracing::info!(node = %self.node, "redis connected"),
            (LinkState::Up, _) => tracing::warn!(
                node = %self.node,
                error = url_free,
                "redis lost: the node reports not ready and keeps serving its own streams"
            ),
            _ => tracing::warn!(
                node = %self.node,
                error = url_free,
                "redis unreachable: the node reports not ready until it answers"
            ),
        }
    }
}

impl RedisLink {
    /// Down, and only just.
    fn is_fresh_loss(&self) -> bool {
        self.state() == LinkState::Down
            && self
                .down_since
                .lock()
                .ok()
                .and_then(|s| *s)
                .is_some_and(|t| t.elapsed() < LATE_REPLY)
    }
}

/// A failure that says Redis is not there (not an answer from it).
fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// The configured id, or `<hostname>-<pid>`.
fn node_id(configured: &str) -> Arc<str> {
    if !configured.is_empty() {
        return configured.into();
    }
    let host = hostname().unwrap_or_else(|| format!("node{:08x}", rand::random::<u32>()));
    format!("{host}-{}", std::process::id()).into()
}

/// This machine's name, if it has one.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
