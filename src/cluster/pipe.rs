//! [`NodeMail`]: how nodes hand a client's traffic to each other, for a
//! client that reconnects on another node than the one running its
//! streams (its home).
//!
//! Three kinds of keys. `{prefix}client:{id}` names a client's home node
//! (set when the client attaches, kept for the reconnect window when it
//! detaches), so any node can find where a resume must go. `{prefix}cmd:
//! {node}` is a Redis stream of [`Command`]s to that node (resume, ack,
//! cancel, touch, detach), read by one blocking reader per node.
//! `{prefix}att:{id}` is a Redis stream per remote attachment: the home
//! node writes the client's rendered events into it in batches (one entry
//! and one round trip per batch, not per token), the attached node
//! tails it with `XREAD BLOCK` and trims what it has read. Credits still
//! hold the home node back: deltas leave its outbox only while the
//! client's acks (forwarded as commands) allow, so the attachment stream
//! holds at most an ack window of deltas plus control events, and it is
//! capped (`MAXLEN ~`) and expires besides. Plain transport: it knows no
//! client, socket or stream; the `/ai` door gives it meaning.

use super::link::{ClusterError, RedisLink};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Entries (batches) an attachment stream keeps at most (approximately).
const ATTACHMENT_CAP: usize = 4_096;
/// Commands a node's stream keeps at most (approximately).
const COMMANDS_CAP: usize = 10_000;
/// How long one blocking read waits before it looks around.
const BLOCK_MS: u64 = 500;

/// What one node asks of another.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Command {
    /// Attach client `previous_client_id` to the sender's connection, as
    /// `ai:reconnect` does; write its events to attachment `att`.
    #[serde(rename_all = "camelCase")]
    Resume {
        att: String,
        from: String,
        previous_client_id: String,
        resume_token: String,
        new_client_id: String,
        owner: Option<String>,
        owner_expires_at: Option<u64>,
        streams: Option<Vec<(String, Option<u64>)>>,
    },
    #[serde(rename_all = "camelCase")]
    Ack {
        client: String,
        stream_id: String,
        token_count: u64,
    },
    #[serde(rename_all = "camelCase")]
    Cancel { client: String, stream_id: String },
    /// The client sent something (its heartbeat clock moves on).
    Touch { client: String },
    /// The connection of attachment `att` closed.
    Detach { client: String, att: String },
}

/// One event of an attachment: its name and its payload as JSON text.
/// The name `""` is the home node's last word (the attachment ended).
pub type Entry = (String, String);

/// Sending and reading commands and attachment streams.
pub struct NodeMail {
    link: Arc<RedisLink>,
    /// How long a client's home is kept once it detached.
    reconnect_window: Duration,
}

impl NodeMail {
    pub fn new(link: Arc<RedisLink>, reconnect_window: Duration) -> Self {
        Self {
            link,
            reconnect_window,
        }
    }

    pub fn link(&self) -> &Arc<RedisLink> {
        &self.link
    }

    /// Say that client `id` lives here: for a day while it is attached
    /// (renewed at every attach), for the reconnect window once it
    /// detached.
    pub async fn set_home(&self, id: &str, attached: bool) -> Result<(), ClusterError> {
        let ttl = if attached {
            Duration::from_secs(86_400)
        } else {
            self.reconnect_window
        };
        let key = self.link.key(&format!("client:{id}"));
        self.link.set_px(&key, self.link.node(), ttl).await
    }

    /// The node client `id` lives on, if any says so.
    pub async fn home_of(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let r = redis::cmd("GET")
            .arg(self.link.key(&format!("client:{id}")))
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    /// Where `node`'s HTTP door is, if it is alive and said so.
    pub async fn url_of(&self, node: &str) -> Result<Option<String>, ClusterError> {
        let key = self.link.key(&format!("node:{node}"));
        let figures: Option<super::NodeFigures> = self.link.get_json(&key).await?;
        Ok(figures.and_then(|f| f.url))
    }

    /// Whether `node`'s liveness key is there.
    pub async fn is_alive(&self, node: &str) -> Result<bool, ClusterError> {
        let r = redis::cmd("EXISTS")
            .arg(self.link.key(&format!("node:{node}")))
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    pub async fn send(&self, node: &str, cmd: &Command) -> Result<(), ClusterError> {
        let body = serde_json::to_string(cmd).map_err(|e| ClusterError::Data(e.to_string()))?;
        let key = self.link.key(&format!("cmd:{node}"));
        // A node that is gone for a day leaves no command stream behind.
        let r: redis::RedisResult<()> = redis::pipe()
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(COMMANDS_CAP)
            .arg("*")
            .arg("c")
            .arg(body)
            .ignore()
            .pexpire(&key, 86_400_000)
            .ignore()
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    /// Append `batch` to attachment `att` as one entry (a JSON array of
    /// `[name, payload]`), in one round trip.
    pub async fn write(&self, att: &str, batch: &[Entry]) -> Result<(), ClusterError> {
        let key = self.link.key(&format!("att:{att}"));
        let mut body = String::from("[");
        for (i, (name, payload)) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let name =
                serde_json::to_string(name).map_err(|e| ClusterError::Data(e.to_string()))?;
            body.push_str(&format!("[{name},{payload}]"));
        }
        body.push(']');
        let r: redis::RedisResult<()> = redis::pipe()
            .cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(ATTACHMENT_CAP)
            .arg("*")
            .arg("b")
            .arg(body)
            .ignore()
            .pexpire(&key, self.reconnect_window.as_millis() as i64 + 60_000)
            .ignore()
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    /// A reader of this node's commands, from now on: after the newest
    /// entry there is now (`$` would mean "after the newest" anew at each
    /// read, and lose what came in between two reads).
    pub async fn commands(&self) -> Result<Tail, ClusterError> {
        let key = self.link.key(&format!("cmd:{}", self.link.node()));
        type Newest = Vec<(String, Vec<String>)>;
        let r: redis::RedisResult<Newest> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.link.conn())
            .await;
        let from = self
            .link
            .observe(r)?
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id);
        Tail::open(self.link.clone(), key, from, false).await
    }

    /// A reader of attachment `att` from its start, trimming what it read.
    pub async fn attachment(&self, att: &str) -> Result<Tail, ClusterError> {
        let key = self.link.key(&format!("att:{att}"));
        Tail::open(self.link.clone(), key, "0".into(), true).await
    }
}

/// One blocking reader of one Redis stream, on a connection of its own.
pub struct Tail {
    link: Arc<RedisLink>,
    conn: redis::aio::MultiplexedConnection,
    key: String,
    last: String,
    trim: bool,
}

type ReadReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

impl Tail {
    async fn open(
        link: Arc<RedisLink>,
        key: String,
        from: String,
        trim: bool,
    ) -> Result<Self, ClusterError> {
        let conn = link.dedicated().await?;
        Ok(Self {
            link,
            conn,
            key,
            last: from,
            trim,
        })
    }

    /// The next entries (waiting up to half a second; empty when none
    /// came), each as its field values in order.
    pub async fn next(&mut self) -> Result<Vec<Vec<String>>, ClusterError> {
        let r: redis::RedisResult<ReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last)
            .query_async(&mut self.conn)
            .await;
        let reply = self.link.observe(r)?;
        let mut out = Vec::new();
        for (_, entries) in reply.into_iter().flatten() {
            for (id, fields) in entries {
                self.last = id;
                // Field names and values alternate: keep the values.
                out.push(fields.into_iter().skip(1).step_by(2).collect());
            }
        }
        if self.trim && !out.is_empty() {
            let r: redis::RedisResult<()> = redis::cmd("XTRIM")
                .arg(&self.key)
                .arg("MINID")
                .arg(&self.last)
                .query_async(&mut self.conn)
                .await;
            let _ = self.link.observe(r);
        }
        Ok(out)
    }
}

/// The events of one attachment entry, as [`NodeMail::write`] wrote them.
pub fn batch_of(fields: &[String]) -> Vec<(String, Box<serde_json::value::RawValue>)> {
    fields
        .first()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default()
}

impl Command {
    /// The command in field values as [`Tail::next`] gives them.
    pub fn from_fields(fields: &[String]) -> Option<Self> {
        serde_json::from_str(fields.first()?).ok()
    }
}
