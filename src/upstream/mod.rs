//! The upstream door: LLM providers behind one trait.
//!
//! A [`Provider`] turns an [`UpstreamRequest`] into a [`ChunkStream`]: text
//! tokens in upstream order, then one [`Chunk::Done`] with the finish reason
//! and usage. `open` resolves once the upstream has accepted the request
//! (HTTP status read); the body is read lazily as the stream is polled, so a
//! consumer that stops polling holds the upstream back through TCP, and one
//! that drops the stream closes the upstream connection. Each wire format
//! lives in its own file (`ollama` over the [`ndjson`] pipeline; `openai`
//! and `anthropic` over the [`sse`] one), and all of them share the HTTP
//! client, key handling, status mapping and probe of [`http`]. This
//! module knows nothing of clients, queues or doors: the relay consumes
//! its streams. [`ProviderSet`] builds the providers from config and knows
//! each one's fallback chain.

mod anthropic;
pub mod http;
pub mod ndjson;
mod ollama;
mod openai;
mod simulated;
pub mod sse;

pub use anthropic::{AnthropicEventDecoder, AnthropicProvider};
pub use ollama::{OllamaLines, OllamaProvider};
pub use openai::{OpenAiEventDecoder, OpenAiProvider};
pub use simulated::SimulatedProvider;

use crate::config::{Config, ProviderKind};
use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Usage};
use crate::telemetry::ProviderStats;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the upstream is asked: the conversation, already built by the
/// orchestrator (system prompt, history, then the user's prompt).
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub model: Arc<str>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// One item of an upstream's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Token(String),
    Done {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

pub type ChunkStream = BoxStream<'static, Result<Chunk, ProviderError>>;

/// What every provider is, whatever its wire format: its configured name
/// (as events report it), its default model and its counters.
pub struct ProviderId {
    pub name: Arc<str>,
    pub default_model: Arc<str>,
    pub stats: Arc<ProviderStats>,
}

impl ProviderId {
    pub fn new(
        name: &str,
        config: &crate::config::ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Self {
        Self {
            name: name.into(),
            default_model: config.default_model.as_str().into(),
            stats,
        }
    }
}

pub trait Provider: Send + Sync + 'static {
    fn id(&self) -> &ProviderId;
    /// The configured name, as events report it.
    fn name(&self) -> &Arc<str> {
        &self.id().name
    }
    fn default_model(&self) -> &Arc<str> {
        &self.id().default_model
    }
    fn stats(&self) -> &Arc<ProviderStats> {
        &self.id().stats
    }
    /// Send the request; resolve when the upstream has answered with a
    /// success status (or failed to).
    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>>;
    /// Whether the upstream can be reached now (for `/readyz`).
    fn probe(&self) -> BoxFuture<'static, Result<(), ProviderError>>;
}

/// Every configured provider, by name, with its fallback chain.
pub struct ProviderSet {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    fallbacks: BTreeMap<String, Vec<String>>,
}

impl ProviderSet {
    pub fn from_config(config: &Config) -> Result<Self, ProviderError> {
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        let mut fallbacks = BTreeMap::new();
        for (name, pc) in &config.providers {
            let stats = Arc::new(ProviderStats::default());
            let provider: Arc<dyn Provider> = match pc.kind {
                ProviderKind::Ollama => Arc::new(OllamaProvider::new(name, pc, stats)?),
                ProviderKind::Openai => Arc::new(OpenAiProvider::new(name, pc, stats)?),
                ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(name, pc, stats)?),
                ProviderKind::Simulated => Arc::new(SimulatedProvider::new(name, pc, stats)),
            };
            providers.insert(name.clone(), provider);
            fallbacks.insert(name.clone(), pc.fallback.clone());
        }
        Ok(Self {
            providers,
            fallbacks,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// `name` first, then its fallbacks, each once.
    pub fn chain(&self, name: &str) -> Vec<Arc<dyn Provider>> {
        let mut chain: Vec<Arc<dyn Provider>> = Vec::new();
        let mut names = vec![name.to_string()];
        names.extend(self.fallbacks.get(name).cloned().unwrap_or_default());
        for n in names {
            if let Some(p) = self.providers.get(&n)
                && !chain.iter().any(|c| c.name().as_ref() == n)
            {
                chain.push(p.clone());
            }
        }
        chain
    }
}
