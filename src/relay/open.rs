//! Opening a route: try each provider of its chain until one yields a
//! first chunk.
//!
//! Unreachable upstreams (connect error, 5xx, 429) and first-token
//! timeouts move on to the next provider, after `n × fallback_backoff` for
//! attempt `n`; anything else ends the stream. Only a provider that has
//! produced its first chunk counts as serving, so `ai:stream:start` names
//! the one that really serves. The caller races all of this against the
//! stream's cancellation and deadline.

use crate::error::ProviderError;
use crate::orchestrator::Route;
use crate::upstream::{Chunk, ChunkStream, Provider};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A provider that has produced its first chunk.
pub struct Opened {
    pub provider: Arc<dyn Provider>,
    pub model: Arc<str>,
    pub stream: ChunkStream,
    pub first: Result<Chunk, ProviderError>,
}

/// Try each provider of `route`'s chain in order.
pub async fn open(route: &Route, first_token_timeout: Duration) -> Result<Opened, ProviderError> {
    let mut last_err = None;
    for (attempt, provider) in route.chain.iter().enumerate() {
        if let Some(err) = &last_err {
            tracing::warn!(provider = %provider.name(), error = %err, "falling back");
            tokio::time::sleep(route.fallback_backoff * attempt as u32).await;
        }
        let err = match attempt_one(route, attempt, provider, first_token_timeout).await {
            Ok(opened) => return Ok(opened),
            Err(err) => err,
        };
        provider.stats().errors.fetch_add(1, Relaxed);
        tracing::warn!(provider = %provider.name(), error = %err, "upstream failed before its first token");
        if !err.can_fall_back() {
            return Err(err);
        }
        last_err = Some(err);
    }
    Err(last_err.unwrap_or_else(|| ProviderError::Unavailable {
        provider: "none".into(),
        detail: "no provider configured for this route".into(),
    }))
}

/// One provider: send, and wait for its first chunk.
async fn attempt_one(
    route: &Route,
    attempt: usize,
    provider: &Arc<dyn Provider>,
    first_token_timeout: Duration,
) -> Result<Opened, ProviderError> {
    let request = route.request_for(attempt, provider.as_ref());
    let model = request.model.clone();
    provider.stats().requests.fetch_add(1, Relaxed);
    let first = tokio::time::timeout(first_token_timeout, async {
        let mut stream = provider.open(request).await?;
        let first = stream.next().await;
        Ok::<_, ProviderError>((stream, first))
    })
    .await;
    match first {
        Ok(Ok((_, Some(Err(e))))) if e.can_fall_back() => Err(e),
        Ok(Ok((stream, Some(first)))) => Ok(Opened {
            provider: provider.clone(),
            model,
            stream,
            first,
        }),
        Ok(Ok((_, None))) => Err(ProviderError::Upstream {
            provider: provider.name().to_string(),
            detail: "empty response".into(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProviderError::FirstTokenTimeout {
            provider: provider.name().to_string(),
            after: first_token_timeout,
        }),
    }
}
