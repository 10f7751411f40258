//! The ops door: `/healthz`, `/readyz`, `/stats` (JSON) and `/metrics`
//! (Prometheus text), on the same port as everything else.
//!
//! Both `/stats` and `/metrics` are rendered from one [`figures::Sample`]
//! through one list of figures ([`figures::FIGURES`]), so they can never
//! disagree or drift apart; `/metrics` copies the sample into this door's
//! own Prometheus recorder (not the process-global one, so that several
//! gateways in one process, as in tests, keep separate numbers).

pub mod figures;

use crate::app::App;
use crate::error::GatewayError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use figures::{FIGURES, Kind, Sample, series};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// What the ops handlers share.
#[derive(Clone)]
struct Ops {
    app: Arc<App>,
    exporter: Arc<MetricsExporter>,
    token_rate: Arc<RateWindow>,
}

pub fn routes(app: Arc<App>) -> Router {
    let ops = Ops {
        app,
        exporter: Arc::new(MetricsExporter::default()),
        token_rate: Arc::new(RateWindow::default()),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// This door's own Prometheus registry.
struct MetricsExporter {
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

/// Tokens/s over the last sampling window, computed when a figure is read.
struct RateWindow {
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
    fn rate(&self, total: u64) -> f64 {
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

impl Ops {
    fn sample(&self) -> Sample<'_> {
        let relayed = self.app.stats.tokens_relayed.load(Relaxed);
        Sample::take(&self.app, self.token_rate.rate(relayed))
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(Ops { app, .. }): State<Ops>) -> Response {
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
    let ready = !app.shutdown.is_shutting_down()
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

async fn stats(State(ops): State<Ops>) -> Json<Value> {
    let app = &ops.app;
    let mut body = figures::nested(&ops.sample());
    let mut providers = Map::new();
    for p in app.providers.iter() {
        providers.insert(p.name().to_string(), p.stats().snapshot());
    }
    body.insert("providers".into(), Value::Object(providers));
    body.insert("routing".into(), app.orchestrator.stats.snapshot());
    Json(Value::Object(body))
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let sample = ops.sample();
    metrics::with_local_recorder(&ops.exporter.recorder, || {
        for f in FIGURES {
            let (Some(name), Some(v)) = (f.metric, (f.read)(&sample).as_f64()) else {
                continue;
            };
            match f.kind {
                Kind::Gauge => metrics::gauge!(name).set(v),
                Kind::Counter => metrics::counter!(name).absolute(v as u64),
            }
        }
        labelled_series(&ops.app);
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.exporter.handle.render(),
    )
        .into_response()
}

/// Per-provider and per-route series.
fn labelled_series(app: &App) {
    for p in app.providers.iter() {
        let name = p.name().to_string();
        let ps = p.stats();
        metrics::counter!(series::PROVIDER_REQUESTS, "provider" => name.clone())
            .absolute(ps.requests.load(Relaxed));
        metrics::counter!(series::PROVIDER_ERRORS, "provider" => name.clone())
            .absolute(ps.errors.load(Relaxed));
        metrics::gauge!(series::PROVIDER_LIVE_STREAMS, "provider" => name.clone())
            .set(ps.live_streams.load(Relaxed) as f64);
        for (q, label) in [(0.5, "0.5"), (0.99, "0.99")] {
            if let Some(v) = ps.ttft.quantile(q) {
                metrics::gauge!(series::PROVIDER_TTFT, "provider" => name.clone(), "quantile" => label)
                    .set(v);
            }
        }
    }
    let routing = &app.orchestrator.stats;
    metrics::counter!(series::ROUTING_DIRECT).absolute(routing.direct());
    metrics::counter!(series::ROUTING_LOW_CONFIDENCE).absolute(routing.low_confidence());
    for (intent, v) in routing.by_intent() {
        metrics::counter!(series::ROUTING_INTENT, "intent" => intent.to_string()).absolute(v);
    }
    for (agent, v) in routing.by_agent() {
        metrics::counter!(series::ROUTING_AGENT, "agent" => agent.to_string()).absolute(v);
    }
}
