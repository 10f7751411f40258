//! An HTTP stream resumed or cancelled on another node than the one that
//! runs it (PROTOCOL.md part 2, "Many nodes"): this node hands the request
//! to that node's HTTP door and relays its answer as it comes.
//!
//! A resumable stream's home (`{prefix}client:h_{id}`, the same record a
//! `/ai` client's home is) names the node that runs it, and that node's
//! liveness record says where its HTTP door is (`redis.advertise_url`).
//! [`to_home`] sends `GET` (resume, `Last-Event-ID` and the caller's
//! `Authorization` kept) or `DELETE` (cancel) there, marked with
//! [`FORWARDED`] so it is never handed on again, and answers with the home's
//! status, headers and body, the body streamed through as hyper asks for
//! it: the home checks the caller and the position, its outbox still holds
//! the upstream back while this client reads slowly (TCP carries the
//! backpressure across the hop), and a caller that goes away closes the
//! forwarded request, so the home detaches the stream as it would for its
//! own caller. A home whose liveness record has lapsed is a lost node: the
//! answer is `node_lost` (retryable). Nothing here holds a stream, an
//! outbox or a client; it knows only the home record and the peer's URL.

use super::error::{ApiError, Shape};
use super::stream::{OnClose, client_name};
use crate::app::App;
use crate::error::GatewayError;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Marks a request one node handed to another (answered where it lands).
pub const FORWARDED: &str = "x-streamgate-forwarded";

/// Request headers the home needs to answer as it would its own caller.
const SENT: [&str; 4] = ["authorization", "last-event-id", "accept", "x-request-id"];
/// Response headers the caller reads.
const RETURNED: [&str; 7] = [
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "x-stream-id",
    "retry-after",
    "www-authenticate",
    "x-request-id",
];

/// The home's answer to `method` on resumable stream `id`, when another
/// live or lost node runs it; `None` when it is for this node to answer
/// (no Redis, no home recorded, this node is the home, or the request
/// was forwarded here already).
pub async fn to_home(
    app: &Arc<App>,
    method: Method,
    id: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let cluster = app.cluster.as_ref()?;
    if headers.contains_key(FORWARDED) {
        return None;
    }
    let fail = |e: GatewayError| Some(ApiError::new(&e, Shape::Plain).into_response());
    let unavailable =
        |e: crate::cluster::ClusterError| fail(GatewayError::SharedStoreUnavailable(e.to_string()));
    let home = match cluster
        .mail
        .home_of(&client_name(id, OnClose::Detach))
        .await
    {
        Ok(Some(home)) if home != cluster.link.node().as_ref() => home,
        Ok(_) => return None,
        Err(e) => return unavailable(e),
    };
    let url = match cluster.mail.url_of(&home).await {
        Ok(Some(url)) => url,
        Ok(None) => return fail(GatewayError::NodeLost(home)),
        Err(e) => return unavailable(e),
    };
    let target = format!("{url}/api/chat/stream/{id}");
    let mut request = cluster
        .peers
        .request(method, &target)
        .header(FORWARDED, "1");
    for name in SENT {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    match request.send().await {
        Ok(answer) => Some(relay(answer)),
        Err(e) => {
            tracing::warn!(home = %home, url = %target, error = %e, "the stream's home node did not answer");
            fail(GatewayError::NodeLost(home))
        }
    }
}

/// The home's answer as this node's, its body streamed through.
fn relay(answer: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in RETURNED {
        if let Some(v) = answer.headers().get(name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
