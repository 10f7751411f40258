//! The connection gate: every request's real client address, and the
//! limits on new Engine.IO sessions, in front of socketioxide.
//!
//! Every request gets a [`ClientAddr`] (its TCP peer, or the client a
//! trusted proxy names; see [`super::peer`]). An Engine.IO handshake (a
//! `GET` on the Socket.IO path without `sid`) is what creates a session,
//! and a session costs memory whether or not it ever joins `/ai`, so the
//! gate admits each one here, before socketioxide builds anything: the
//! per-address rate of new connections (`limits.connections_*`), then the
//! connection caps ([`Connections::admit`]). A refusal is an HTTP error
//! with a JSON body (`{"code","message","details"}`, the gateway's error
//! codes) and `Retry-After`. An admitted handshake carries its
//! [`ConnectionTicket`](crate::connections::ConnectionTicket) in its
//! extensions, which Engine.IO keeps with the session for as long as it
//! lives: the session counts until its socket is gone. Sessions that never
//! join `/ai` are closed by socketioxide's connect timeout
//! (`server.connect_timeout_ms`), abandoned polling sessions by the
//! Engine.IO ping timeout, WebSocket sessions with their TCP connection.
//! The gate knows nothing of `/ai`: no client, no stream, no outbox.

use super::peer::{ClientAddr, TrustedProxies, is_forwarded};
use crate::connections::Connections;
use crate::error::GatewayError;
use crate::rate_limit::RateLimits;
use crate::telemetry::Stats;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What the gate needs, shared by every request.
#[derive(Clone)]
pub struct Gate {
    pub trusted: Arc<TrustedProxies>,
    pub connections: Arc<Connections>,
    pub rate_limits: Arc<RateLimits>,
    pub stats: Arc<Stats>,
    /// The Socket.IO path (`/socket.io`).
    pub path: &'static str,
    /// Said once: forwarding headers arrive from a peer not trusted.
    hinted: Arc<AtomicBool>,
}

impl Gate {
    pub fn new(
        trusted: TrustedProxies,
        connections: Arc<Connections>,
        rate_limits: Arc<RateLimits>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            trusted: Arc::new(trusted),
            connections,
            rate_limits,
            stats,
            path: "/socket.io",
            hinted: Arc::default(),
        }
    }

    /// Is `req` an Engine.IO handshake (a request that opens a session)?
    fn is_handshake(&self, req: &Request) -> bool {
        req.method() == Method::GET
            && req.uri().path().starts_with(self.path)
            && !req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .any(|p| p.starts_with("sid="))
    }

    fn hint_untrusted_proxy(&self, peer: std::net::IpAddr) {
        if !self.hinted.swap(true, Relaxed) {
            tracing::warn!(
                %peer,
                "requests carry X-Forwarded-For/Forwarded from a peer not in server.trusted_proxies: \
                 every client behind it shares its address for the per-address limits; add the \
                 proxy to server.trusted_proxies"
            );
        }
    }
}

/// The middleware: set [`ClientAddr`], and admit or refuse a handshake.
pub async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let Some(peer) = peer else {
        return next.run(req).await;
    };
    let client = gate.trusted.client_address(peer, req.headers());
    if is_forwarded(req.headers()) && !gate.trusted.trusts(peer.to_canonical()) {
        gate.hint_untrusted_proxy(peer);
    }
    req.extensions_mut().insert(ClientAddr(client));
    if gate.is_handshake(&req) {
        let admitted = gate
            .rate_limits
            .new_session(client)
            .and_then(|()| gate.connections.admit(client));
        match admitted {
            Ok(ticket) => {
                req.extensions_mut().insert(ticket);
            }
            Err(e) => {
                gate.stats.refused.connections.fetch_add(1, Relaxed);
                tracing::debug!(%client, error = %e, "connection refused");
                return refusal(&e);
            }
        }
    }
    next.run(req).await
}

/// A refused handshake: 429 for what one address did, 503 when the
/// gateway as a whole is full; the wire error as JSON.
fn refusal(e: &GatewayError) -> Response {
    let status = match e {
        GatewayError::ServerBusy { limit, .. } if limit.is_process_wide() => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    let wire = e.wire();
    let retry_ms = wire.details["retryAfterMs"].as_u64().unwrap_or(1_000);
    let body = json!({ "code": wire.code, "message": wire.message, "details": wire.details });
    let mut response = (status, axum::Json(body)).into_response();
    let seconds = retry_ms.div_ceil(1_000).max(1);
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
