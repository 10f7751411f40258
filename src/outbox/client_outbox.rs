//! [`ClientOutbox`] itself: its state, the one place that keeps the
//! state's derived figures right ([`ClientOutbox::change`]: the queue and
//! replay gauges, the replay caps, the episode, who is woken), and the
//! producers' side (streams push deltas and their start and end, doors
//! push control events, acks free credits).

use super::credits::Credits;
use super::event::{Control, StreamEvent};
use super::mirror::ChannelMirror;
use super::pressure::{Admit, Episode, Load, admit};
use super::queue::Queues;
use super::replay::{MemoryReplay, ReplayLog};
use crate::protocol::{Backpressure, BackpressurePolicy, Token};
use crate::telemetry::Stats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What happened to a pushed delta.
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
pub struct OutboxSettings {
    pub threshold: usize,
    pub max_bytes: usize,
    pub ack_window: u64,
    pub policy: BackpressurePolicy,
    pub slow_timeout: Duration,
    /// Per stream: sent deltas kept for replay on resume.
    pub replay_tokens: usize,
    pub replay_bytes: usize,
    /// Per stream, while the client has never acked.
    pub replay_unacked_bytes: usize,
    /// Per client, all streams together (0: no cap).
    pub replay_bytes_per_client: usize,
    /// Every client's replay together (0: no cap); past it a recording
    /// client gives up its own oldest entries.
    pub max_replay_bytes: usize,
}

/// Control events past this many queued are dropped: a client flooding
/// bad requests must not grow its queue.
const CONTROL_CAP: usize = 64;

pub(super) struct State {
    pub(super) queues: Queues,
    pub(super) credits: Credits,
    pub(super) episode: Episode,
    /// A notice a writer could not send, to be offered again first.
    pub(super) returned_notice: Option<Backpressure>,
    pub(super) dropped: u64,
    pub(super) replay: Box<dyn ReplayLog>,
    /// No writer is attached: deltas are held back, never dropped.
    pub(super) detached: bool,
    /// The client is gone for good: pushes are discarded.
    pub(super) closed: bool,
    /// Shutdown: the reader stops once nothing more may go.
    pub(super) flushing: bool,
}

impl State {
    fn new(settings: &OutboxSettings) -> Self {
        Self {
            queues: Queues::default(),
            credits: Credits::new(settings.ack_window),
            episode: Episode::default(),
            returned_notice: None,
            dropped: 0,
            replay: Box::new(
                MemoryReplay::new(settings.replay_tokens, settings.replay_bytes)
                    .with_unacked_cap(settings.replay_unacked_bytes),
            ),
            detached: false,
            closed: false,
            flushing: false,
        }
    }
}

pub struct ClientOutbox {
    pub(super) state: Mutex<State>,
    pub(super) settings: OutboxSettings,
    /// Wakes the reader: new items, acks, a notice falling due.
    pub(super) wake_reader: Notify,
    /// Wakes pushers waiting for room.
    pub(super) has_room: Notify,
    pub(super) stats: Arc<Stats>,
    /// Held by the one reader, so that a resume's rewind happens after the
    /// previous writer is gone and before the next one starts.
    pub(super) reader_slot: Arc<tokio::sync::Mutex<()>>,
    /// A copy of what is produced, kept elsewhere (set once, with Redis).
    mirror: OnceLock<ChannelMirror>,
}

impl ClientOutbox {
    pub fn new(settings: OutboxSettings, stats: Arc<Stats>) -> Self {
        Self {
            state: Mutex::new(State::new(&settings)),
            settings,
            wake_reader: Notify::new(),
            has_room: Notify::new(),
            stats,
            reader_slot: Arc::new(tokio::sync::Mutex::new(())),
            mirror: OnceLock::new(),
        }
    }

    /// Tell `mirror` every event produced from now on, and every ack (the
    /// first call wins).
    pub fn set_mirror(&self, mirror: ChannelMirror) {
        let _ = self.mirror.set(mirror);
    }

    /// The name of this outbox's copy, when it has a mirror.
    pub fn mirror_log(&self) -> Option<Arc<str>> {
        self.mirror.get().map(|m| m.log().clone())
    }

    fn mirrored(&self, event: &StreamEvent) {
        if let Some(m) = self.mirror.get() {
            m.produced(event);
        }
    }

    pub fn policy(&self) -> BackpressurePolicy {
        self.settings.policy
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // No code path leaves the state half-updated across a panic point.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on the state, then keep what follows from any change right
    /// in one place: the replay caps and gauge, the process-wide queue
    /// gauge, the episode, and who is woken (the reader when events came,
    /// pushers when they went).
    pub(super) fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.lock();
        let before = s.queues.events();
        let replay_before = s.replay.bytes();
        let r = f(&mut s);
        self.bound_replay(&mut s, replay_before);
        move_gauge(&self.stats.replay_bytes, replay_before, s.replay.bytes());
        let after = s.queues.events();
        let threshold = self.settings.threshold;
        s.episode
            .observe(after >= threshold, after < threshold / 2, &self.stats);
        drop(s);
        if after > before {
            self.stats
                .queued_events
                .fetch_add((after - before) as u64, Relaxed);
            self.wake_reader.notify_one();
        } else if after < before {
            self.stats
                .queued_events
                .fetch_sub((before - after) as u64, Relaxed);
            self.has_room.notify_waiters();
        }
        r
    }

    /// Keep the replay record under the client's cap and its share of the
    /// process's (what other clients hold is read from the gauge, which
    /// they move as this one does).
    fn bound_replay(&self, s: &mut State, before: usize) {
        let own = s.replay.bytes();
        if own <= before {
            return;
        }
        let cap = |c: usize| if c == 0 { usize::MAX } else { c };
        let mut target = cap(self.settings.replay_bytes_per_client);
        if self.settings.max_replay_bytes != 0 {
            let others = (self.stats.replay_bytes.load(Relaxed) as usize).saturating_sub(before);
            target = target.min(self.settings.max_replay_bytes.saturating_sub(others));
        }
        if own > target {
            s.replay.shrink_to(target);
        }
    }

    /// Queued events now.
    pub fn len(&self) -> usize {
        self.lock().queues.events()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued now (approximate: text plus framing per event).
    pub fn bytes(&self) -> usize {
        self.lock().queues.bytes()
    }

    /// Bytes held for replay now.
    pub fn replay_bytes(&self) -> usize {
        self.lock().replay.bytes()
    }

    /// Queue a text delta (see [`ClientOutbox::push_delta`]).
    pub async fn push_token(&self, token: Token) -> Result<Pushed, TooSlow> {
        self.push_delta(StreamEvent::Token(token)).await
    }

    /// Queue a delta (text, reasoning, a tool call's arguments) under the
    /// client's policy; under `slow` (and `coalesce` past its byte cap)
    /// this waits for room, which is what holds the stream's upstream back.
    pub async fn push_delta(&self, delta: StreamEvent) -> Result<Pushed, TooSlow> {
        let mut pending = delta;
        let mut stalled_since: Option<Instant> = None;
        loop {
            let room = self.has_room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let (t, detached) = match self.change(|s| self.admit_token(s, pending)) {
                Ok(pushed) => return Ok(pushed),
                Err(waiting) => waiting,
            };
            pending = t;
            if detached {
                // Nobody to judge: hold the upstream back until the client
                // resumes or its window runs out.
                stalled_since = None;
            }
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if tokio::time::timeout_at(since + self.settings.slow_timeout, room)
                .await
                .is_err()
                && !self.lock().detached
            {
                return Err(TooSlow);
            }
        }
    }

    /// One attempt to place `t`, or `t` handed back (with whether the
    /// client is detached) to wait for room.
    fn admit_token(&self, s: &mut State, t: StreamEvent) -> Result<Pushed, (StreamEvent, bool)> {
        if s.closed {
            return Ok(Pushed::Queued);
        }
        let (events, threshold) = (s.queues.events(), self.settings.threshold);
        let load = Load {
            behind: s.episode.engaged() || events >= threshold,
            over_bytes: s.queues.bytes() >= self.settings.max_bytes,
            under_half: events < threshold / 2,
            detached: s.detached,
        };
        let decision = admit(self.settings.policy, load);
        if matches!(decision, Admit::Queue | Admit::Merge) {
            self.mirrored(&t);
        }
        match decision {
            Admit::Queue => s.queues.push_stream(t),
            Admit::Drop => {
                s.dropped += 1;
                self.stats.tokens_dropped.fetch_add(1, Relaxed);
                return Ok(Pushed::Dropped);
            }
            Admit::Merge => match s.queues.merge_into_last(t) {
                Ok(()) => {
                    self.stats.tokens_coalesced.fetch_add(1, Relaxed);
                    return Ok(Pushed::Coalesced);
                }
                Err(t) => s.queues.push_stream(t),
            },
            Admit::Wait => return Err((t, s.detached)),
        }
        Ok(Pushed::Queued)
    }

    /// A stream was admitted: know it (live, nothing queued yet) before
    /// its first event, for a resume that comes before the start.
    pub fn open_stream(&self, id: &Arc<str>) {
        self.change(|s| {
            if !s.closed && s.queues.open(id) {
                s.replay.forget(id);
            }
        });
    }

    /// Queue a stream's start, completion or terminal event: never refused,
    /// and a few per stream, so they cannot grow the queue without bound.
    pub fn push_stream_event(&self, event: StreamEvent) {
        self.change(|s| {
            if !s.closed {
                self.mirrored(&event);
                s.queues.push_stream(event);
            }
        });
    }

    /// Queue a door's control event; false when the client is so far
    /// behind that it was dropped.
    pub fn push_control(&self, c: Control) -> bool {
        self.change(|s| {
            if s.closed || s.queues.control_len() >= CONTROL_CAP {
                return false;
            }
            s.queues.push_control(c);
            true
        })
    }

    /// `ai:ack`: the client has rendered `stream` up to `position`. Acks
    /// of streams the outbox no longer knows are ignored (a late ack after
    /// the terminal event is normal).
    pub fn ack(&self, stream: &str, position: u64) {
        if let Some(m) = self.mirror.get() {
            m.acked(stream, position);
        }
        let freed = self.change(|s| {
            s.replay.trim(stream, position);
            let State {
                queues, credits, ..
            } = s;
            credits.acked(queues.stream_mut(stream).map(|q| &mut q.credits), position)
        });
        if freed {
            self.wake_reader.notify_one();
        }
    }

    /// Mark the client detached (no writer) or attached again.
    pub fn set_detached(&self, detached: bool) {
        self.lock().detached = detached;
        self.has_room.notify_waiters();
    }

    /// Shutdown: let the reader deliver what may go now, then stop.
    pub fn flush(&self) {
        self.lock().flushing = true;
        self.wake_reader.notify_one();
    }

    /// Forget everything queued (the client is gone for good).
    pub fn clear(&self) {
        let mut s = self.lock();
        self.stats
            .queued_events
            .fetch_sub(s.queues.events() as u64, Relaxed);
        move_gauge(&self.stats.replay_bytes, s.replay.bytes(), 0);
        s.episode.end(&self.stats);
        *s = State::new(&self.settings);
        // Stream tasks still ending may push their terminal events; they
        // have nobody to go to.
        s.closed = true;
        drop(s);
        self.has_room.notify_waiters();
    }
}

impl Drop for ClientOutbox {
    /// Whatever path a client ends by, what its outbox still counts in the
    /// process-wide gauges goes with it (after `clear` that is nothing).
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        move_gauge(&self.stats.queued_events, s.queues.events(), 0);
        move_gauge(&self.stats.replay_bytes, s.replay.bytes(), 0);
        s.episode.end(&self.stats);
    }
}

/// Move a process-wide gauge by what one client's figure did.
fn move_gauge(gauge: &std::sync::atomic::AtomicU64, before: usize, after: usize) {
    if after > before {
        gauge.fetch_add((after - before) as u64, Relaxed);
    } else if before > after {
        gauge.fetch_sub((before - after) as u64, Relaxed);
    }
}
