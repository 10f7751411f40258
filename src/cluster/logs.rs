//! [`StreamLogs`]: every `/ai` stream's events in Redis as its node
//! produces them, so that when that node dies a resume on another node
//! still delivers what the stream had produced before `node_lost`.
//!
//! Keys: `{prefix}log:{client}:{stream}` is a Redis stream per gateway
//! stream, one entry per event or run of tokens (its name as the field,
//! its payload as the value) under an id made from the stream's position
//! ([`LogId`]): a delta at position `n` is `n-0` (a run of tokens has its
//! last one's), the start `0-1`, the completion and terminal events come
//! after the last delta, so an `XRANGE` from `(n+1)-0` holds what a
//! client that has position `n` lacks (a run may begin before it: the
//! reader skips what it has), and `XTRIM MINID` after an ack drops what
//! it has. Writes go on a connection of their own. Each log is
//! capped (`MAXLEN ~`) and expires (`PEXPIRE`, renewed by every write)
//! a while after its last event. `{prefix}logs:{client}` is the set of a
//! client's logged streams; `{prefix}cred:{client}` the client's owner and
//! the SHA-256 of its current resume token, so another node can check a
//! resume without the home. Writes come in batches ([`StreamLogs::write`]:
//! one pipeline, one round trip); this module knows no client, outbox or
//! socket: ids, names and JSON text only.

use super::link::{ClusterError, RedisLink};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Entries one stream's log keeps at most (approximately).
const LOG_CAP: usize = 8_192;

/// A log entry's id: `(position, sequence)`, always increasing per log.
pub type LogId = (u64, u64);

/// One change to the logs.
#[derive(Debug, Clone)]
pub enum LogWrite {
    /// Append an event to `client`'s log of `stream`.
    Event {
        client: Arc<str>,
        stream: Arc<str>,
        id: LogId,
        name: &'static str,
        payload: String,
    },
    /// The client has everything of `stream` up to `position`.
    Trim {
        client: Arc<str>,
        stream: Arc<str>,
        position: u64,
    },
}

/// What another node needs to check a resume: the client's owner and its
/// resume token's digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    /// The client's log (its first id; its id changes with each resume).
    pub log: String,
    pub owner: Option<String>,
    /// Lowercase hex SHA-256 of the resume token.
    pub token_sha256: String,
}

/// The logs in Redis.
pub struct StreamLogs {
    link: Arc<RedisLink>,
    /// How long a log outlives its last write.
    keep: Duration,
    /// The writes' own connection (made on first use and again after a
    /// failure), so that a batch of thousands of commands never holds up
    /// a resume, a session or a heartbeat on the shared one.
    writer: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

/// How long one batch may take before it counts as refused.
const WRITE_WITHIN: Duration = Duration::from_secs(5);

impl StreamLogs {
    pub fn new(link: Arc<RedisLink>, keep: Duration) -> Self {
        Self {
            link,
            keep,
            writer: tokio::sync::Mutex::new(None),
        }
    }

    fn log_key(&self, client: &str, stream: &str) -> String {
        self.link.key(&format!("log:{client}:{stream}"))
    }

    fn set_key(&self, client: &str) -> String {
        self.link.key(&format!("logs:{client}"))
    }

    fn cred_key(&self, client: &str) -> String {
        self.link.key(&format!("cred:{client}"))
    }

    /// Apply `batch` in one round trip (each log touched renewed once).
    pub async fn write(&self, batch: &[LogWrite]) -> Result<(), ClusterError> {
        let keep = self.keep.as_millis() as i64;
        let mut pipe = redis::pipe();
        let mut touched: Vec<(&str, &str)> = Vec::new();
        for w in batch {
            match w {
                LogWrite::Event {
                    client,
                    stream,
                    id,
                    name,
                    payload,
                } => {
                    pipe.cmd("XADD")
                        .arg(self.log_key(client, stream))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(LOG_CAP)
                        .arg(format!("{}-{}", id.0, id.1))
                        .arg(*name)
                        .arg(payload)
                        .ignore();
                    if !touched.contains(&(client, stream)) {
                        touched.push((client, stream));
                    }
                }
                LogWrite::Trim {
                    client,
                    stream,
                    position,
                } => {
                    pipe.cmd("XTRIM")
                        .arg(self.log_key(client, stream))
                        .arg("MINID")
                        .arg(format!("{}-0", position + 1))
                        .ignore();
                }
            }
        }
        for (client, stream) in touched {
            let set = self.set_key(client);
            pipe.pexpire(self.log_key(client, stream), keep)
                .ignore()
                .sadd(&set, stream)
                .ignore()
                .pexpire(&set, keep)
                .ignore();
        }
        let mut slot = self.writer.lock().await;
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.link.own_connection(Some(WRITE_WITHIN)).await?,
        };
        let r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        if r.is_ok() {
            *slot = Some(conn);
        }
        self.link.observe(r)
    }

    /// The events of `client`'s `stream` after position `after` (all of
    /// them, the start included, when `None`), in order, as `(name,
    /// payload)`.
    pub async fn read(
        &self,
        client: &str,
        stream: &str,
        after: Option<u64>,
    ) -> Result<Vec<(String, String)>, ClusterError> {
        let from = after.map_or_else(|| "-".to_string(), |n| format!("{}-0", n + 1));
        type Entries = Vec<(String, Vec<String>)>;
        let r: redis::RedisResult<Entries> = redis::cmd("XRANGE")
            .arg(self.log_key(client, stream))
            .arg(from)
            .arg("+")
            .query_async(&mut self.link.conn())
            .await;
        let entries = self.link.observe(r)?;
        let mut events = Vec::with_capacity(entries.len());
        for (_, fields) in entries {
            for pair in fields.chunks_exact(2) {
                events.push((pair[0].clone(), pair[1].clone()));
            }
        }
        Ok(events)
    }

    /// The streams `client` has logs of.
    pub async fn streams_of(&self, client: &str) -> Result<Vec<String>, ClusterError> {
        let r = redis::cmd("SMEMBERS")
            .arg(self.set_key(client))
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    /// Say who may resume `client` and with what, for `ttl`.
    pub async fn set_credentials(
        &self,
        client: &str,
        credentials: &Credentials,
        ttl: Duration,
    ) -> Result<(), ClusterError> {
        let body =
            serde_json::to_string(credentials).map_err(|e| ClusterError::Data(e.to_string()))?;
        self.link.set_px(&self.cred_key(client), &body, ttl).await
    }

    /// `client`'s credentials, if any node left them.
    pub async fn credentials(&self, client: &str) -> Result<Option<Credentials>, ClusterError> {
        self.link.get_json(&self.cred_key(client)).await
    }

    /// Spend `client`'s credentials: true for the one caller that deleted
    /// them (a resume token is single-use on every node).
    pub async fn spend_credentials(&self, client: &str) -> Result<bool, ClusterError> {
        let r: redis::RedisResult<u64> = redis::cmd("DEL")
            .arg(self.cred_key(client))
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r).map(|n| n == 1)
    }
}
