//! The nodes that share one Redis: each one's liveness key and figures
//! ([`Heartbeat`]), and the live nodes read back ([`NodeTable`]) for
//! `GET /stats/cluster`.
//!
//! Keys: `{prefix}node:{id}` holds `{ id, at, stats }` (this node's
//! `/stats` body) with a TTL of 3 heartbeat intervals, so a node that
//! stops beating is gone from the table within that; `{prefix}nodes` is a
//! sorted set of node ids scored by their last beat (ms since the epoch),
//! so the table is found without `KEYS`, and ids older than the TTL are
//! trimmed from it at every beat.

use super::link::{ClusterError, RedisLink};
use crate::protocol::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// How long a stopping node tries to remove itself from the table.
const LEAVE_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Where the heartbeat reads this node's figures (the ops door's
/// `/stats` body); a closure so this module knows no door.
pub type FiguresSource = Arc<dyn Fn() -> Value + Send + Sync>;

/// One node as the table holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFigures {
    pub id: String,
    /// Its last beat (ms since the epoch).
    pub at: u64,
    /// Its `/stats` body at that beat (`{}` before the ops door set the
    /// source).
    pub stats: Value,
    /// Where other nodes reach its HTTP door (`redis.advertise_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Writes this node's liveness and figures every heartbeat interval.
pub struct Heartbeat {
    link: Arc<RedisLink>,
    figures: OnceLock<FiguresSource>,
    /// Set by the server once it is bound (the port may be picked then).
    url: OnceLock<String>,
}

impl Heartbeat {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            link,
            figures: OnceLock::new(),
            url: OnceLock::new(),
        }
    }

    /// Publish what `source` gives at every beat (the first call wins).
    pub fn set_figures(&self, source: FiguresSource) {
        let _ = self.figures.set(source);
    }

    /// Say where other nodes reach this node's HTTP door (the first call
    /// wins; published from the next beat).
    pub fn set_url(&self, url: String) {
        let _ = self.url.set(url);
    }

    fn ttl_ms(&self) -> u64 {
        3 * self.link.heartbeat().as_millis() as u64
    }

    /// One beat: the liveness key with the figures, the node set.
    pub async fn beat(&self) -> Result<(), ClusterError> {
        let now = now_ms();
        let stats = self
            .figures
            .get()
            .map_or(Value::Object(Map::new()), |f| f());
        let me = NodeFigures {
            id: self.link.node().to_string(),
            at: now,
            stats,
            url: self.url.get().cloned(),
        };
        let body = serde_json::to_string(&me).map_err(|e| ClusterError::Data(e.to_string()))?;
        let nodes = self.link.key("nodes");
        let r: redis::RedisResult<()> = redis::pipe()
            .cmd("SET")
            .arg(self.link.key(&format!("node:{}", me.id)))
            .arg(body)
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore()
            .zadd(&nodes, &me.id, now)
            .ignore()
            .zrembyscore(&nodes, "-inf", now.saturating_sub(self.ttl_ms()))
            .ignore()
            .query_async(&mut self.link.conn())
            .await;
        self.link.observe(r)
    }

    /// Beat until `stop`, then leave the table (a clean stop is not a
    /// lost node).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.link.heartbeat());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {
                    // A failure is logged by the link, once per transition.
                    let _ = self.beat().await;
                }
            }
        }
        let id = self.link.node().to_string();
        let mut pipe = redis::pipe();
        pipe.del(self.link.key(&format!("node:{id}")))
            .ignore()
            .zrem(self.link.key("nodes"), &id)
            .ignore();
        let mut conn = self.link.conn();
        let leave = pipe.query_async::<()>(&mut conn);
        // Within the shutdown grace; a node that cannot say goodbye lapses.
        if let Ok(r) = tokio::time::timeout(LEAVE_WITHIN, leave).await {
            let _ = self.link.observe(r);
        }
    }
}

/// The live nodes, read from Redis.
pub struct NodeTable;

impl NodeTable {
    /// Every node whose liveness key is still there, by id.
    pub async fn read(link: &RedisLink) -> Result<Vec<NodeFigures>, ClusterError> {
        let ttl = 3 * link.heartbeat().as_millis() as u64;
        let since = now_ms().saturating_sub(ttl);
        let r: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGE")
            .arg(link.key("nodes"))
            .arg(since)
            .arg("+inf")
            .arg("BYSCORE")
            .query_async(&mut link.conn())
            .await;
        let ids = link.observe(r)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| link.key(&format!("node:{id}")))
            .collect();
        let r: redis::RedisResult<Vec<Option<String>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut link.conn())
            .await;
        let mut nodes: Vec<NodeFigures> = link
            .observe(r)?
            .into_iter()
            .flatten()
            .filter_map(|body| serde_json::from_str(&body).ok())
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// The nodes' figures summed path by path: every number added, except
    /// the `largest*` figures and `uptimeSeconds`, which take the largest
    /// (a sum of maxima means nothing), and `sessions.held` /
    /// `sessions.bytes`, which every node reads from the one shared store
    /// (also the largest); non-numbers are left out.
    pub fn total(nodes: &[NodeFigures]) -> Value {
        let mut total = Map::new();
        for n in nodes {
            if let Value::Object(stats) = &n.stats {
                add_into(&mut total, stats, "");
            }
        }
        Value::Object(total)
    }
}

fn add_into(total: &mut Map<String, Value>, from: &Map<String, Value>, parent: &str) {
    for (key, value) in from {
        match value {
            Value::Object(inner) => {
                let slot = total
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(slot) = slot {
                    add_into(slot, inner, key);
                }
            }
            Value::Number(n) => {
                let v = n.as_f64().unwrap_or(0.0);
                let keep_largest = key.starts_with("largest")
                    || key == "uptimeSeconds"
                    || (parent == "sessions" && (key == "held" || key == "bytes"));
                let old = total.get(key).and_then(Value::as_f64);
                let new = match old {
                    Some(o) if keep_largest => o.max(v),
                    Some(o) => o + v,
                    None => v,
                };
                total.insert(key.clone(), number(new));
            }
            _ => {}
        }
    }
}

/// Integers stay integers in the JSON.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn totals_add_counts_and_keep_the_largest_maxima() {
        let node = |id: &str, stats: Value| NodeFigures {
            id: id.into(),
            at: 0,
            stats,
            url: None,
        };
        let nodes = [
            node(
                "a",
                json!({"streams": {"active": 2, "largestBytes": 5}, "uptimeSeconds": 10, "v": "x"}),
            ),
            node(
                "b",
                json!({"streams": {"active": 3, "largestBytes": 4}, "uptimeSeconds": 7}),
            ),
        ];
        assert_eq!(
            NodeTable::total(&nodes),
            json!({"streams": {"active": 5, "largestBytes": 5}, "uptimeSeconds": 10})
        );
    }
}
