//! Ops endpoints on the same port as Socket.IO: `/healthz`, `/readyz`,
//! `/stats` (JSON) and `/metrics` (Prometheus text).
//!
//! `/stats` reads the atomic counters of [`crate::telemetry::Stats`] and
//! each provider's stats; the only per-client work is reading each
//! outbox's length for the largest queue. `/metrics` copies the same
//! numbers into a per-app Prometheus recorder and renders it, so the two
//! endpoints can never disagree.

pub mod head;

use crate::AppState;
use crate::error::GatewayError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
}

/// The app's own Prometheus registry (not the process-global one, so that
/// several apps in one process, as in tests, keep separate numbers).
pub struct MetricsExporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for MetricsExporter {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let probes = app.providers.iter().map(|p| {
        let name = p.name().clone();
        let probe = p.probe();
        async move { (name, probe.await) }
    });
    let results = futures_util::future::join_all(probes).await;
    let mut providers = Map::new();
    for (name, result) in &results {
        let entry = match result {
            Ok(()) => json!({ "reachable": true }),
            Err(e) => json!({
                "reachable": false,
                "error": GatewayError::Provider(e.clone()).client_message(),
            }),
        };
        providers.insert(name.to_string(), entry);
    }
    // Ready when the default route has a provider that can serve.
    let chain = app.providers.chain(&app.config.routing.default_provider);
    let ready = !app.root.is_cancelled()
        && chain
            .iter()
            .any(|p| results.iter().any(|(n, r)| n == p.name() && r.is_ok()));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "providers": providers })),
    )
        .into_response()
}

/// The numbers `/stats` and `/metrics` share.
fn snapshot(app: &AppState) -> Value {
    let s = &app.stats;
    let clients = app.registry.all();
    let largest = clients.iter().map(|c| c.outbox.len()).max().unwrap_or(0);
    let largest_bytes = clients.iter().map(|c| c.outbox.bytes()).max().unwrap_or(0);
    let relayed = s.tokens_relayed.load(Relaxed);
    let mut providers = Map::new();
    for p in app.providers.iter() {
        providers.insert(p.name().to_string(), p.stats().snapshot());
    }
    json!({
        "uptimeSeconds": app.started.elapsed().as_secs(),
        "clients": {
            "connected": s.clients_connected.load(Relaxed),
            "detached": s.clients_detached.load(Relaxed),
            "total": s.clients_total.load(Relaxed),
        },
        "streams": {
            "active": s.streams_active.load(Relaxed),
            "started": s.streams_started.load(Relaxed),
            "completed": s.streams_completed.load(Relaxed),
            "cancelled": s.streams_cancelled.load(Relaxed),
            "failed": s.streams_failed.load(Relaxed),
        },
        "tokens": {
            "relayed": relayed,
            "coalesced": s.tokens_coalesced.load(Relaxed),
            "dropped": s.tokens_dropped.load(Relaxed),
            "perSecond": app.token_rate.rate(relayed),
        },
        "resume": {
            "succeeded": s.resumes_succeeded.load(Relaxed),
            "failed": s.resumes_failed.load(Relaxed),
            "tokensReplayed": s.tokens_replayed.load(Relaxed),
        },
        "backpressure": {
            "engagedClients": s.backpressure_engaged.load(Relaxed),
            "events": s.backpressure_episodes.load(Relaxed),
            "engagedMs": s.backpressure_engaged_ms.load(Relaxed),
            "transportRefusals": s.transport_refusals.load(Relaxed),
        },
        "queues": {
            "total": s.queued_events.load(Relaxed),
            "largest": largest,
            "largestBytes": largest_bytes,
        },
        "providers": providers,
        "routing": app.orchestrator.stats.snapshot(),
    })
}

async fn stats(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(snapshot(&app))
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    use crate::telemetry::names as n;
    let s = &app.stats;
    let exporter = &app.metrics;
    metrics::with_local_recorder(&exporter.recorder, || {
        let g = |name: &'static str, v: u64| metrics::gauge!(name).set(v as f64);
        let c = |name: &'static str, v: u64| metrics::counter!(name).absolute(v);
        g(n::CLIENTS_CONNECTED, s.clients_connected.load(Relaxed));
        g(n::CLIENTS_DETACHED, s.clients_detached.load(Relaxed));
        c(n::RESUMES_SUCCEEDED, s.resumes_succeeded.load(Relaxed));
        c(n::RESUMES_FAILED, s.resumes_failed.load(Relaxed));
        c(n::TOKENS_REPLAYED, s.tokens_replayed.load(Relaxed));
        g(n::STREAMS_ACTIVE, s.streams_active.load(Relaxed));
        c(n::STREAMS_STARTED, s.streams_started.load(Relaxed));
        c(n::STREAMS_COMPLETED, s.streams_completed.load(Relaxed));
        c(n::STREAMS_CANCELLED, s.streams_cancelled.load(Relaxed));
        c(n::STREAMS_FAILED, s.streams_failed.load(Relaxed));
        c(n::TOKENS_RELAYED, s.tokens_relayed.load(Relaxed));
        c(n::TOKENS_COALESCED, s.tokens_coalesced.load(Relaxed));
        c(n::TOKENS_DROPPED, s.tokens_dropped.load(Relaxed));
        g(n::QUEUE_EVENTS, s.queued_events.load(Relaxed));
        let largest = app
            .registry
            .all()
            .iter()
            .map(|c| c.outbox.len())
            .max()
            .unwrap_or(0);
        g(n::QUEUE_LARGEST, largest as u64);
        g(
            n::BACKPRESSURE_ENGAGED,
            s.backpressure_engaged.load(Relaxed),
        );
        c(
            n::BACKPRESSURE_EPISODES,
            s.backpressure_episodes.load(Relaxed),
        );
        c(
            n::BACKPRESSURE_ENGAGED_MS,
            s.backpressure_engaged_ms.load(Relaxed),
        );
        c(n::TRANSPORT_REFUSALS, s.transport_refusals.load(Relaxed));
        for p in app.providers.iter() {
            let name = p.name().to_string();
            let ps = p.stats();
            metrics::counter!(n::PROVIDER_REQUESTS, "provider" => name.clone())
                .absolute(ps.requests.load(Relaxed));
            metrics::counter!(n::PROVIDER_ERRORS, "provider" => name.clone())
                .absolute(ps.errors.load(Relaxed));
            for (q, label) in [(0.5, "0.5"), (0.99, "0.99")] {
                if let Some(v) = ps.ttft.quantile(q) {
                    metrics::gauge!(n::PROVIDER_TTFT, "provider" => name.clone(), "quantile" => label)
                        .set(v);
                }
            }
        }
        let routing = &app.orchestrator.stats;
        c(n::ROUTING_DIRECT, routing.direct());
        c(n::ROUTING_LOW_CONFIDENCE, routing.low_confidence());
        for (intent, v) in routing.by_intent() {
            metrics::counter!(n::ROUTING_INTENT, "intent" => intent.to_string()).absolute(v);
        }
        for (agent, v) in routing.by_agent() {
            metrics::counter!(n::ROUTING_AGENT, "agent" => agent.to_string()).absolute(v);
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        exporter.handle.render(),
    )
        .into_response()
}
