//! Logs and counters.
//!
//! Logs go to stderr through `tracing` ([`init_logs`]): text for people
//! (coloured only when stderr is a terminal and `NO_COLOR` is unset) or
//! one JSON object a line for log collectors; `RUST_LOG` filters.
//! Counters live in [`Stats`] as plain atomics that the hot path bumps
//! without a lock; the ops door (`ops::figures`) lists how each is shown
//! in `/stats` and `/metrics`. Per provider, [`ProviderStats`] adds a
//! lock-free latency histogram for time to first token.

use serde_json::{Value, json};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, target, spans).
    Json,
}

/// Text logs on stderr (tests and tools; the binary picks the format).
pub fn init_tracing() {
    init_logs(LogFormat::Text);
}

/// Install the log subscriber: stderr, `RUST_LOG` or the default filter,
/// colour only on a terminal.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,socketioxide=warn,engineioxide=warn")
    });
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
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
    /// Batches this node wrote for clients attached to another node
    /// (one Redis round trip each), and the events in them.
    pub remote_batches: AtomicU64,
    pub remote_events: AtomicU64,
    /// Stream-log writes to Redis (one round trip each) and the events
    /// in them; client or stream logs that stopped (queue full, or Redis
    /// refused a write): a resume from them ends early with `node_lost`.
    pub log_batches: AtomicU64,
    pub log_events: AtomicU64,
    pub logs_stopped: AtomicU64,
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
    /// Live connections (Engine.IO sessions), and how many were admitted.
    pub connections_live: AtomicU64,
    pub connections_opened: AtomicU64,
    /// Client addresses holding a live connection.
    pub connection_addresses: AtomicU64,
    /// Bytes every client's replay record holds, together.
    pub replay_bytes: AtomicU64,
    pub refused: Refusals,
    /// Streams admitted through each of the earlier designs' dialects
    /// (PROTOCOL.md part 3): `llm:chat:stream`, `chat_message`,
    /// `chat_stream`, `POST /llm/chat`.
    pub dialect_llm_streams: AtomicU64,
    pub dialect_chat_streams: AtomicU64,
    pub dialect_chat_stream_streams: AtomicU64,
    pub dialect_llm_rest_streams: AtomicU64,
}

/// Requests refused by a limit or a cap, by what refused them.
#[derive(Default)]
pub struct Refusals {
    /// Events over a client's event budget.
    pub events: AtomicU64,
    /// `ai:ack`s over a client's ack budget.
    pub acks: AtomicU64,
    /// Stream starts over a user's (or address's) stream budget.
    pub streams: AtomicU64,
    /// Engine.IO handshakes (per-address rate, connection caps).
    pub connections: AtomicU64,
    /// `/ai` joins over the per-address join rate.
    pub joins: AtomicU64,
    /// Requests refused by a process-wide cap: clients, live streams
    /// (in all or of a provider), replay bytes.
    pub capacity: AtomicU64,
    /// Refusals not answered with an `ai:error`, because the client had
    /// been told already in this run of refusals.
    pub unanswered: AtomicU64,
}

/// Per provider: requests, errors, live streams, time to first token, and
/// whether it was last seen unreachable (so that an outage is logged at
/// warn once, not per stream).
#[derive(Default)]
pub struct ProviderStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub live_streams: AtomicU64,
    pub ttft: LatencyHistogram,
    pub unreachable: AtomicBool,
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
            "liveStreams": self.live_streams.load(Relaxed),
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
