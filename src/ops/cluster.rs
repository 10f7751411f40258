//! The ops door's view of the cluster: Redis in `/readyz`, and
//! `GET /stats/cluster` (every live node's `/stats` and their sum).
//!
//! Without `redis.url` the cluster is this node alone: `/stats/cluster`
//! lists it with its own figures, and `/readyz` says nothing of Redis.

use super::{Ops, stats_body};
use crate::app::App;
use crate::cluster::NodeTable;
use crate::protocol::now_ms;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Whether Redis answers a `PING` now (true without Redis), and what
/// `/readyz` shows of it (`None` without Redis).
pub(super) async fn readiness(app: &App) -> (bool, Option<Value>) {
    let Some(c) = &app.cluster else {
        return (true, None);
    };
    match c.link.ping().await {
        Ok(()) => (
            true,
            Some(json!({ "reachable": true, "node": c.link.node().as_ref() })),
        ),
        Err(e) => (
            false,
            Some(json!({
                "reachable": false,
                "node": c.link.node().as_ref(),
                "error": redis_reason(&e.to_string()),
            })),
        ),
    }
}

/// A Redis error without what could name a host or a password: its kind.
fn redis_reason(e: &str) -> String {
    let kind = e.split(':').take(2).collect::<Vec<_>>().join(":");
    format!("cannot reach redis ({})", kind.trim())
}

/// `GET /stats/cluster`: `{ node, nodes: [ { id, at, stats } ], total }`,
/// `nodes` every node whose liveness key is live (this one included),
/// `total` their figures summed (see `NodeTable::total`). 503 while this
/// node cannot reach Redis.
pub(super) async fn stats(State(ops): State<Ops>) -> Response {
    let Some(c) = &ops.app.cluster else {
        let me = json!({
            "id": "local",
            "at": now_ms(),
            "stats": Value::Object(stats_body(&ops.app, &ops.sample())),
        });
        let total = me["stats"].clone();
        return Json(json!({ "node": "local", "nodes": [me], "total": total })).into_response();
    };
    match NodeTable::read(&c.link).await {
        Ok(nodes) => {
            let total = NodeTable::total(&nodes);
            Json(json!({ "node": c.link.node().as_ref(), "nodes": nodes, "total": total }))
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": { "code": "server_busy", "message": redis_reason(&e.to_string()) },
            })),
        )
            .into_response(),
    }
}
