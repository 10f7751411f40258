//! Logs and counters.
//!
//! Counters live in [`Stats`] as plain atomics that the hot path bumps
//! without a lock; the ops door (`ops::figures`) lists how each is shown
//! in `/stats` and `/metrics`. Per provider, [`ProviderStats`] adds a
//! lock-free latency histogram for time to first token.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,socketioxide=warn,engineioxide=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Process-wide counters.
#[derive(Default)]
pub struct Stats {
    pub clients_connected: AtomicU64,
    pub clients_total: AtomicU64,
    /// Clients whose socket went away, inside their reconnect window.
    pub clients_detached: AtomicU64,
    pub resumes_succeeded: AtomicU64,
    pub resumes_failed: AtomicU64,
    pub tokens_replayed: AtomicU64,
    pub streams_active: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    pub streams_failed: AtomicU64,
    pub tokens_relayed: AtomicU64,
    pub tokens_coalesced: AtomicU64,
    pub tokens_dropped: AtomicU64,
    /// Events queued in every client outbox together.
    pub queued_events: AtomicU64,
    /// Clients in a backpressure episode now.
    pub backpressure_engaged: AtomicU64,
    pub backpressure_episodes: AtomicU64,
    /// Total time spent engaged by ended episodes, ms.
    pub backpressure_engaged_ms: AtomicU64,
    /// Emits socketioxide refused because its per-socket channel was full.
    pub transport_refusals: AtomicU64,
    /// Streams admitted through each of the earlier designs' dialects
    /// (PROTOCOL.md part 3): `llm:chat:stream`, `chat_message`,
    /// `chat_stream`, `POST /llm/chat`.
    pub dialect_llm_streams: AtomicU64,
    pub dialect_chat_streams: AtomicU64,
    pub dialect_chat_stream_streams: AtomicU64,
    pub dialect_llm_rest_streams: AtomicU64,
}

/// Per provider: requests, errors, time to first token.
#[derive(Default)]
pub struct ProviderStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub ttft: LatencyHistogram,
}

/// Log-scale histogram of milliseconds: 64 buckets, each 25% wider than
/// the one before, from 1 ms to about an hour. Lock-free to record;
/// quantiles are read from bucket upper bounds (within 25%).
pub struct LatencyHistogram {
    buckets: [AtomicU64; 64],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl LatencyHistogram {
    fn bucket_of(ms: f64) -> usize {
        if ms <= 1.0 {
            return 0;
        }
        ((ms.ln() / 1.25f64.ln()).ceil() as usize).min(63)
    }

    fn upper_bound(i: usize) -> f64 {
        1.25f64.powi(i as i32)
    }

    pub fn record(&self, d: Duration) {
        let i = Self::bucket_of(d.as_secs_f64() * 1000.0);
        self.buckets[i].fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The `q` quantile in ms (upper bound of its bucket), None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((Self::upper_bound(i) * 10.0).round() / 10.0);
            }
        }
        None
    }
}

impl ProviderStats {
    pub fn snapshot(&self) -> Value {
        json!({
            "requests": self.requests.load(Relaxed),
            "errors": self.errors.load(Relaxed),
            "timeToFirstTokenMs": {
                "count": self.ttft.count(),
                "p50": self.ttft.quantile(0.5),
                "p99": self.ttft.quantile(0.99),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = LatencyHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((50.0..=63.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((99.0..=124.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
    }
}
