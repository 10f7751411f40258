//! [`RedisStore`]: the [`SessionStore`] kept in Redis, shared by every
//! node, with the memory store's rules.
//!
//! Each operation that decides something (begin, end, delete, sweep) is
//! one Lua script, so ownership, the busy mark and the bounds are decided
//! in one step on the server, whichever node asks. Per session:
//! `max_messages` and `max_bytes`, the oldest turns dropped first; per
//! user: `max_per_user` and, for the whole cluster, `max_total` sessions,
//! the least recently used (not busy) evicted first; `ttl_ms` of idleness
//! as the keys' own expiry (renewed on every turn, and while a stream
//! runs). `max_total_bytes` is not applied here: Redis's `maxmemory` is
//! the bound of the cluster's whole memory. The busy mark is a lease key
//! (`SET … PX` inside the begin script, after checking that it is absent:
//! `SET NX PX` made one step with the ownership check), which this node renews every heartbeat
//! while the stream runs and deletes when it ends, so one live stream per
//! session holds across nodes and the lease of a node that died lapses
//! after 3 heartbeat intervals. Turns are kept as the JSON the HTTP door
//! serves (`SessionMessage`). A reply that cannot be decoded is a
//! [`ClusterError::Data`]; an unreachable Redis makes begin, get and
//! delete fail with `server_busy` (retryable); the list, which cannot
//! fail by the trait, answers empty (and says so in the log).

use super::link::{ClusterError, RedisLink};
use crate::auth::UserId;
use crate::config::SessionsConfig;
use crate::error::{GatewayError, Owned};
use crate::protocol::{SessionDetail, SessionMessage, SessionSummary, now_ms};
use crate::sessions::{Begun, LeaseKey, SessionFigures, SessionStore, Turn};
use futures_util::future::{BoxFuture, FutureExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

const COMMON: &str = include_str!("session_scripts.lua");

/// ARGV: 3 owner, 4 lease token, 5 lease ms, 6 now, 7 ttl, 8 max_per_user,
/// 9 max_total. Returns { 0 ok | 1 forbidden | 2 busy, turns, evictions,
/// the turns' entries }.
const BEGIN: &str = r#"
local owner, now, ttl = ARGV[3], tonumber(ARGV[6]), tonumber(ARGV[7])
local have = redis.call('HGET', skey(id), 'owner')
if have and have ~= owner then return {1, 0, 0, {}} end
if redis.call('EXISTS', lkey(id)) == 1 then return {2, 0, 0, {}} end
local evicted = 0
if not have then
  evicted = make_room(ukey(owner), tonumber(ARGV[8])) + make_room(all, tonumber(ARGV[9]))
  redis.call('DEL', tkey(id))
  redis.call('HSET', skey(id), 'owner', owner, 'created', now, 'updated', now,
    'turns', 0, 'messages', 0, 'bytes', 0)
end
redis.call('SET', lkey(id), ARGV[4], 'PX', ARGV[5])
touch(owner, now, ttl)
local turns = tonumber(redis.call('HGET', skey(id), 'turns'))
return {0, turns, evicted, redis.call('LRANGE', tkey(id), 0, -1)}
"#;

/// ARGV: 3 lease token, 4 entry ("" for no turn), 5 messages, 6 bytes,
/// 7 max_messages, 8 max_bytes, 9 now, 10 ttl. Returns the turns dropped
/// by the bounds, or -1 when the lease is another's / the session gone.
const END: &str = r#"
local cur = redis.call('GET', lkey(id))
if cur and cur ~= ARGV[3] then return -1 end
redis.call('DEL', lkey(id))
local owner = redis.call('HGET', skey(id), 'owner')
if not owner then return -1 end
if ARGV[4] == '' then
  if tonumber(redis.call('HGET', skey(id), 'turns')) == 0 then remove(id) end
  return 0
end
redis.call('RPUSH', tkey(id), ARGV[4])
redis.call('HINCRBY', skey(id), 'turns', 1)
local msgs = tonumber(redis.call('HGET', skey(id), 'messages')) + tonumber(ARGV[5])
local bytes = tonumber(redis.call('HGET', skey(id), 'bytes')) + tonumber(ARGV[6])
local dropped = 0
while msgs > tonumber(ARGV[7]) or bytes > tonumber(ARGV[8]) do
  local old = redis.call('LPOP', tkey(id))
  if not old then break end
  local m, b = string.match(old, '^(%d+):(%d+):')
  msgs, bytes = msgs - tonumber(m), bytes - tonumber(b)
  dropped = dropped + 1
end
redis.call('HSET', skey(id), 'messages', msgs, 'bytes', bytes, 'updated', ARGV[9])
touch(owner, tonumber(ARGV[9]), tonumber(ARGV[10]))
return dropped
"#;

/// ARGV: 3 owner. Returns 0 deleted, 1 unknown (or another's), 2 busy.
const DELETE: &str = r#"
local have = redis.call('HGET', skey(id), 'owner')
if not have or have ~= ARGV[3] then return 1 end
if redis.call('EXISTS', lkey(id)) == 1 then return 2 end
remove(id)
return 0
"#;

/// ARGV: 3 lease token, 4 lease ms, 5 ttl. Keeps a running stream's
/// lease and its session alive; 0 when the lease is no longer this one.
const RENEW: &str = r#"
if redis.call('GET', lkey(id)) ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', lkey(id), ARGV[4])
redis.call('PEXPIRE', skey(id), ARGV[5])
redis.call('PEXPIRE', tkey(id), ARGV[5])
return 1
"#;

/// ARGV: 2 unused, 3 idle since (ms). Drops the index entries of sessions
/// whose keys expired; returns { expired, sessions left }.
const SWEEP: &str = r#"
local old = redis.call('ZRANGE', all, '-inf', ARGV[3], 'BYSCORE', 'LIMIT', 0, 1000)
local expired = 0
for _, v in ipairs(old) do
  if redis.call('EXISTS', skey(v)) == 0 then
    redis.call('ZREM', all, v)
    expired = expired + 1
  end
end
return {expired, redis.call('ZCARD', all)}
"#;

/// The scripts, each with the shared functions before it.
struct Scripts {
    begin: redis::Script,
    end: redis::Script,
    delete: redis::Script,
    renew: redis::Script,
    sweep: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let with = |body: &str| redis::Script::new(&format!("{COMMON}\n{body}"));
        Self {
            begin: with(BEGIN),
            end: with(END),
            delete: with(DELETE),
            renew: with(RENEW),
            sweep: with(SWEEP),
        }
    }
}

/// Sessions in Redis, for every node. The `Arc`'d part is what a turn
/// released from `Drop` takes into its own task.
pub struct RedisStore {
    core: Arc<Core>,
    /// The leases of this node's live session streams (id → lease
    /// number), renewed every heartbeat.
    held: Mutex<HashMap<Arc<str>, u64>>,
    next_lease: AtomicU64,
    /// Sessions in Redis at the last sweep (all nodes').
    held_total: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
}

/// The connection, the bounds and the scripts.
struct Core {
    link: Arc<RedisLink>,
    limits: SessionsConfig,
    scripts: Scripts,
}

/// The owner as it is stored: `-` for nobody (auth off), `=` + the sub.
fn owner_tag(owner: Option<&UserId>) -> String {
    match owner {
        None => "-".into(),
        Some(u) => format!("={}", u.0),
    }
}

/// The messages of one stored turn entry (`messages:bytes:json`).
fn decode_entry(entry: &str) -> Result<Vec<SessionMessage>, ClusterError> {
    let json = entry.splitn(3, ':').nth(2).unwrap_or("");
    serde_json::from_str(json).map_err(|e| ClusterError::Data(format!("session turn: {e}")))
}

impl Core {
    /// A lease's value in Redis: this node's id and the lease number, so
    /// no two nodes' leases are ever equal.
    fn token(&self, lease: u64) -> String {
        format!("{}:{lease}", self.link.node())
    }

    fn lease_ms(&self) -> u64 {
        3 * self.link.heartbeat().as_millis() as u64
    }

    fn invocation<'s>(&self, script: &'s redis::Script, id: &str) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.arg(self.link.prefix()).arg(id);
        inv
    }

    /// End (or abandon) the turn of `key` in Redis.
    async fn end_in_redis(&self, key: &LeaseKey, turn: Option<Turn>) -> Result<(), ClusterError> {
        let (entry, messages, bytes) = match turn {
            None => (String::new(), 0, 0),
            Some(turn) => {
                let messages = turn.into_messages();
                let bytes: usize = messages.iter().map(SessionMessage::bytes).sum();
                let json = serde_json::to_string(&messages)
                    .map_err(|e| ClusterError::Data(e.to_string()))?;
                (
                    format!("{}:{bytes}:{json}", messages.len()),
                    messages.len(),
                    bytes,
                )
            }
        };
        let mut inv = self.invocation(&self.scripts.end, &key.id);
        inv.arg(self.token(key.lease))
            .arg(entry)
            .arg(messages)
            .arg(bytes)
            .arg(self.limits.max_messages)
            .arg(self.limits.max_bytes)
            .arg(now_ms())
            .arg(self.limits.ttl_ms);
        let r: redis::RedisResult<i64> = inv.invoke_async(&mut self.link.conn()).await;
        let dropped = self.link.observe(r)?;
        if dropped > 0 && messages > 0 {
            tracing::debug!(session = %key.id, dropped, "oldest turns dropped (session bounds)");
        }
        Ok(())
    }
}

impl RedisStore {
    pub fn new(link: Arc<RedisLink>, limits: &SessionsConfig) -> Self {
        Self {
            core: Arc::new(Core {
                link,
                limits: limits.clone(),
                scripts: Scripts::new(),
            }),
            held: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(1),
            held_total: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    fn forget(&self, key: &LeaseKey) {
        if let Ok(mut held) = self.held.lock()
            && held.get(&key.id) == Some(&key.lease)
        {
            held.remove(&key.id);
        }
    }

    async fn begin_in_redis(
        &self,
        owner: Option<&UserId>,
        id: &str,
    ) -> Result<Begun, GatewayError> {
        let lease = self.next_lease.fetch_add(1, Relaxed);
        let mut inv = self.core.invocation(&self.core.scripts.begin, id);
        inv.arg(owner_tag(owner))
            .arg(self.core.token(lease))
            .arg(self.core.lease_ms())
            .arg(now_ms())
            .arg(self.core.limits.ttl_ms)
            .arg(self.core.limits.max_per_user)
            .arg(self.core.limits.max_total);
        let r: redis::RedisResult<(i64, u64, u64, Vec<String>)> =
            inv.invoke_async(&mut self.core.link.conn()).await;
        let (code, turns, evicted, entries) = self.core.link.observe(r)?;
        match code {
            0 => {}
            1 => {
                return Err(GatewayError::Forbidden {
                    kind: Owned::Session,
                    id: id.into(),
                });
            }
            _ => return Err(GatewayError::SessionBusy(id.into())),
        }
        self.evictions.fetch_add(evicted, Relaxed);
        let id: Arc<str> = id.into();
        if let Ok(mut held) = self.held.lock() {
            held.insert(id.clone(), lease);
        }
        let key = LeaseKey { id, lease };
        let mut history = Vec::new();
        for entry in &entries {
            match decode_entry(entry) {
                Ok(messages) => history.extend(messages.iter().map(SessionMessage::to_chat)),
                Err(e) => {
                    self.abandon(key, None);
                    return Err(e.into());
                }
            }
        }
        Ok(Begun {
            key,
            history,
            turn: turns + 1,
        })
    }

    /// Renew every lease this node holds, every heartbeat, until `stop`.
    pub async fn renew_leases(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.core.link.heartbeat());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => self.renew_once().await,
            }
        }
    }

    async fn renew_once(&self) {
        let held: Vec<(Arc<str>, u64)> = match self.held.lock() {
            Ok(h) => h.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(_) => return,
        };
        for (id, lease) in held {
            let mut inv = self.core.invocation(&self.core.scripts.renew, &id);
            inv.arg(self.core.token(lease))
                .arg(self.core.lease_ms())
                .arg(self.core.limits.ttl_ms);
            let r: redis::RedisResult<i64> = inv.invoke_async(&mut self.core.link.conn()).await;
            if let Ok(0) = self.core.link.observe(r) {
                tracing::warn!(session = %id, "session lease lapsed while its stream runs");
            }
        }
    }

    async fn get_in_redis(
        &self,
        owner: Option<&UserId>,
        id: &str,
    ) -> Result<SessionDetail, GatewayError> {
        let skey = self.core.link.key(&format!("s:{id}"));
        let tkey = self.core.link.key(&format!("t:{id}"));
        let r: redis::RedisResult<(HashMap<String, String>, Vec<String>)> = redis::pipe()
            .hgetall(&skey)
            .lrange(&tkey, 0, -1)
            .query_async(&mut self.core.link.conn())
            .await;
        let (hash, entries) = self.core.link.observe(r)?;
        if hash.get("owner") != Some(&owner_tag(owner)) {
            return Err(GatewayError::UnknownSession(id.into()));
        }
        let mut messages = Vec::new();
        for entry in &entries {
            messages.extend(decode_entry(entry)?);
        }
        let num = |k: &str| hash.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(SessionDetail {
            id: id.into(),
            created_at: num("created"),
            updated_at: num("updated"),
            turns: num("turns"),
            messages,
        })
    }

    async fn list_in_redis(
        &self,
        owner: Option<&UserId>,
    ) -> Result<Vec<SessionSummary>, ClusterError> {
        let tag = owner_tag(owner);
        let ukey = self.core.link.key(&format!("u:{tag}"));
        let r: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGE")
            .arg(&ukey)
            .arg(0)
            .arg(-1)
            .arg("REV")
            .query_async(&mut self.core.link.conn())
            .await;
        let ids = self.core.link.observe(r)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.core.link.key(&format!("s:{id}")))
                .arg(&["owner", "created", "updated", "turns", "messages"]);
        }
        type Row = (
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<u64>,
            Option<usize>,
        );
        let r: redis::RedisResult<Vec<Row>> = pipe.query_async(&mut self.core.link.conn()).await;
        let rows = self.core.link.observe(r)?;
        let mut out = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for (id, (who, created, updated, turns, messages)) in ids.into_iter().zip(rows) {
            if who.as_deref() != Some(tag.as_str()) {
                stale.push(id);
                continue;
            }
            out.push(SessionSummary {
                id: id.into(),
                created_at: created.unwrap_or(0),
                updated_at: updated.unwrap_or(0),
                turns: turns.unwrap_or(0),
                messages: messages.unwrap_or(0),
            });
        }
        if !stale.is_empty() {
            let r: redis::RedisResult<()> = redis::cmd("ZREM")
                .arg(&ukey)
                .arg(&stale)
                .query_async(&mut self.core.link.conn())
                .await;
            let _ = self.core.link.observe(r);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        Ok(out)
    }

    async fn delete_in_redis(&self, owner: Option<&UserId>, id: &str) -> Result<(), GatewayError> {
        let mut inv = self.core.invocation(&self.core.scripts.delete, id);
        inv.arg(owner_tag(owner));
        let r: redis::RedisResult<i64> = inv.invoke_async(&mut self.core.link.conn()).await;
        match self.core.link.observe(r)? {
            0 => Ok(()),
            2 => Err(GatewayError::SessionBusy(id.into())),
            _ => Err(GatewayError::UnknownSession(id.into())),
        }
    }

    async fn sweep_in_redis(&self) -> Result<(), ClusterError> {
        let since = now_ms().saturating_sub(self.core.limits.ttl_ms);
        let mut inv = self.core.invocation(&self.core.scripts.sweep, "");
        inv.arg(since);
        let r: redis::RedisResult<(u64, u64)> = inv.invoke_async(&mut self.core.link.conn()).await;
        let (expired, left) = self.core.link.observe(r)?;
        self.expired.fetch_add(expired, Relaxed);
        self.held_total.store(left, Relaxed);
        Ok(())
    }
}

impl SessionStore for RedisStore {
    fn begin<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Begun, GatewayError>> {
        self.begin_in_redis(owner, id).boxed()
    }

    fn end(&self, key: LeaseKey, turn: Turn) -> BoxFuture<'_, ()> {
        async move {
            self.forget(&key);
            if let Err(e) = self.core.end_in_redis(&key, Some(turn)).await {
                tracing::warn!(session = %key.id, error = %e, "session turn not stored");
            }
        }
        .boxed()
    }

    fn abandon(&self, key: LeaseKey, turn: Option<Turn>) {
        self.forget(&key);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (the process is ending): the lease lapses.
            return;
        };
        let core = self.core.clone();
        runtime.spawn(async move {
            if let Err(e) = core.end_in_redis(&key, turn).await {
                tracing::debug!(session = %key.id, error = %e, "session release not stored; its lease lapses");
            }
        });
    }

    fn list<'a>(&'a self, owner: Option<&'a UserId>) -> BoxFuture<'a, Vec<SessionSummary>> {
        async move {
            self.list_in_redis(owner).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "sessions not listed (redis)");
                Vec::new()
            })
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SessionDetail, GatewayError>> {
        self.get_in_redis(owner, id).boxed()
    }

    fn delete<'a>(
        &'a self,
        owner: Option<&'a UserId>,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        self.delete_in_redis(owner, id).boxed()
    }

    fn sweep(&self) -> BoxFuture<'_, ()> {
        async move {
            // A failure is logged by the link, once per transition.
            let _ = self.sweep_in_redis().await;
        }
        .boxed()
    }

    fn figures(&self) -> SessionFigures {
        SessionFigures {
            held: self.held_total.load(Relaxed),
            bytes: 0,
            evictions: self.evictions.load(Relaxed),
            expired: self.expired.load(Relaxed),
        }
    }
}
