//! Many nodes on one Redis (PROTOCOL.md part 2, "Many nodes"): what gateway
//! processes that share a Redis share, and nothing else.
//!
//! Built by `app.rs` only when `redis.url` is set; without it none of this
//! exists and nothing connects to Redis. [`RedisLink`] (`link.rs`) owns the
//! one Redis connection (a `ConnectionManager`, which reconnects on its
//! own), the key prefix and this node's id, and watches every reply: the
//! first failure after a success is logged once as "lost", the first
//! success after failures once as "back", and `/readyz` reads that state.
//! [`Heartbeat`] (`nodes.rs`) writes this node's liveness key (a TTL of 3
//! heartbeat intervals) with its `/stats` figures in it, and keeps the
//! node set (a sorted set scored by the last beat); [`NodeTable`] reads
//! the live nodes back for `GET /stats/cluster`. [`RedisStore`]
//! (`sessions.rs`) is the `SessionStore` kept in Redis: the same bounds as
//! the memory store, the busy mark as a `SET NX PX` lease that this node
//! renews while its stream runs, so one live stream per session holds
//! across nodes and a dead node's leases lapse. [`SharedStreamLimit`]
//! (`rate.rs`) is the per-user stream budget as a GCRA in a Lua script, so
//! the limit holds across nodes; when Redis cannot be reached the relay
//! falls back to this node's own governor limiter.
//!
//! [`NodeMail`] (`pipe.rs`) carries a client's traffic between nodes when
//! it reconnects on another node than its streams' home: each client's
//! home, a command stream per node, an event stream per remote
//! attachment; the `/ai` door (`socket/remote.rs`) gives it meaning.
//!
//! [`StreamLogs`] (`logs.rs`) keeps every `/ai` stream's events in Redis
//! as they are produced (a Redis stream per gateway stream, trimmed by
//! acks, expiring a while after its last event) and each client's resume
//! credentials, so a resume on another node after the home died still
//! delivers what had been produced.
//!
//! Data flows out of this module only through those types' methods; it
//! never touches a client, an outbox, a socket or an upstream, and it
//! knows no door (the ops door hands the heartbeat its figures as a
//! closure).

mod link;
mod logs;
mod nodes;
mod pipe;
mod rate;
mod sessions;

pub use link::{ClusterError, LinkState, RedisLink, hostname};
pub use logs::{Credentials, LogId, LogWrite, StreamLogs};
pub use nodes::{FiguresSource, Heartbeat, NodeFigures, NodeTable};
pub use pipe::{Command, Entry, NodeMail, Tail, batch_of};
pub use rate::SharedStreamLimit;
pub use sessions::RedisStore;
