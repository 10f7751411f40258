//! `ClientOutbox`: the one bounded queue between a client's streams and its
//! socket, the only place that knows about backpressure.
//!
//! Stream tasks push; the drain task (one per attached socket) pops and
//! emits. Inside, each stream has its own FIFO so that its events stay in
//! order, and the drain serves the streams round-robin so a chatty stream
//! cannot starve the others; control events (errors, heartbeat acks,
//! `ai:backpressure`) go first.
//!
//! A client is *behind* when its queue holds `threshold` events. Events
//! pile up for two reasons, both measured here: the client's credits ran
//! out (emitted-but-unacknowledged tokens reached `ackWindow`, so the drain
//! holds tokens back), or socketioxide refused an emit (its per-socket
//! channel is full; the drain then paces itself down, AIMD-style, so the
//! channel drains and the Engine.IO ping still finds room). While behind,
//! the client's policy applies to new tokens: `coalesce` merges them into
//! the stream's last queued token (lossless; past the byte cap it behaves
//! as `slow`), `slow` makes `push_token` wait until the queue is under half
//! the threshold (the stream stops reading its upstream, so TCP holds the
//! upstream back; a wait past `slow_timeout` is `TooSlow`), `drop` drops
//! and counts. Engaged/relieved transitions become `ai:backpressure`
//! events, at most one a second. No lock is held across an await.

mod drain;
mod resume;

pub use super::outbound::Outbound;
pub use drain::DrainEnd;
pub use resume::Resumed;

use super::backpressure::Episode;
use super::outbound::stream_of;
use super::replay::{MemoryReplay, ReplayStore};
use crate::protocol::{BackpressurePolicy, Token, TokenMetadata};
use crate::telemetry::Stats;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
/// What happened to a pushed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Coalesced,
    Dropped,
}

/// A `slow` push that waited past the slow-client timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

/// Limits and policy of one client's outbox.
#[derive(Debug, Clone)]
pub struct OutboxLimits {
    pub threshold: usize,
    pub max_bytes: usize,
    pub ack_window: u64,
    pub policy: BackpressurePolicy,
    pub slow_timeout: Duration,
    /// Per stream: emitted tokens kept for replay on resume.
    pub replay_tokens: usize,
    pub replay_bytes: usize,
}

#[derive(Default)]
struct StreamQueue {
    items: VecDeque<Outbound>,
    /// Last tokenCount emitted and acknowledged (credits).
    emitted: u64,
    acked: u64,
    /// Last tokenCount queued: the stream's position.
    position: u64,
    /// How the stream ended, once its terminal event was queued.
    outcome: Option<&'static str>,
}

/// Ended streams whose records are kept for a resume, per client.
const ENDED_KEPT: usize = 32;

struct State {
    control: VecDeque<Outbound>,
    streams: HashMap<Arc<str>, StreamQueue>,
    /// Streams with queued items, in round-robin order.
    ring: VecDeque<Arc<str>>,
    events: usize,
    bytes: usize,
    /// Emitted tokens not yet acknowledged, over all streams.
    unacked: u64,
    /// The client has sent `ai:ack` at least once.
    credit_aware: bool,
    episode: Episode,
    dropped: u64,
    /// What was emitted and may need sending again after a resume.
    replay: Box<dyn ReplayStore>,
    /// Ended streams, oldest first, whose records are still kept.
    ended: VecDeque<Arc<str>>,
    /// No socket is attached: tokens are held back, never dropped.
    detached: bool,
    /// The client is gone for good: pushes are discarded.
    closed: bool,
}

impl State {
    fn new(limits: &OutboxLimits) -> Self {
        Self {
            control: VecDeque::new(),
            streams: HashMap::new(),
            ring: VecDeque::new(),
            events: 0,
            bytes: 0,
            unacked: 0,
            credit_aware: false,
            episode: Episode::default(),
            dropped: 0,
            replay: Box::new(MemoryReplay::new(limits.replay_tokens, limits.replay_bytes)),
            ended: VecDeque::new(),
            detached: false,
            closed: false,
        }
    }
}

pub struct ClientOutbox {
    state: Mutex<State>,
    limits: OutboxLimits,
    /// Wakes the drain: new items, acks, a notice falling due.
    wake_drain: Notify,
    /// Wakes pushers waiting for room.
    has_room: Notify,
    stats: Arc<Stats>,
    /// Held by the running drain task, so that a resume can wait for the
    /// previous socket's drain to be gone before rewinding.
    drain_lock: tokio::sync::Mutex<()>,
}

/// Control events past this many queued events are dropped: a client
/// flooding bad requests must not grow its queue.
const CONTROL_CAP: usize = 64;

impl ClientOutbox {
    pub fn new(limits: OutboxLimits, stats: Arc<Stats>) -> Self {
        Self {
            state: Mutex::new(State::new(&limits)),
            drain_lock: tokio::sync::Mutex::new(()),
            limits,
            wake_drain: Notify::new(),
            has_room: Notify::new(),
            stats,
        }
    }

    pub fn policy(&self) -> BackpressurePolicy {
        self.limits.policy
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path leaves the state half-updated across a panic point.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queued events now.
    pub fn len(&self) -> usize {
        self.lock().events
    }

    /// Bytes held now (approximate: text plus framing per event).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&self, s: &mut State, stream: Option<&Arc<str>>, item: Outbound) {
        if s.closed {
            return;
        }
        s.events += 1;
        s.bytes += item.weight();
        self.stats.queued_events.fetch_add(1, Relaxed);
        match stream {
            None => s.control.push_back(item),
            Some(id) => {
                let q = s.streams.entry(id.clone()).or_default();
                match &item {
                    Outbound::Start(_) => q.outcome = None,
                    Outbound::Token(t) => q.position = t.token_count,
                    Outbound::Done(_) => q.outcome = Some("completed"),
                    Outbound::Cancelled(_) => q.outcome = Some("cancelled"),
                    Outbound::StreamError(_) => q.outcome = Some("failed"),
                    _ => {}
                }
                let was_empty = q.items.is_empty();
                q.items.push_back(item);
                if was_empty {
                    s.ring.push_back(id.clone());
                }
            }
        }
        self.update_episode(s);
        self.wake_drain.notify_one();
    }

    fn update_episode(&self, s: &mut State) {
        let behind = s.events >= self.limits.threshold;
        let caught_up = s.events < self.limits.threshold / 2;
        s.episode.observe(behind, caught_up, &self.stats);
    }

    /// Queue a token under the client's policy.
    pub async fn push_token(&self, stream: &Arc<str>, token: Token) -> Result<Pushed, TooSlow> {
        let mut stalled_since: Option<Instant> = None;
        loop {
            let room = self.has_room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = self.lock();
                let behind = s.episode.engaged() || s.events >= self.limits.threshold;
                let over_bytes = s.bytes >= self.limits.max_bytes;
                if s.detached {
                    // Nobody to judge: hold the upstream back until the
                    // client resumes or its window runs out.
                    stalled_since = None;
                }
                // While detached nothing is dropped: the stream waits.
                let policy = match self.limits.policy {
                    BackpressurePolicy::Drop if s.detached => BackpressurePolicy::Slow,
                    p => p,
                };
                let outcome = match policy {
                    _ if !behind && !over_bytes => Some(Pushed::Queued),
                    BackpressurePolicy::Drop => Some(Pushed::Dropped),
                    BackpressurePolicy::Coalesce if !over_bytes => Some(Pushed::Coalesced),
                    // slow, or coalesce past its byte cap: wait for room.
                    _ if s.events < self.limits.threshold / 2 && !over_bytes => {
                        Some(Pushed::Queued)
                    }
                    _ => None,
                };
                match outcome {
                    Some(Pushed::Queued) => {
                        self.add(&mut s, Some(stream), Outbound::Token(token));
                        return Ok(Pushed::Queued);
                    }
                    Some(Pushed::Dropped) => {
                        s.dropped += 1;
                        self.stats.tokens_dropped.fetch_add(1, Relaxed);
                        return Ok(Pushed::Dropped);
                    }
                    Some(Pushed::Coalesced) => match self.coalesce(&mut s, stream, token) {
                        Ok(()) => return Ok(Pushed::Coalesced),
                        Err(t) => {
                            self.add(&mut s, Some(stream), Outbound::Token(t));
                            return Ok(Pushed::Queued);
                        }
                    },
                    None => {}
                }
            }
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if tokio::time::timeout_at(since + self.limits.slow_timeout, room)
                .await
                .is_err()
                && !self.lock().detached
            {
                return Err(TooSlow);
            }
        }
    }

    /// Merge `token` into the stream's last queued token, if its last
    /// queued item is one; otherwise hand it back.
    fn coalesce(&self, s: &mut State, stream: &Arc<str>, token: Token) -> Result<(), Token> {
        let Some(Outbound::Token(last)) =
            s.streams.get_mut(stream).and_then(|q| q.items.back_mut())
        else {
            return Err(token);
        };
        let n = last.metadata.as_ref().map_or(1, |m| m.coalesced) + 1;
        last.data.push_str(&token.data);
        last.token_count = token.token_count;
        last.metadata = Some(TokenMetadata { coalesced: n });
        s.bytes += token.data.len();
        self.stats.tokens_coalesced.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Queue a stream's start or terminal event: never refused, and at
    /// most two per stream, so they cannot grow the queue without bound.
    pub fn push_stream_event(&self, stream: &Arc<str>, item: Outbound) {
        let mut s = self.lock();
        self.add(&mut s, Some(stream), item);
    }

    /// Queue a control event; false when the client is so far behind that
    /// it was dropped.
    pub fn push_control(&self, item: Outbound) -> bool {
        let mut s = self.lock();
        if s.control.len() >= CONTROL_CAP {
            return false;
        }
        self.add(&mut s, None, item);
        true
    }

    /// `ai:ack`: the client has rendered `stream` up to `token_count`.
    /// Acks of streams the outbox no longer knows are ignored (a late ack
    /// after the terminal event is normal).
    pub fn ack(&self, stream: &str, token_count: u64) {
        let mut s = self.lock();
        s.credit_aware = true;
        s.replay.trim(stream, token_count);
        let Some(q) = s.streams.get_mut(stream) else {
            return;
        };
        let upto = token_count.min(q.emitted);
        if upto > q.acked {
            let freed = upto - q.acked;
            q.acked = upto;
            s.unacked = s.unacked.saturating_sub(freed);
            drop(s);
            self.wake_drain.notify_one();
        }
    }

    /// Forget everything queued (the client is gone for good).
    pub fn clear(&self) {
        let mut s = self.lock();
        self.stats.queued_events.fetch_sub(s.events as u64, Relaxed);
        s.episode.end(&self.stats);
        *s = State::new(&self.limits);
        // Stream tasks still ending may push their terminal events; they
        // have nobody to go to.
        s.closed = true;
        drop(s);
        self.has_room.notify_waiters();
    }
}
