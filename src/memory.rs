//! Giving memory back to the system after a crowd has left.
//!
//! glibc's allocator keeps what the process freed, for the process to use
//! again: after a flood of 60,000 Engine.IO sessions had timed out (every
//! one of them dropped, `connections.live` back at 0), the gateway's RSS
//! stayed at 632 MB, and `malloc_trim(0)` brought it to 20 MB (README,
//! "Connection flood"). [`Trimmer`] watches the figures that measure what
//! clients hold (live connections, replay bytes) and, when they have
//! fallen far below their peak since the last trim, asks the allocator to
//! return its free pages. It costs a few milliseconds, at most every
//! [`Trimmer::EVERY`], and only after such a fall; on other allocators and
//! systems it does nothing. It reads `Stats` and touches nothing else.

use crate::telemetry::Stats;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Connections fewer than the peak, or replay bytes less, that are worth
/// a trim.
const CONNECTIONS_FALL: u64 = 1_000;
const REPLAY_FALL: u64 = 64 * 1024 * 1024;

/// The peaks since the last trim.
#[derive(Default)]
pub struct Trimmer {
    connections_peak: u64,
    replay_peak: u64,
}

impl Trimmer {
    /// How often the figures are looked at.
    pub const EVERY: Duration = Duration::from_secs(5);

    /// Look at the figures; trim when they fell far enough. Returns whether
    /// it trimmed.
    pub fn tick(&mut self, stats: &Stats) -> bool {
        let connections = stats.connections_live.load(Relaxed);
        let replay = stats.replay_bytes.load(Relaxed);
        self.connections_peak = self.connections_peak.max(connections);
        self.replay_peak = self.replay_peak.max(replay);
        let fell = self.connections_peak - connections >= CONNECTIONS_FALL
            || self.replay_peak - replay >= REPLAY_FALL;
        if !fell {
            return false;
        }
        self.connections_peak = connections;
        self.replay_peak = replay;
        release_free_memory();
        true
    }
}

/// Ask the allocator to return the memory it holds free.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists and may
    // be called from any thread at any time (glibc takes each arena's lock).
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "asked the allocator to return free memory"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_a_large_fall_and_not_before() {
        let stats = Stats::default();
        let mut t = Trimmer::default();
        stats.connections_live.store(5_000, Relaxed);
        assert!(!t.tick(&stats), "rising");
        stats.connections_live.store(4_500, Relaxed);
        assert!(!t.tick(&stats), "a small fall");
        stats.connections_live.store(10, Relaxed);
        assert!(t.tick(&stats), "the crowd left");
        assert!(!t.tick(&stats), "and once is enough");
    }
}
