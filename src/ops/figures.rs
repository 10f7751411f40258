//! The gateway's figures, listed once: each has its place in `/stats`
//! (a dotted path), its Prometheus name and kind, and how it is read.
//!
//! [`Sample`] is taken once per request: the process counters (atomics the
//! hot path bumps without a lock) plus the few figures that are computed
//! (largest queue, largest replay record, connections of the busiest
//! address, tokens per second) and the session store's own figures.
//! Everything a client or a flood can make the gateway hold has a figure
//! here: connections (even those that never join `/ai`), clients, queues,
//! replay records, live streams, sessions. `/stats` nests the
//! figures by path; `/metrics` sets each into a Prometheus recorder. So the
//! two endpoints show the same numbers from the same list. Per-provider and
//! per-route figures are labelled series and follow the same table.

use crate::app::App;
use crate::sessions::SessionFigures;
use crate::telemetry::Stats;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering::Relaxed;

/// What one request reads.
pub struct Sample<'a> {
    pub stats: &'a Stats,
    pub largest_queue: usize,
    pub largest_queue_bytes: usize,
    pub largest_replay_bytes: usize,
    pub largest_connections_per_address: usize,
    pub limiter_keys: usize,
    pub tokens_per_second: f64,
    pub uptime_seconds: u64,
    pub sessions: SessionFigures,
}

impl<'a> Sample<'a> {
    pub fn take(app: &'a App, tokens_per_second: f64) -> Self {
        let clients = app.clients.registry.all();
        let (mut largest, mut largest_bytes, mut replay) = (0, 0, 0);
        for c in &clients {
            largest = largest.max(c.outbox.len());
            largest_bytes = largest_bytes.max(c.outbox.bytes());
            replay = replay.max(c.outbox.replay_bytes());
        }
        Self {
            stats: &app.stats,
            largest_queue: largest,
            largest_queue_bytes: largest_bytes,
            largest_replay_bytes: replay,
            largest_connections_per_address: app.connections.largest_per_address(),
            limiter_keys: app.rate_limits.tracked_keys(),
            tokens_per_second,
            uptime_seconds: app.started.elapsed().as_secs(),
            sessions: app.sessions.figures(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One figure of `/stats` and `/metrics`.
pub struct Figure {
    /// Where it sits in `/stats`, e.g. `streams.active`.
    pub path: &'static str,
    /// Its Prometheus name; `None` for figures only `/stats` shows.
    pub metric: Option<&'static str>,
    pub kind: Kind,
    pub read: fn(&Sample) -> Value,
}

const fn gauge(path: &'static str, metric: &'static str, read: fn(&Sample) -> Value) -> Figure {
    Figure {
        path,
        metric: Some(metric),
        kind: Kind::Gauge,
        read,
    }
}

const fn counter(path: &'static str, metric: &'static str, read: fn(&Sample) -> Value) -> Figure {
    Figure {
        path,
        metric: Some(metric),
        kind: Kind::Counter,
        read,
    }
}

macro_rules! stat {
    ($field:ident) => {
        |s: &Sample| json!(s.stats.$field.load(Relaxed))
    };
}

macro_rules! refused {
    ($field:ident) => {
        |s: &Sample| json!(s.stats.refused.$field.load(Relaxed))
    };
}

pub const FIGURES: &[Figure] = &[
    Figure {
        path: "uptimeSeconds",
        metric: None,
        kind: Kind::Gauge,
        read: |s| json!(s.uptime_seconds),
    },
    gauge(
        "clients.connected",
        "streamgate_clients_connected",
        stat!(clients_connected),
    ),
    gauge(
        "clients.detached",
        "streamgate_clients_detached",
        stat!(clients_detached),
    ),
    counter(
        "clients.total",
        "streamgate_clients_total",
        stat!(clients_total),
    ),
    gauge(
        "streams.active",
        "streamgate_streams_active",
        stat!(streams_active),
    ),
    counter(
        "streams.started",
        "streamgate_streams_started_total",
        stat!(streams_started),
    ),
    counter(
        "streams.completed",
        "streamgate_streams_completed_total",
        stat!(streams_completed),
    ),
    counter(
        "streams.cancelled",
        "streamgate_streams_cancelled_total",
        stat!(streams_cancelled),
    ),
    counter(
        "streams.failed",
        "streamgate_streams_failed_total",
        stat!(streams_failed),
    ),
    counter(
        "streams.byDialect.llm",
        "streamgate_streams_dialect_llm_total",
        stat!(dialect_llm_streams),
    ),
    counter(
        "streams.byDialect.chat",
        "streamgate_streams_dialect_chat_total",
        stat!(dialect_chat_streams),
    ),
    counter(
        "streams.byDialect.chatStream",
        "streamgate_streams_dialect_chat_stream_total",
        stat!(dialect_chat_stream_streams),
    ),
    counter(
        "streams.byDialect.llmRest",
        "streamgate_streams_dialect_llm_rest_total",
        stat!(dialect_llm_rest_streams),
    ),
    counter(
        "tokens.relayed",
        "streamgate_tokens_relayed_total",
        stat!(tokens_relayed),
    ),
    counter(
        "tokens.coalesced",
        "streamgate_tokens_coalesced_total",
        stat!(tokens_coalesced),
    ),
    counter(
        "tokens.dropped",
        "streamgate_tokens_dropped_total",
        stat!(tokens_dropped),
    ),
    gauge("tokens.perSecond", "streamgate_tokens_per_second", |s| {
        json!(s.tokens_per_second)
    }),
    counter(
        "resume.succeeded",
        "streamgate_resumes_succeeded_total",
        stat!(resumes_succeeded),
    ),
    counter(
        "resume.failed",
        "streamgate_resumes_failed_total",
        stat!(resumes_failed),
    ),
    counter(
        "resume.tokensReplayed",
        "streamgate_tokens_replayed_total",
        stat!(tokens_replayed),
    ),
    counter(
        "resume.remoteBatches",
        "streamgate_remote_batches_total",
        stat!(remote_batches),
    ),
    counter(
        "resume.remoteEvents",
        "streamgate_remote_events_total",
        stat!(remote_events),
    ),
    counter(
        "resume.logBatches",
        "streamgate_log_batches_total",
        stat!(log_batches),
    ),
    counter(
        "resume.logEvents",
        "streamgate_log_events_total",
        stat!(log_events),
    ),
    counter(
        "resume.logsStopped",
        "streamgate_logs_stopped_total",
        stat!(logs_stopped),
    ),
    gauge(
        "backpressure.engagedClients",
        "streamgate_backpressure_engaged_clients",
        stat!(backpressure_engaged),
    ),
    counter(
        "backpressure.events",
        "streamgate_backpressure_episodes_total",
        stat!(backpressure_episodes),
    ),
    counter(
        "backpressure.engagedMs",
        "streamgate_backpressure_engaged_ms_total",
        stat!(backpressure_engaged_ms),
    ),
    counter(
        "backpressure.transportRefusals",
        "streamgate_transport_refusals_total",
        stat!(transport_refusals),
    ),
    gauge(
        "queues.total",
        "streamgate_queue_events",
        stat!(queued_events),
    ),
    gauge("queues.largest", "streamgate_queue_events_largest", |s| {
        json!(s.largest_queue)
    }),
    gauge(
        "queues.largestBytes",
        "streamgate_queue_bytes_largest",
        |s| json!(s.largest_queue_bytes),
    ),
    gauge(
        "queues.replayBytes",
        "streamgate_replay_bytes",
        stat!(replay_bytes),
    ),
    gauge(
        "queues.largestReplayBytes",
        "streamgate_replay_bytes_largest",
        |s| json!(s.largest_replay_bytes),
    ),
    gauge(
        "connections.live",
        "streamgate_connections_live",
        stat!(connections_live),
    ),
    counter(
        "connections.opened",
        "streamgate_connections_opened_total",
        stat!(connections_opened),
    ),
    gauge(
        "connections.addresses",
        "streamgate_connection_addresses",
        stat!(connection_addresses),
    ),
    gauge(
        "connections.largestPerAddress",
        "streamgate_connections_largest_per_address",
        |s| json!(s.largest_connections_per_address),
    ),
    gauge("limits.trackedKeys", "streamgate_limiter_keys", |s| {
        json!(s.limiter_keys)
    }),
    gauge("sessions.held", "streamgate_sessions_held", |s| {
        json!(s.sessions.held)
    }),
    gauge("sessions.bytes", "streamgate_sessions_bytes", |s| {
        json!(s.sessions.bytes)
    }),
    counter(
        "sessions.evictions",
        "streamgate_session_evictions_total",
        |s| json!(s.sessions.evictions),
    ),
    counter(
        "sessions.expired",
        "streamgate_sessions_expired_total",
        |s| json!(s.sessions.expired),
    ),
    counter(
        "refused.connections",
        "streamgate_refused_connections_total",
        refused!(connections),
    ),
    counter(
        "refused.joins",
        "streamgate_refused_joins_total",
        refused!(joins),
    ),
    counter(
        "refused.events",
        "streamgate_refused_events_total",
        refused!(events),
    ),
    counter(
        "refused.acks",
        "streamgate_refused_acks_total",
        refused!(acks),
    ),
    counter(
        "refused.streams",
        "streamgate_refused_streams_total",
        refused!(streams),
    ),
    counter(
        "refused.capacity",
        "streamgate_refused_capacity_total",
        refused!(capacity),
    ),
    counter(
        "refused.unanswered",
        "streamgate_refusals_unanswered_total",
        refused!(unanswered),
    ),
];

/// Labelled series: per provider and per routing decision.
pub mod series {
    pub const PROVIDER_REQUESTS: &str = "streamgate_provider_requests_total";
    pub const PROVIDER_ERRORS: &str = "streamgate_provider_errors_total";
    pub const PROVIDER_LIVE_STREAMS: &str = "streamgate_provider_live_streams";
    pub const PROVIDER_TTFT: &str = "streamgate_provider_ttft_ms";
    pub const ROUTING_DIRECT: &str = "streamgate_routing_direct_total";
    pub const ROUTING_LOW_CONFIDENCE: &str = "streamgate_routing_low_confidence_total";
    pub const ROUTING_INTENT: &str = "streamgate_routing_intent_total";
    pub const ROUTING_AGENT: &str = "streamgate_routing_agent_total";
}

/// The figures of `sample`, nested by path (the body of `/stats`, before
/// the labelled series are added).
pub fn nested(sample: &Sample) -> Map<String, Value> {
    let mut root = Map::new();
    for f in FIGURES {
        let mut at = &mut root;
        let mut parts = f.path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                at.insert(part.to_string(), (f.read)(sample));
                break;
            }
            let next = at
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(map) = next else { break };
            at = map;
        }
    }
    root
}
