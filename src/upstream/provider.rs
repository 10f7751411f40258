//! The provider trait and what flows through it: an [`UpstreamRequest`]
//! in, a [`ChunkStream`] of [`Chunk`]s out.

use crate::error::ProviderError;
use crate::protocol::{ChatMessage, ReasoningData, ReasoningRequest, ToolChoice, ToolSpec, Usage};
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
    /// Stop sequences (empty: none).
    pub stop: Vec<String>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    pub reasoning: Option<ReasoningRequest>,
}

/// One item of an upstream's answer. Every delta (text, reasoning, a
/// piece of a tool call's arguments) takes one position of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// A piece of the answer's text.
    Token(String),
    /// A piece of the model's thinking.
    Reasoning(String),
    /// A piece of the JSON arguments of the `index`-th tool call; `id`
    /// and `name` come with its first piece (or never, for formats that
    /// give no id: the relay names the call then).
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// Opaque reasoning data the provider wants back next turn (a
    /// signature, a redacted block): no position, no event of its own.
    ReasoningData(ReasoningData),
    Done {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

/// What a provider can be sent, beside text (from config, defaults by
/// kind): a request needing more is refused before any upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    pub tools: bool,
    pub images: bool,
}

impl Accepts {
    /// From config: unset means yes, but for `simulated`.
    pub fn of(config: &crate::config::ProviderConfig) -> Self {
        let by_kind = config.kind != crate::config::ProviderKind::Simulated;
        Self {
            tools: config.accepts_tools.unwrap_or(by_kind),
            images: config.accepts_images.unwrap_or(by_kind),
        }
    }
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
    pub accepts: Accepts,
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
            accepts: Accepts::of(config),
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
    fn accepts(&self) -> Accepts {
        self.profile().accepts
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
