//! Turns a validated `ai:stream` request into a [`Route`]: which providers
//! to try in order, with which model, under which agent, and the upstream
//! conversation to send.
//!
//! Direct requests (`useOrchestrator: false`, and for now every request:
//! the agent router is a later piece of work) go to the named `provider` or
//! the configured default, followed by that provider's fallbacks. The route
//! carries `agent`/`intent`/`confidence` so the events can name them; they
//! are `None` for a direct route.

use crate::error::GatewayError;
use crate::protocol::{ChatMessage, Role, StreamRequest};
use crate::providers::{Provider, ProviderSet, UpstreamRequest};
use std::sync::Arc;

pub struct Route {
    /// Providers to try, in order; the first is the one asked for.
    pub chain: Vec<Arc<dyn Provider>>,
    /// The model the request named; `None` means each provider's default.
    pub model: Option<Arc<str>>,
    pub agent: Option<Arc<str>>,
    pub intent: Option<Arc<str>>,
    pub confidence: Option<f64>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl Route {
    /// The upstream request for the `attempt`-th provider of the chain: the
    /// requested model goes to the first one, fallbacks use their default.
    pub fn request_for(&self, attempt: usize, provider: &dyn Provider) -> UpstreamRequest {
        let model = match (&self.model, attempt) {
            (Some(m), 0) => m.clone(),
            _ => provider.default_model().clone(),
        };
        UpstreamRequest {
            model,
            messages: self.messages.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

pub struct Orchestrator {
    providers: Arc<ProviderSet>,
    default_provider: String,
    allowed_models: Vec<String>,
}

impl Orchestrator {
    pub fn new(
        providers: Arc<ProviderSet>,
        default_provider: String,
        allowed_models: Vec<String>,
    ) -> Self {
        Self {
            providers,
            default_provider,
            allowed_models,
        }
    }

    pub fn route(&self, req: &StreamRequest) -> Result<Route, GatewayError> {
        if let Some(model) = &req.model
            && !self.allowed_models.is_empty()
            && !self.allowed_models.iter().any(|m| m == model)
        {
            return Err(GatewayError::ModelNotAllowed {
                model: model.clone(),
                allowed: self.allowed_models.clone(),
            });
        }
        let name = req.provider.as_deref().unwrap_or(&self.default_provider);
        if self.providers.get(name).is_none() {
            return Err(GatewayError::UnknownProvider {
                name: name.to_string(),
                known: self.providers.names(),
            });
        }
        let mut messages = req.messages.clone();
        messages.push(ChatMessage {
            role: Role::User,
            content: req.prompt.clone(),
        });
        Ok(Route {
            chain: self.providers.chain(name),
            model: req.model.as_deref().map(Arc::from),
            agent: None,
            intent: None,
            confidence: None,
            messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
        })
    }
}
