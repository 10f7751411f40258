//! `GET /v1/models`: every route a client may name as `model`:
//! `streamgate/auto`, each agent as `agent:<name>`, and each provider's
//! model as `<provider>/<model>` (the `allowed_models` when that list is
//! set).

use crate::app::App;
use crate::http::caller::caller;
use crate::http::error::Shape;
use crate::protocol::now_ms;
use crate::protocol::openai::{Model, ModelList};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use std::sync::Arc;

pub async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers, Shape::OpenAi) {
        return e.into_response();
    }
    let created = (now_ms() / 1000).saturating_sub(app.started.elapsed().as_secs());
    let model = |id: String, owned_by: &str| Model {
        id,
        object: "model",
        created,
        owned_by: owned_by.to_string(),
    };
    let mut data = vec![model("streamgate/auto".into(), "streamgate")];
    data.extend(
        app.orchestrator
            .agent_names()
            .map(|a| model(format!("agent:{a}"), "streamgate")),
    );
    let allowed = &app.config.streams.allowed_models;
    for p in app.providers.iter() {
        let name = p.name();
        if allowed.is_empty() {
            data.push(model(format!("{name}/{}", p.default_model()), name));
        } else {
            data.extend(allowed.iter().map(|m| model(format!("{name}/{m}"), name)));
        }
    }
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}
