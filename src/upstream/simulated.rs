//! The built-in `simulated` provider: deterministic text at a configured
//! token rate, with no network at all.
//!
//! It makes `cargo run --release` useful on a machine with no LLM, and gives
//! demos and benchmarks an upstream whose output is known in advance. The
//! reply is a fixed function of the prompt and the token budget, so two
//! runs of the same request produce the same tokens.

use super::provider::{Chunk, ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::protocol::Usage;
use crate::telemetry::ProviderStats;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const WORDS: &[&str] = &[
    "This",
    "is",
    "a",
    "simulated",
    "reply",
    "from",
    "streamgate.",
    "No",
    "model",
    "is",
    "running;",
    "each",
    "word",
    "is",
    "one",
    "token,",
    "paced",
    "like",
    "a",
    "real",
    "upstream",
    "so",
    "that",
    "frontends,",
    "demos",
    "and",
    "benchmarks",
    "see",
    "a",
    "live",
    "stream.",
    "Point",
    "providers.ollama.base_url",
    "at",
    "an",
    "Ollama",
    "server",
    "for",
    "real",
    "answers.",
];

pub struct SimulatedProvider {
    profile: ProviderProfile,
    interval: Option<Duration>,
    reply_tokens: u32,
}

impl SimulatedProvider {
    pub fn new(name: &str, config: &ProviderConfig, stats: Arc<ProviderStats>) -> Self {
        let interval = (config.tokens_per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / config.tokens_per_second));
        Self {
            profile: ProviderProfile::new(name, config, stats),
            interval,
            reply_tokens: config.reply_tokens.max(1),
        }
    }

    /// The reply's tokens for a request: an echo of the prompt's first
    /// words, then the fixed text, cycled.
    pub fn reply(request: &UpstreamRequest, budget: u32) -> Vec<String> {
        let prompt = request
            .messages
            .last()
            .map(|m| m.content.text())
            .unwrap_or_default();
        let echo: Vec<&str> = prompt.split_whitespace().take(6).collect();
        let mut words: Vec<String> = vec!["You".into(), "asked:".into()];
        words.extend(echo.iter().map(|w| w.to_string()));
        words.extend(
            WORDS
                .iter()
                .cycle()
                .take(budget as usize)
                .map(|w| w.to_string()),
        );
        words.truncate(budget as usize);
        words
            .into_iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w } else { format!(" {w}") })
            .collect()
    }
}

impl Provider for SimulatedProvider {
    fn profile(&self) -> &ProviderProfile {
        &self.profile
    }

    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
        let budget = request
            .max_tokens
            .map_or(self.reply_tokens, |m| m.min(self.reply_tokens));
        let finish_reason = if request.max_tokens.is_some_and(|m| m < self.reply_tokens) {
            "length"
        } else {
            "stop"
        };
        let tokens = Self::reply(&request, budget);
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| m.content.text().split_whitespace().count() as u64)
            .sum();
        let interval = self.interval;
        let n = tokens.len() as u64;
        let start = Instant::now();
        let done = Chunk::Done {
            finish_reason: finish_reason.into(),
            usage: Some(Usage {
                prompt_tokens: Some(prompt_tokens),
                completion_tokens: Some(n),
                ..Usage::default()
            }),
        };
        let stream = futures_util::stream::iter(tokens.into_iter().map(Chunk::Token).chain([done]))
            .enumerate()
            .then(move |(i, chunk)| async move {
                if let Some(every) = interval {
                    tokio::time::sleep_until(start + every * (i as u32 + 1)).await;
                }
                Ok(chunk)
            })
            .boxed();
        Box::pin(async move { Ok(stream) })
    }

    fn probe(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
}
