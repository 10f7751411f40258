//! [`SharedStreamLimit`]: the per-user stream budget (`limits.
//! streams_per_minute` with `limits.streams_burst`) kept in Redis, so that
//! it holds across every node, not per node.
//!
//! The same algorithm governor runs locally, GCRA, in one Lua script: the
//! key `{prefix}rl:streams:{who}` holds the theoretical arrival time (ms);
//! a start is admitted while it is no more than `burst` emission intervals
//! ahead of now, and the key expires when the bucket is full again, so
//! Redis holds only recently active users. The script reads the time from
//! Redis (`TIME`), so nodes with skewed clocks share one clock. One round
//! trip per stream start, none per token. Chosen over "governor per node
//! with the limit divided by the live node count" because that one lets a
//! user who lands on one node get only a share of their budget, and
//! changes everyone's budget when a node joins or leaves.

use super::link::{ClusterError, RedisLink};
use crate::rate_limit::StreamKey;
use std::sync::Arc;
use std::time::Duration;

const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
local allowed = burst * interval
if ahead > allowed then
  return ahead - allowed
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, ahead))
return 0
"#;

/// The stream-start budget of every user (or address), shared by the nodes.
pub struct SharedStreamLimit {
    link: Arc<RedisLink>,
    /// Milliseconds between two starts at the sustained rate.
    interval_ms: u64,
    burst: u32,
    script: redis::Script,
}

impl SharedStreamLimit {
    /// `None` when the limit is off (`per_minute` 0).
    pub fn new(link: Arc<RedisLink>, per_minute: u32, burst: u32) -> Option<Self> {
        if per_minute == 0 {
            return None;
        }
        Some(Self {
            link,
            interval_ms: (60_000 / u64::from(per_minute)).max(1),
            burst: burst.max(1),
            script: redis::Script::new(GCRA),
        })
    }

    /// One stream start by `who`: `Ok(None)` admitted, `Ok(Some(wait))`
    /// refused until `wait` has passed, `Err` when Redis did not answer
    /// (the caller falls back to the node's own limiter).
    pub async fn check(&self, who: &StreamKey) -> Result<Option<Duration>, ClusterError> {
        let key = self.link.key(&format!("rl:streams:{}", key_of(who)));
        let r: redis::RedisResult<u64> = self
            .script
            .key(key)
            .arg(self.interval_ms)
            .arg(self.burst)
            .invoke_async(&mut self.link.conn())
            .await;
        Ok(match self.link.observe(r)? {
            0 => None,
            wait => Some(Duration::from_millis(wait)),
        })
    }
}

fn key_of(who: &StreamKey) -> String {
    match who {
        StreamKey::User(sub) => format!("u:{sub}"),
        StreamKey::Address(ip) => format!("a:{ip}"),
        StreamKey::Client(id) => format!("c:{id}"),
    }
}
