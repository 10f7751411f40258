//! The [`App`]: every engine part, built once from a [`Config`].
//!
//! This is the one place where the engine's parts are made and given to
//! each other: providers, orchestrator, clients, the relay, the session
//! store, rate limits, the connection table, authentication, counters and
//! the shutdown tree, and where the engine's periodic work (rate-limit
//! keys, idle sessions, giving freed memory back) is started. Doors (the
//! `/ai` socket, ops endpoints, HTTP) receive an `Arc<App>` and call into
//! its parts; the app names no door, so nothing here depends on a
//! transport. At startup it asks every provider once whether it can be
//! reached, so that a missing model server is said once, then.

use crate::auth::{AuthSetupError, Authenticator};
use crate::clients::{Client, Clients};
use crate::cluster::{
    ClusterError, Credentials, Heartbeat, NodeMail, RedisLink, RedisStore, SharedStreamLimit,
    StreamLogs,
};
use crate::config::Config;
use crate::connections::Connections;
use crate::error::ProviderError;
use crate::orchestrator::Orchestrator;
use crate::orchestrator::agents::AgentsError;
use crate::outbox::{MirrorOp, OutboxSettings};
use crate::protocol::{BackpressurePolicy, RequestBounds};
use crate::rate_limit::RateLimits;
use crate::relay::{Relay, StreamSettings, StreamSlots};
use crate::sessions::{MemoryStore, SessionStore};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use crate::upstream::ProviderSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct App {
    pub config: Arc<Config>,
    pub providers: Arc<ProviderSet>,
    pub orchestrator: Arc<Orchestrator>,
    pub clients: Clients,
    pub relay: Relay,
    /// Conversations kept for `sessionId` (in memory by default; the same
    /// store the relay holds).
    pub sessions: Arc<dyn SessionStore>,
    /// Rate limits shared by all connections (per address, per user).
    pub rate_limits: Arc<RateLimits>,
    /// Live connections per client address and in all, with their caps.
    pub connections: Arc<Connections>,
    /// Handshake token check; `None` when auth is off.
    pub auth: Option<Authenticator>,
    pub stats: Arc<Stats>,
    pub shutdown: Shutdown,
    pub started: Instant,
    /// The nodes sharing one Redis; `None` without `redis.url`.
    pub cluster: Option<Cluster>,
}

/// This node's part in a cluster: the Redis link, its heartbeat, the
/// shared session store and the shared per-user stream budget.
pub struct Cluster {
    pub link: Arc<RedisLink>,
    pub heartbeat: Arc<Heartbeat>,
    pub sessions: Arc<RedisStore>,
    /// `None` when `limits.streams_per_minute` is 0.
    pub streams: Option<Arc<SharedStreamLimit>>,
    /// Clients' homes and the traffic of clients attached to another
    /// node than their home.
    pub mail: Arc<NodeMail>,
    /// Requests to other nodes' HTTP doors (an HTTP stream resumed or
    /// cancelled here that another node runs).
    pub peers: reqwest::Client,
    /// Every `/ai` stream's events in Redis, and clients' credentials.
    pub logs: Arc<StreamLogs>,
    /// Where clients' outbox mirrors send what their streams produce; the
    /// `/ai` door takes the receiving end once and writes the logs.
    pub mirror: mpsc::Sender<MirrorOp>,
    pub mirror_rx: Mutex<Option<mpsc::Receiver<MirrorOp>>>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("provider setup failed: {0}")]
    Provider(#[from] ProviderError),
    #[error("agents: {0}")]
    Agents(#[from] AgentsError),
    #[error("auth: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("redis.url: {0}")]
    Redis(#[from] ClusterError),
}

impl App {
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let stats = Arc::new(Stats::default());
        let providers = Arc::new(ProviderSet::from_config(&config)?);
        let orchestrator = Arc::new(Orchestrator::new(providers.clone(), &config)?);
        let auth = Authenticator::from_config(&config.auth)?;
        log_auth(auth.as_ref());
        let shutdown = Shutdown::new(Duration::from_millis(config.server.shutdown_grace_ms));
        let rate_limits = Arc::new(RateLimits::new(&config.limits, stats.clone()));
        let connections = Arc::new(Connections::new(&config.limits, stats.clone()));
        let clients = Clients::new(
            Duration::from_millis(config.session.reconnect_window_ms),
            config.heartbeat_interval(),
            config.limits.max_clients,
            shutdown.clone(),
            stats.clone(),
        );
        let cluster = match config.redis.enabled() {
            true => Some(Cluster::open(&config)?),
            false => None,
        };
        let sessions: Arc<dyn SessionStore> = match &cluster {
            Some(c) => c.sessions.clone(),
            None => Arc::new(MemoryStore::new(&config.sessions)),
        };
        let relay = Relay {
            orchestrator: orchestrator.clone(),
            rate_limits: rate_limits.clone(),
            shared_streams: cluster.as_ref().and_then(|c| c.streams.clone()),
            sessions: sessions.clone(),
            settings: stream_settings(&config),
            slots: StreamSlots::new(config.limits.max_live_streams),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let app = Arc::new(Self {
            config,
            providers,
            orchestrator,
            clients,
            relay,
            sessions,
            rate_limits,
            connections,
            auth,
            stats,
            shutdown,
            started: Instant::now(),
            cluster,
        });
        app.spawn_heartbeat();
        app.spawn_rate_limit_sweeper();
        app.spawn_session_sweeper();
        app.spawn_provider_probe();
        app.spawn_memory_trimmer();
        Ok(app)
    }

    /// Say in Redis that `client` lives on this node (`attached`: for as
    /// long as it is; otherwise for its reconnect window), with what
    /// another node needs to check its resume when this node is gone (its
    /// owner, its resume token's digest, its log), so that a resume on
    /// another node finds it; off the caller's path, nothing without Redis.
    /// `replaces`: the id it had before a resume, whose record and
    /// credentials go (its token is spent).
    pub fn note_home(&self, client: &Client, attached: bool, replaces: Option<&str>) {
        let Some(cluster) = &self.cluster else { return };
        let (mail, logs, id) = (cluster.mail.clone(), cluster.logs.clone(), client.id());
        let credentials = client.outbox.mirror_log().map(|log| Credentials {
            log: log.to_string(),
            owner: client.owner.as_ref().map(|u| u.0.to_string()),
            token_sha256: token_digest(&client.resume_token()),
        });
        let ttl = if attached {
            Duration::from_secs(86_400)
        } else {
            Duration::from_millis(self.config.session.reconnect_window_ms)
        };
        let replaces = replaces.map(str::to_string);
        tokio::spawn(async move {
            let _ = mail.set_home(&id, attached).await;
            if let Some(c) = credentials {
                let _ = logs.set_credentials(&id, &c, ttl).await;
            }
            if let Some(old) = replaces {
                let _ = logs.spend_credentials(&old).await;
            }
        });
    }

    /// The outbox a new client gets, under `policy`.
    pub fn outbox_settings(&self, policy: BackpressurePolicy) -> OutboxSettings {
        let bp = &self.config.backpressure;
        OutboxSettings {
            threshold: bp.threshold,
            max_bytes: bp.max_bytes_per_client,
            ack_window: bp.ack_window as u64,
            policy,
            slow_timeout: Duration::from_millis(bp.slow_client_timeout_ms),
            replay_tokens: self.config.session.replay_buffer_tokens,
            replay_bytes: self.config.session.replay_buffer_bytes,
            replay_unacked_bytes: self.config.session.replay_unacked_bytes,
            replay_bytes_per_client: self.config.session.replay_bytes_per_client,
            max_replay_bytes: self.config.limits.max_replay_bytes,
        }
    }

    /// Say this node is alive (with its figures) and renew its session
    /// leases every heartbeat interval, until shutdown; nothing without
    /// Redis.
    fn spawn_heartbeat(&self) {
        if let Some(c) = &self.cluster {
            tracing::info!(node = %c.link.node(), prefix = c.link.prefix(), "redis on: one node of many");
            let beat = c.heartbeat.clone().run(self.shutdown.root.clone());
            self.shutdown.spawn(beat);
            let renew = c.sessions.clone().renew_leases(self.shutdown.root.clone());
            self.shutdown.spawn(renew);
        }
    }

    /// Give freed memory back to the system after many clients left
    /// (see `memory`), until shutdown.
    fn spawn_memory_trimmer(&self) {
        let (stats, root) = (self.stats.clone(), self.shutdown.root.clone());
        self.shutdown.spawn(async move {
            let mut trimmer = crate::memory::Trimmer::default();
            let mut every = tokio::time::interval(crate::memory::Trimmer::EVERY);
            loop {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = every.tick() => { trimmer.tick(&stats); }
                }
            }
        });
    }

    /// Ask every provider once whether it can be reached, and say so for
    /// those that cannot (streams then say it at debug only).
    fn spawn_provider_probe(&self) {
        let providers = self.providers.clone();
        let root = self.shutdown.root.clone();
        self.shutdown.spawn(async move {
            let probes = providers
                .iter()
                .map(|p| async move { (p, p.probe().await) });
            tokio::select! {
                _ = root.cancelled() => {}
                results = futures_util::future::join_all(probes) => {
                    for (p, result) in results {
                        if let Err(e) = result {
                            crate::relay::note_unreachable(p.as_ref(), &e);
                        }
                    }
                }
            }
        });
    }

    /// Forget idle rate-limit keys every minute, until shutdown.
    fn spawn_rate_limit_sweeper(&self) {
        let (limits, root) = (self.rate_limits.clone(), self.shutdown.root.clone());
        self.shutdown.spawn(async move {
            let mut every = tokio::time::interval(RateLimits::SWEEP_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = every.tick() => limits.sweep(),
                }
            }
        });
    }

    /// Free idle sessions (`sessions.ttl_ms`) every quarter TTL (within
    /// 250 ms..=60 s), until shutdown; lookups expire the ones they touch
    /// in between.
    fn spawn_session_sweeper(&self) {
        let (sessions, root) = (self.sessions.clone(), self.shutdown.root.clone());
        let every = MemoryStore::sweep_every(&self.config.sessions);
        self.shutdown.spawn(async move {
            let mut every = tokio::time::interval(every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = root.cancelled() => return,
                    _ = every.tick() => sessions.sweep().await,
                }
            }
        });
    }
}

impl Cluster {
    fn open(config: &Config) -> Result<Self, ClusterError> {
        let link = Arc::new(RedisLink::open(&config.redis)?);
        let heartbeat = Arc::new(Heartbeat::new(link.clone()));
        let sessions = Arc::new(RedisStore::new(link.clone(), &config.sessions));
        let l = &config.limits;
        let streams = SharedStreamLimit::new(link.clone(), l.streams_per_minute, l.streams_burst)
            .map(Arc::new);
        let window = Duration::from_millis(config.session.reconnect_window_ms);
        let mail = Arc::new(NodeMail::new(link.clone(), window));
        // No proxy from the environment: the nodes talk to each other
        // directly. No overall timeout: a forwarded stream is long.
        let peers = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClusterError::Data(format!("HTTP client for the other nodes: {e}")))?;
        // A stream's log outlives its last event by the reconnect window
        // plus the idle timeout (a live stream is silent no longer).
        let keep = window + Duration::from_millis(config.streams.idle_timeout_ms);
        let logs = Arc::new(StreamLogs::new(link.clone(), keep));
        let (mirror, rx) = mpsc::channel(MIRROR_QUEUE);
        Ok(Self {
            link,
            heartbeat,
            sessions,
            streams,
            mail,
            peers,
            logs,
            mirror,
            mirror_rx: Mutex::new(Some(rx)),
        })
    }
}

/// Events on their way to the stream logs, for the whole node; past it a
/// client's mirror stops (its logs stay a prefix of what was produced).
const MIRROR_QUEUE: usize = 65_536;

/// A resume token's digest as the stream logs keep it (lowercase hex
/// SHA-256).
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stream_settings(config: &Config) -> StreamSettings {
    let s = &config.streams;
    StreamSettings {
        max_concurrent_streams: s.max_concurrent_streams,
        stream_timeout: config.stream_timeout(),
        first_token_timeout: config.first_token_timeout(),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms),
        token_leeway_secs: config.auth.leeway_secs,
        max_replay_bytes: config.limits.max_replay_bytes,
        request_bounds: RequestBounds {
            max_prompt_chars: s.max_prompt_chars,
            max_tokens_limit: s.max_tokens_limit,
            max_messages: s.max_messages,
            max_messages_bytes: s.max_messages_bytes,
            max_agent_context_bytes: s.max_agent_context_bytes,
        },
    }
}

fn log_auth(auth: Option<&Authenticator>) {
    match auth {
        Some(a) => {
            tracing::info!(algorithm = ?a.algorithm(), "auth on: handshakes need a valid JWT")
        }
        None => tracing::warn!(
            "AUTH IS OFF: no auth.jwt_secret / auth.jwt_public_key (env STREAMGATE_JWT_SECRET / \
             STREAMGATE_JWT_PUBLIC_KEY) is set, so anyone who can reach this port can connect \
             and stream; set a key before exposing the gateway"
        ),
    }
}
