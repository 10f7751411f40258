//! Logs and counters.
//!
//! Counters live in [`Stats`] as plain atomics that the hot path bumps
//! without a lock; `/stats` reads them as JSON, and `/metrics` copies them
//! into the `metrics` registry (names in [`names`]) and renders it with
//! metrics-exporter-prometheus. Nothing walks the clients under a lock to
//! answer either.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,socketioxide=warn,engineioxide=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Metric names, in one list.
pub mod names {
    pub const CLIENTS_CONNECTED: &str = "streamgate_clients_connected";
    pub const CLIENTS_DETACHED: &str = "streamgate_clients_detached";
    pub const RESUMES_SUCCEEDED: &str = "streamgate_resumes_succeeded_total";
    pub const RESUMES_FAILED: &str = "streamgate_resumes_failed_total";
    pub const TOKENS_REPLAYED: &str = "streamgate_tokens_replayed_total";
    pub const STREAMS_ACTIVE: &str = "streamgate_streams_active";
    pub const STREAMS_STARTED: &str = "streamgate_streams_started_total";
    pub const STREAMS_COMPLETED: &str = "streamgate_streams_completed_total";
    pub const STREAMS_CANCELLED: &str = "streamgate_streams_cancelled_total";
    pub const STREAMS_FAILED: &str = "streamgate_streams_failed_total";
    pub const TOKENS_RELAYED: &str = "streamgate_tokens_relayed_total";
    pub const TOKENS_COALESCED: &str = "streamgate_tokens_coalesced_total";
    pub const TOKENS_DROPPED: &str = "streamgate_tokens_dropped_total";
    pub const QUEUE_EVENTS: &str = "streamgate_queue_events";
    pub const QUEUE_LARGEST: &str = "streamgate_queue_events_largest";
    pub const BACKPRESSURE_ENGAGED: &str = "streamgate_backpressure_engaged_clients";
    pub const BACKPRESSURE_EPISODES: &str = "streamgate_backpressure_episodes_total";
    pub const BACKPRESSURE_ENGAGED_MS: &str = "streamgate_backpressure_engaged_ms_total";
    pub const TRANSPORT_REFUSALS: &str = "streamgate_transport_refusals_total";
    pub const PROVIDER_REQUESTS: &str = "streamgate_provider_requests_total";
    pub const PROVIDER_ERRORS: &str = "streamgate_provider_errors_total";
    pub const PROVIDER_TTFT: &str = "streamgate_provider_ttft_ms";
    pub const ROUTING_DIRECT: &str = "streamgate_routing_direct_total";
    pub const ROUTING_LOW_CONFIDENCE: &str = "streamgate_routing_low_confidence_total";
    pub const ROUTING_INTENT: &str = "streamgate_routing_intent_total";
    pub const ROUTING_AGENT: &str = "streamgate_routing_agent_total";
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
    pub errors_sent: AtomicU64,
    /// Clients in a backpressure episode now.
    pub backpressure_engaged: AtomicU64,
    pub backpressure_episodes: AtomicU64,
    /// Total time spent engaged by ended episodes, ms.
    pub backpressure_engaged_ms: AtomicU64,
    /// Emits socketioxide refused because its per-socket channel was full.
    pub transport_refusals: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Relaxed);
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

/// Tokens/s over the last sampling window, computed when `/stats` is read.
pub struct RateWindow {
    last: std::sync::Mutex<(Instant, u64, f64)>,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            last: std::sync::Mutex::new((Instant::now(), 0, 0.0)),
        }
    }
}

impl RateWindow {
    /// Rate since the previous call (kept for a second so rapid reads agree).
    pub fn rate(&self, total: u64) -> f64 {
        let Ok(mut last) = self.last.lock() else {
            return 0.0;
        };
        let elapsed = last.0.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            let rate = (total.saturating_sub(last.1)) as f64 / elapsed;
            *last = (Instant::now(), total, rate);
        }
        (last.2 * 10.0).round() / 10.0
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
