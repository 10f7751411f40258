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

use super::backpressure::{Episode, Notice};
use super::replay::{MemoryReplay, ReplayStore};
use crate::protocol::{
    BackpressurePolicy, Connected, Done, ErrorEvent, HeartbeatAck, StreamCancelled, StreamComplete,
    StreamError, StreamStart, Token, TokenMetadata, event,
};
use crate::telemetry::Stats;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// An event waiting for its socket, typed until it is emitted.
#[derive(Debug, Clone)]
pub enum Outbound {
    Connected(Connected),
    Start(StreamStart),
    Token(Token),
    Complete(StreamComplete),
    Done(Done),
    Cancelled(StreamCancelled),
    StreamError(StreamError),
    Error(ErrorEvent),
    HeartbeatAck(HeartbeatAck),
    Backpressure(crate::protocol::Backpressure),
    ReconnectSuccess(crate::protocol::ReconnectSuccess),
    ReconnectFailed(crate::protocol::ReconnectFailed),
}

impl Outbound {
    pub fn event(&self) -> &'static str {
        match self {
            Self::Connected(_) => event::CONNECTED,
            Self::Start(_) => event::STREAM_START,
            Self::Token(_) => event::TOKEN,
            Self::Complete(_) => event::STREAM_COMPLETE,
            Self::Done(_) => event::DONE,
            Self::Cancelled(_) => event::STREAM_CANCELLED,
            Self::StreamError(_) => event::STREAM_ERROR,
            Self::Error(_) => event::ERROR,
            Self::HeartbeatAck(_) => event::HEARTBEAT_ACK,
            Self::Backpressure(_) => event::BACKPRESSURE,
            Self::ReconnectSuccess(_) => event::RECONNECT_SUCCESS,
            Self::ReconnectFailed(_) => event::RECONNECT_FAILED,
        }
    }

    fn emit(&self, socket: &SocketRef) -> Result<(), SendError> {
        let name = self.event();
        match self {
            Self::Connected(p) => socket.emit(name, p),
            Self::Start(p) => socket.emit(name, p),
            Self::Token(p) => socket.emit(name, p),
            Self::Complete(p) => socket.emit(name, p),
            Self::Done(p) => socket.emit(name, p),
            Self::Cancelled(p) => socket.emit(name, p),
            Self::StreamError(p) => socket.emit(name, p),
            Self::Error(p) => socket.emit(name, p),
            Self::HeartbeatAck(p) => socket.emit(name, p),
            Self::Backpressure(p) => socket.emit(name, p),
            Self::ReconnectSuccess(p) => socket.emit(name, p),
            Self::ReconnectFailed(p) => socket.emit(name, p),
        }
    }

    /// Upstream tokens carried (for credits).
    fn tokens(&self) -> u64 {
        match self {
            Self::Token(t) => t.metadata.as_ref().map_or(1, |m| m.coalesced),
            _ => 0,
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Done(_) | Self::Cancelled(_) | Self::StreamError(_)
        )
    }

    /// Rough bytes held, for the byte cap (text plus framing).
    fn weight(&self) -> usize {
        match self {
            Self::Token(t) => t.data.len() + 96,
            Self::Done(d) => d.full_response.as_ref().map_or(0, String::len) + 192,
            _ => 192,
        }
    }
}

/// Why a drain task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Its attachment was cancelled (disconnect handled, or shutdown).
    Detached,
    /// socketioxide says the socket is closed.
    Closed,
    /// The transport refused everything for longer than its liveness window.
    TransportDead,
}

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

/// A resumed stream, as `ai:reconnect:success` lists it.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub stream_id: Arc<str>,
    pub state: &'static str,
    pub token_count: u64,
    /// Tokens queued again because the client lacked them.
    pub replayed: u64,
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

    /// Take the next event the drain may emit now, or the time to look
    /// again (a notice falling due).
    fn take(&self, sent: Option<Outbound>) -> Result<Outbound, Option<Instant>> {
        let mut s = self.lock();
        if let Some(item) = sent {
            self.record_sent(&mut s, item);
        }
        let now = Instant::now();
        let due = match s.episode.notice(now) {
            Ok(Some(n)) => return Ok(Outbound::Backpressure(self.notice(&s, n))),
            Ok(None) => None,
            Err(due) => Some(due),
        };
        if let Some(item) = s.control.pop_front() {
            return Ok(self.took(&mut s, item));
        }
        let credits_left = !s.credit_aware || s.unacked < self.limits.ack_window;
        for _ in 0..s.ring.len() {
            let Some(id) = s.ring.pop_front() else { break };
            let Some(q) = s.streams.get_mut(&id) else {
                continue;
            };
            let blocked = matches!(q.items.front(), Some(Outbound::Token(_))) && !credits_left;
            if blocked {
                s.ring.push_back(id);
                continue;
            }
            let Some(item) = q.items.pop_front() else {
                continue;
            };
            let restarted = matches!(item, Outbound::Start(_));
            if restarted {
                // A stream id may be used again once its stream ended: the
                // new stream starts from zero, not from the old one's
                // credit marks (which would leak credits on every reuse).
                q.emitted = 0;
                q.acked = 0;
            }
            if let Outbound::Token(t) = &item {
                q.emitted = t.token_count;
            }
            let more = !q.items.is_empty();
            if item.is_terminal() {
                // Credits of an ended stream are forgotten with it; its
                // record stays a while for a resume.
                let unacked = q.emitted.saturating_sub(q.acked);
                q.acked = q.emitted;
                s.unacked = s.unacked.saturating_sub(unacked);
                if !s.ended.contains(&id) {
                    s.ended.push_back(id.clone());
                }
                if s.ended.len() > ENDED_KEPT
                    && let Some(old) = s.ended.pop_front()
                {
                    s.streams.remove(&old);
                    s.replay.forget(&old);
                }
            } else if more {
                s.ring.push_back(id.clone());
            }
            if restarted {
                // It is live again: not to be forgotten as an ended one,
                // and the old stream's tokens are not its own to replay.
                s.ended.retain(|e| *e != id);
                s.replay.forget(&id);
            }
            s.unacked += item.tokens();
            return Ok(self.took(&mut s, item));
        }
        // Nothing may be sent now; look again when a notice falls due.
        Err(due)
    }

    /// Remember an emitted stream event for a resume.
    fn record_sent(&self, s: &mut State, item: Outbound) {
        if let Some(id) = stream_of(&item) {
            s.replay.record(&id, item);
        }
    }

    fn took(&self, s: &mut State, item: Outbound) -> Outbound {
        s.events -= 1;
        s.bytes = s.bytes.saturating_sub(item.weight());
        self.stats.queued_events.fetch_sub(1, Relaxed);
        self.update_episode(s);
        self.has_room.notify_waiters();
        item
    }

    fn notice(&self, s: &State, n: Notice) -> crate::protocol::Backpressure {
        n.into_event(
            s.events,
            self.limits.threshold,
            self.limits.policy,
            s.dropped,
        )
    }

    /// The next event to emit, recording `sent` (the last one emitted).
    async fn next(
        &self,
        cancel: &CancellationToken,
        mut sent: Option<Outbound>,
    ) -> Option<Outbound> {
        loop {
            if cancel.is_cancelled() {
                if let Some(item) = sent {
                    self.record_sent(&mut self.lock(), item);
                }
                return None;
            }
            let wake = self.wake_drain.notified();
            let due = match self.take(sent.take()) {
                Ok(item) => return Some(item),
                Err(due) => due,
            };
            let at = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep_until(at) => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Move events into `socket` until `cancel` fires or the socket closes.
    ///
    /// socketioxide's emit only reserves a slot in a bounded channel; when
    /// it is full the drain keeps the event and slows down: the pause
    /// doubles on each refusal and shrinks by a tenth on each success
    /// (additive-increase/multiplicative-decrease, like TCP), so the channel
    /// spends little time full and the Engine.IO ping is rarely refused.
    /// An event that could not be emitted because the socket closed goes
    /// back to the front of its queue.
    ///
    /// Returns [`DrainEnd::TransportDead`] when socketioxide refused every
    /// emit for longer than `liveness` (the Engine.IO ping interval plus
    /// timeout): by then the engine has dropped the connection, but its
    /// writer may be stuck on a peer that stopped reading, and then no
    /// disconnect handler runs; the caller cleans up instead.
    pub async fn drain(
        self: Arc<Self>,
        socket: SocketRef,
        cancel: CancellationToken,
        liveness: Duration,
    ) -> DrainEnd {
        let _running = self.drain_lock.lock().await;
        let mut pace: Option<Duration> = None;
        let mut refused_since: Option<Instant> = None;
        let mut sent = None;
        while let Some(item) = self.next(&cancel, sent.take()).await {
            loop {
                if let Some(p) = pace {
                    tokio::select! {
                        _ = tokio::time::sleep(p) => {}
                        _ = cancel.cancelled() => {
                            self.put_back(item);
                            return DrainEnd::Detached;
                        }
                    }
                }
                match item.emit(&socket) {
                    Ok(()) => {
                        refused_since = None;
                        pace = pace
                            .map(|p| p.mul_f64(0.9))
                            .filter(|p| *p >= Duration::from_micros(500));
                        sent = Some(item);
                        break;
                    }
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                        self.stats.transport_refusals.fetch_add(1, Relaxed);
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > liveness {
                            self.put_back(item);
                            return DrainEnd::TransportDead;
                        }
                        pace = Some(pace.map_or(Duration::from_millis(2), |p| {
                            (p * 2).min(Duration::from_secs(1))
                        }));
                    }
                    Err(SendError::Socket(SocketError::Closed)) => {
                        self.put_back(item);
                        return DrainEnd::Closed;
                    }
                    Err(SendError::Serialize(e)) => {
                        tracing::error!(error = ?e, event = item.event(), "event did not serialize");
                        break;
                    }
                }
            }
        }
        DrainEnd::Detached
    }

    /// Return an event the socket did not take to the front of its queue.
    fn put_back(&self, item: Outbound) {
        let mut s = self.lock();
        let stream = stream_of(&item);
        s.events += 1;
        s.bytes += item.weight();
        self.stats.queued_events.fetch_add(1, Relaxed);
        match stream {
            None => s.control.push_front(item),
            Some(id) => {
                s.unacked = s.unacked.saturating_sub(item.tokens());
                if item.is_terminal() {
                    s.ended.retain(|e| *e != id);
                }
                let q = s.streams.entry(id.clone()).or_default();
                if let Outbound::Token(t) = &item {
                    // Not emitted after all.
                    q.emitted = t.token_count.saturating_sub(item.tokens());
                }
                let was_empty = q.items.is_empty();
                q.items.push_front(item);
                if was_empty {
                    s.ring.push_front(id);
                }
            }
        }
    }

    /// Mark the client detached (no socket) or attached again.
    pub fn set_detached(&self, detached: bool) {
        self.lock().detached = detached;
        self.has_room.notify_waiters();
    }

    /// Wait until no drain task runs (the previous socket's has seen its
    /// attachment cancelled and stopped).
    pub async fn wait_for_drain_to_stop(&self) {
        drop(self.drain_lock.lock().await);
    }

    /// Prepare a resume: for each stream asked for (`None`: every stream
    /// this client has or recently had), put the events the client lacks,
    /// those after its `lastTokenCount`, back at the front of the stream's
    /// queue, so the next drain sends them first, then the rest in order.
    /// Returns the resumed streams and the ids that are unknown here.
    /// Call only while no drain runs.
    pub fn rewind(
        &self,
        wanted: Option<Vec<(String, Option<u64>)>>,
    ) -> (Vec<Resumed>, Vec<String>) {
        let mut s = self.lock();
        let wanted: Vec<(String, Option<u64>)> = match wanted {
            Some(w) => w,
            None => s.streams.keys().map(|k| (k.to_string(), None)).collect(),
        };
        let mut resumed = Vec::new();
        let mut unknown = Vec::new();
        for (id, last) in wanted {
            let Some((key, _)) = s.streams.get_key_value(id.as_str()) else {
                unknown.push(id);
                continue;
            };
            let key = key.clone();
            let mut lacking = s.replay.take_after(&key, last);
            let st = &mut *s;
            let Some(q) = st.streams.get_mut(&key) else {
                continue;
            };
            // Credits restart from what the client has.
            st.unacked = st.unacked.saturating_sub(q.emitted.saturating_sub(q.acked));
            // Queued tokens the client says it already has go too.
            if let Some(l) = last {
                let (mut gone, mut freed) = (0, 0);
                q.items.retain(|i| {
                    let had = matches!(i, Outbound::Token(t) if t.token_count <= l);
                    if had {
                        gone += 1;
                        freed += i.weight();
                    }
                    !had
                });
                st.events -= gone;
                st.bytes = st.bytes.saturating_sub(freed);
                self.stats.queued_events.fetch_sub(gone as u64, Relaxed);
            }
            // What the client says it has is where credits start again (a
            // terminal event may have written the acked mark forward).
            q.acked = last.unwrap_or(0).min(q.position);
            q.emitted = q.acked;
            let was_empty = q.items.is_empty();
            let replayed = lacking.iter().map(Outbound::tokens).sum();
            for item in lacking.drain(..).rev() {
                st.events += 1;
                st.bytes += item.weight();
                self.stats.queued_events.fetch_add(1, Relaxed);
                q.items.push_front(item);
            }
            if was_empty && !q.items.is_empty() {
                st.ring.push_back(key.clone());
            }
            if q.items.iter().any(Outbound::is_terminal) {
                st.ended.retain(|e| *e != key);
            }
            resumed.push(Resumed {
                stream_id: key,
                state: q.outcome.unwrap_or("streaming"),
                token_count: q.position,
                replayed,
            });
        }
        self.update_episode(&mut s);
        drop(s);
        self.wake_drain.notify_one();
        (resumed, unknown)
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

fn stream_of(item: &Outbound) -> Option<Arc<str>> {
    match item {
        Outbound::Start(p) => Some(p.stream_id.clone()),
        Outbound::Token(p) => Some(p.stream_id.clone()),
        Outbound::Complete(p) => Some(p.stream_id.clone()),
        Outbound::Done(p) => Some(p.stream_id.clone()),
        Outbound::Cancelled(p) => Some(p.stream_id.clone()),
        Outbound::StreamError(p) => Some(p.stream_id.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Done, StreamStart};

    fn outbox(ack_window: u64) -> ClientOutbox {
        ClientOutbox::new(
            OutboxLimits {
                threshold: 100,
                max_bytes: 1 << 20,
                ack_window,
                policy: BackpressurePolicy::Coalesce,
                slow_timeout: Duration::from_secs(30),
                replay_tokens: 64,
                replay_bytes: 1 << 16,
            },
            Arc::new(Stats::default()),
        )
    }

    /// Found by tests/fuzz_events.rs: a stream id used again after its
    /// stream ended inherited the old record's credit marks, so each
    /// reuse leaked credits until a credit-aware client was stalled.
    #[test]
    fn reusing_an_ended_stream_id_leaks_no_credits() {
        let o = outbox(4);
        let id: Arc<str> = "f3".into();
        o.ack("other", 0); // the client counts credits
        for round in 0..50 {
            o.push_stream_event(
                &id,
                Outbound::Start(StreamStart {
                    stream_id: id.clone(),
                    provider: "p".into(),
                    model: "m".into(),
                    agent: None,
                    intent: None,
                    timestamp: 0,
                }),
            );
            for n in 1..=2 {
                let mut s = o.lock();
                let token = Token {
                    stream_id: id.clone(),
                    data: "x".into(),
                    token_count: n,
                    agent: None,
                    metadata: None,
                };
                o.add(&mut s, Some(&id), Outbound::Token(token));
            }
            o.push_stream_event(
                &id,
                Outbound::Done(Done {
                    stream_id: id.clone(),
                    total_tokens: 2,
                    duration: 0,
                    finish_reason: "stop".into(),
                    usage: None,
                    dropped_tokens: 0,
                    full_response: None,
                }),
            );
            let mut sent = None;
            for _ in 0..4 {
                let item = o
                    .take(sent.take())
                    .unwrap_or_else(|_| panic!("round {round}: held back for want of credits"));
                sent = Some(item);
            }
            o.take(sent).unwrap_err();
            // The client acks the last token only after the stream ended
            // (or never: credits of an ended stream are forgotten).
            if round % 2 == 0 {
                o.ack(&id, 2);
            }
        }
    }
}
