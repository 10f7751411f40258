//! Pressure on one client: what its policy does with a delta while it is
//! behind, when a backpressure episode starts and ends, and when the client
//! may hear about it.
//!
//! [`admit`] is the policy table (queue, merge, drop or wait), a pure
//! function of the policy and the queue's state. The outbox calls
//! [`Episode::observe`] after every change of its queue; an episode starts
//! when the queue reaches the threshold and ends when it falls under half
//! of it (hysteresis, so a queue hovering at the threshold does not flap).
//! The client is told with `ai:backpressure`, at most once a second: a
//! transition inside that second is announced when the second is up, and
//! two transitions that cancel out inside it are not announced at all.

use crate::protocol::{Backpressure, BackpressurePolicy, BackpressureState};
use crate::telemetry::Stats;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;

const MIN_NOTICE_GAP: Duration = Duration::from_secs(1);

/// What to do with a delta pushed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Queue it as an event of its own.
    Queue,
    /// Merge it into the stream's last queued delta (lossless).
    Merge,
    /// Drop it and count it.
    Drop,
    /// Wait for room (this is what holds the upstream back).
    Wait,
}

/// The queue's state as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// In an episode, or at the threshold.
    pub behind: bool,
    /// Past the byte cap.
    pub over_bytes: bool,
    /// Under half the threshold.
    pub under_half: bool,
    /// No writer attached: nobody to judge, so nothing is dropped.
    pub detached: bool,
}

/// The policy table: `coalesce` merges while behind and waits past the
/// byte cap; `slow` waits until the queue is under half the threshold;
/// `drop` drops while behind, except when detached (then it waits).
pub fn admit(policy: BackpressurePolicy, load: Load) -> Admit {
    let policy = match policy {
        BackpressurePolicy::Drop if load.detached => BackpressurePolicy::Slow,
        p => p,
    };
    match policy {
        _ if !load.behind && !load.over_bytes => Admit::Queue,
        BackpressurePolicy::Drop => Admit::Drop,
        BackpressurePolicy::Coalesce if !load.over_bytes => Admit::Merge,
        _ if load.under_half && !load.over_bytes => Admit::Queue,
        _ => Admit::Wait,
    }
}

#[derive(Default)]
pub struct Episode {
    since: Option<Instant>,
    /// The state the client was last told (false before any notice).
    announced: bool,
    last_notice: Option<Instant>,
}

/// A transition to announce.
pub struct Notice {
    engaged: bool,
}

impl Episode {
    pub fn engaged(&self) -> bool {
        self.since.is_some()
    }

    pub fn observe(&mut self, behind: bool, caught_up: bool, stats: &Stats) {
        match self.since {
            None if behind => {
                self.since = Some(Instant::now());
                stats.backpressure_engaged.fetch_add(1, Relaxed);
                stats.backpressure_episodes.fetch_add(1, Relaxed);
            }
            Some(_) if caught_up => self.end(stats),
            _ => {}
        }
    }

    /// End the episode (relieved, or the client is gone).
    pub fn end(&mut self, stats: &Stats) {
        if let Some(since) = self.since.take() {
            stats.backpressure_engaged.fetch_sub(1, Relaxed);
            stats
                .backpressure_engaged_ms
                .fetch_add(since.elapsed().as_millis() as u64, Relaxed);
        }
    }

    /// A notice to send now, none, or the instant one falls due.
    pub fn notice(&mut self, now: Instant) -> Result<Option<Notice>, Instant> {
        let engaged = self.engaged();
        if engaged == self.announced {
            return Ok(None);
        }
        if let Some(last) = self.last_notice
            && now < last + MIN_NOTICE_GAP
        {
            return Err(last + MIN_NOTICE_GAP);
        }
        self.announced = engaged;
        self.last_notice = Some(now);
        Ok(Some(Notice { engaged }))
    }
}

impl Notice {
    pub fn into_event(
        self,
        queue_size: usize,
        threshold: usize,
        policy: BackpressurePolicy,
        dropped_tokens: u64,
    ) -> Backpressure {
        let (state, message) = if self.engaged {
            let what = match policy {
                BackpressurePolicy::Coalesce => "queued tokens are merged into fewer events",
                BackpressurePolicy::Slow => "upstreams are held back until you catch up",
                BackpressurePolicy::Drop => "tokens are dropped and counted in ai:done",
            };
            (
                BackpressureState::Engaged,
                format!(
                    "client is behind ({queue_size} events queued, threshold {threshold}); {what}"
                ),
            )
        } else {
            (BackpressureState::Relieved, "client caught up".to_string())
        };
        Backpressure {
            state,
            message,
            queue_size,
            threshold,
            policy,
            dropped_tokens,
        }
    }
}
