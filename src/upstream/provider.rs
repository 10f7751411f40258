//! The provider trait and what flows through it: an [`UpstreamRequest`]
//! in, a [`ChunkStream`] of [`Chunk`]s out.

use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Usage};
use crate::telemetry::ProviderStats;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
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
/// (as events report it), its default model, how many streams it may
/// serve at once (0: no cap of its own) and its counters.
pub struct ProviderProfile {
    pub name: Arc<str>,
    pub default_model: Arc<str>,
    pub max_streams: usize,
    pub stats: Arc<ProviderStats>,
}

impl ProviderProfile {
    pub fn new(
        name: &str,
        config: &crate::config::ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Self {
        Self {
            name: name.into(),
            default_model: config.default_model.as_str().into(),
            max_streams: config.max_streams,
            stats,
        }
    }
}

pub trait Provider: Send + Sync + 'static {
    fn profile(&self) -> &ProviderProfile;
    /// The configured name, as events report it.
    fn name(&self) -> &Arc<str> {
        &self.profile().name
    }
    fn default_model(&self) -> &Arc<str> {
        &self.profile().default_model
    }
    fn stats(&self) -> &Arc<ProviderStats> {
        &self.profile().stats
    }
    /// Live streams it may serve at once (0: no cap of its own).
    fn max_streams(&self) -> usize {
        self.profile().max_streams
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
