//! Opening a route: try each provider of its chain until one yields a
//! first chunk.
//!
//! Unreachable upstreams (connect error, 5xx, 429), first-token timeouts
//! and providers at their own stream cap (`max_streams`) move on to the
//! next provider, after `n × fallback_backoff` for attempt `n`; anything
//! else ends the stream. Only a provider that has produced its first chunk
//! counts as serving, so `ai:stream:start` names the one that really
//! serves; the stream holds a [`ProviderSlot`] of it from the attempt on.
//! An outage is logged at warn once, when a provider is first found
//! unreachable (at startup, or by a stream), then at debug for every
//! stream until it answers again. The caller races all of this against the
//! stream's cancellation and deadline.

use super::admission::ProviderSlot;
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
    /// Its place among the provider's live streams.
    pub slot: ProviderSlot,
}

/// Try each provider of `route`'s chain in order.
pub async fn open(route: &Route, first_token_timeout: Duration) -> Result<Opened, ProviderError> {
    let mut last_err = None;
    // A failed attempt backs off before the next; a provider at its own
    // stream cap is passed over at once.
    let mut failed = false;
    for (attempt, provider) in route.chain.iter().enumerate() {
        let Some(slot) = ProviderSlot::take(provider.as_ref()) else {
            tracing::debug!(provider = %provider.name(), "at its stream cap; trying the next");
            last_err = Some(at_cap(provider.as_ref()));
            continue;
        };
        if let Some(err) = last_err.as_ref().filter(|_| failed) {
            tracing::debug!(provider = %provider.name(), error = %err, "falling back");
            tokio::time::sleep(route.fallback_backoff * attempt as u32).await;
        }
        let err = match attempt_one(route, attempt, provider, slot, first_token_timeout).await {
            Ok(opened) => {
                reachable_again(provider.as_ref());
                return Ok(opened);
            }
            Err(err) => err,
        };
        provider.stats().errors.fetch_add(1, Relaxed);
        if !err.can_fall_back() {
            tracing::debug!(provider = %provider.name(), error = %err, "upstream failed before its first token");
            return Err(err);
        }
        unreachable(provider.as_ref(), &err);
        last_err = Some(err);
        failed = true;
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
    slot: ProviderSlot,
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
            slot,
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

/// `provider` failed in a way that may pass: warn the first time (and
/// then say nothing above debug until it answers again).
pub fn unreachable(provider: &dyn Provider, err: &ProviderError) {
    if provider.stats().unreachable.swap(true, Relaxed) {
        tracing::debug!(provider = %provider.name(), error = %err, "upstream still unreachable");
    } else {
        tracing::warn!(
            provider = %provider.name(),
            error = %err,
            "provider unreachable; streams use its fallbacks (or fail) until it answers \
             (logged at debug per stream from now on)"
        );
    }
}

fn at_cap(provider: &dyn Provider) -> ProviderError {
    ProviderError::Unavailable {
        provider: provider.name().to_string(),
        detail: format!("at its cap of {} live streams", provider.max_streams()),
    }
}

fn reachable_again(provider: &dyn Provider) {
    if provider.stats().unreachable.swap(false, Relaxed) {
        tracing::info!(provider = %provider.name(), "provider reachable again");
    }
}
