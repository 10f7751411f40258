//! Turns a validated `ai:stream` request into a [`Route`]: which providers
//! to try in order, with which model, under which agent, and the upstream
//! conversation to send.
//!
//! Orchestrated requests (`useOrchestrator`, the default) go through the
//! rule-based [`IntentRouter`]: the prompt and agentContext give an intent
//! and a confidence; the agent serving that intent (or the default agent,
//! below `routing.min_confidence`) supplies the system prompt, provider,
//! model, temperature and max tokens, each overridden by the request's own
//! values. Direct requests (`useOrchestrator: false`, or a request that
//! names a `provider` without asking for the orchestrator) go to that
//! provider or the default one, with no system prompt, and carry
//! `agent`/`intent`/`confidence` as null. Either way the route's chain is
//! the provider followed by its fallbacks. Each decision is logged with its
//! scores and counted in [`RoutingStats`] for `/stats` and `/metrics`.

pub mod agents;
pub mod router;

use crate::config::Config;
use crate::error::GatewayError;
use crate::protocol::{ChatMessage, Role, StreamRequest};
use crate::providers::{Provider, ProviderSet, UpstreamRequest};
use agents::{AgentSpec, AgentsError, AgentsFile, render_prompt};
pub use router::{Classification, IntentRouter};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

pub struct Route {
    /// Providers to try, in order; the first is the one asked for.
    pub chain: Vec<Arc<dyn Provider>>,
    /// The model the request (or agent) named; `None` means each
    /// provider's default.
    pub model: Option<Arc<str>>,
    pub agent: Option<Arc<str>>,
    pub intent: Option<Arc<str>>,
    pub confidence: Option<f64>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Pause before fallback attempt `n` is `n` × this.
    pub fallback_backoff: Duration,
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

/// Routing decisions, counted lock-free (agents and intents are fixed at
/// startup, so each has its own counter).
pub struct RoutingStats {
    direct: AtomicU64,
    low_confidence: AtomicU64,
    intents: Vec<(Arc<str>, AtomicU64)>,
    agents: Vec<(Arc<str>, AtomicU64)>,
}

impl RoutingStats {
    fn new(intents: &[Arc<str>], agents: &[Arc<str>]) -> Self {
        let counters = |names: &[Arc<str>]| {
            names
                .iter()
                .map(|n| (n.clone(), AtomicU64::new(0)))
                .collect()
        };
        Self {
            direct: AtomicU64::new(0),
            low_confidence: AtomicU64::new(0),
            intents: counters(intents),
            agents: counters(agents),
        }
    }

    pub fn direct(&self) -> u64 {
        self.direct.load(Relaxed)
    }

    /// Orchestrated requests that went to the default agent because the
    /// router was not confident enough.
    pub fn low_confidence(&self) -> u64 {
        self.low_confidence.load(Relaxed)
    }

    pub fn by_intent(&self) -> impl Iterator<Item = (&str, u64)> {
        self.intents
            .iter()
            .map(|(n, c)| (n.as_ref(), c.load(Relaxed)))
    }

    pub fn by_agent(&self) -> impl Iterator<Item = (&str, u64)> {
        self.agents
            .iter()
            .map(|(n, c)| (n.as_ref(), c.load(Relaxed)))
    }

    /// The `routing` object of `/stats`.
    pub fn snapshot(&self) -> Value {
        let map = |it: &mut dyn Iterator<Item = (&str, u64)>| -> Map<String, Value> {
            it.map(|(n, c)| (n.to_string(), json!(c))).collect()
        };
        json!({
            "direct": self.direct(),
            "orchestrated": self.by_agent().map(|(_, c)| c).sum::<u64>(),
            "lowConfidence": self.low_confidence(),
            "intents": map(&mut self.by_intent()),
            "agents": map(&mut self.by_agent()),
        })
    }
}

/// An agent ready to serve: its spec and names as shared strings.
struct Agent {
    name: Arc<str>,
    spec: AgentSpec,
    model: Option<Arc<str>>,
}

pub struct Orchestrator {
    providers: Arc<ProviderSet>,
    default_provider: String,
    allowed_models: Vec<String>,
    router: IntentRouter,
    agents: Vec<Agent>,
    intents: Vec<Arc<str>>,
    /// Per intent: the agent (index) serving it.
    agent_of_intent: Vec<usize>,
    default_agent: usize,
    min_confidence: f64,
    fallback_backoff: Duration,
    pub stats: RoutingStats,
}

impl Orchestrator {
    /// Load the agents file named by `config.routing.agents_file` (the
    /// built-in one when empty) and check it against `providers`.
    pub fn new(providers: Arc<ProviderSet>, config: &Config) -> Result<Self, AgentsError> {
        let path = &config.routing.agents_file;
        let file = AgentsFile::load(path)?;
        Self::from_agents(
            providers,
            config,
            file,
            if path.is_empty() { "(built-in)" } else { path },
        )
    }

    pub fn from_agents(
        providers: Arc<ProviderSet>,
        config: &Config,
        file: AgentsFile,
        origin: &str,
    ) -> Result<Self, AgentsError> {
        file.validate(origin, &providers.names())?;
        let router = IntentRouter::new(&file.intents).map_err(|e| AgentsError::Invalid {
            path: origin.into(),
            key: format!("intents[{}].rules", e.intent),
            rule: format!("pattern {:?} does not compile: {}", e.pattern, e.reason),
        })?;
        let intents: Vec<Arc<str>> = file
            .intents
            .iter()
            .map(|i| Arc::from(i.name.as_str()))
            .collect();
        let agent_of_intent = file
            .intents
            .iter()
            .map(|i| {
                file.agents
                    .iter()
                    .position(|a| a.intents.contains(&i.name))
                    .unwrap_or(0)
            })
            .collect();
        let default_agent = file
            .agents
            .iter()
            .position(|a| a.name == file.default_agent)
            .unwrap_or(0);
        let agents: Vec<Agent> = file
            .agents
            .into_iter()
            .map(|spec| Agent {
                name: spec.name.as_str().into(),
                model: spec.model.as_deref().map(Arc::from),
                spec,
            })
            .collect();
        let agent_names: Vec<Arc<str>> = agents.iter().map(|a| a.name.clone()).collect();
        tracing::info!(
            agents = agents.len(),
            intents = intents.len(),
            origin,
            "agents loaded"
        );
        Ok(Self {
            providers,
            default_provider: config.routing.default_provider.clone(),
            allowed_models: config.streams.allowed_models.clone(),
            stats: RoutingStats::new(&intents, &agent_names),
            router,
            agents,
            intents,
            agent_of_intent,
            default_agent,
            min_confidence: config.routing.min_confidence,
            fallback_backoff: Duration::from_millis(config.routing.fallback_backoff_ms),
        })
    }

    /// The router's reading of a prompt, without routing (for tests and
    /// tools): the intent's name and the confidence.
    pub fn classify(&self, req: &StreamRequest) -> (Option<&str>, Classification) {
        let c = self
            .router
            .classify(&req.prompt, req.agent_context.as_ref());
        (c.best.map(|i| self.router.intent_name(i)), c)
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
        if req.use_orchestrator.unwrap_or(req.provider.is_none()) {
            self.route_to_agent(req)
        } else {
            self.route_direct(req)
        }
    }

    fn provider_chain(&self, name: &str) -> Result<Vec<Arc<dyn Provider>>, GatewayError> {
        if self.providers.get(name).is_none() {
            return Err(GatewayError::UnknownProvider {
                name: name.to_string(),
                known: self.providers.names(),
            });
        }
        Ok(self.providers.chain(name))
    }

    fn route_direct(&self, req: &StreamRequest) -> Result<Route, GatewayError> {
        let name = req.provider.as_deref().unwrap_or(&self.default_provider);
        let chain = self.provider_chain(name)?;
        let mut messages = req.messages.clone();
        messages.push(ChatMessage {
            role: Role::User,
            content: req.prompt.clone(),
        });
        self.stats.direct.fetch_add(1, Relaxed);
        tracing::debug!(provider = name, "routed direct");
        Ok(Route {
            chain,
            model: req.model.as_deref().map(Arc::from),
            agent: None,
            intent: None,
            confidence: None,
            messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            fallback_backoff: self.fallback_backoff,
        })
    }

    fn route_to_agent(&self, req: &StreamRequest) -> Result<Route, GatewayError> {
        let started = Instant::now();
        let c = self
            .router
            .classify(&req.prompt, req.agent_context.as_ref());
        let confident = c.best.filter(|_| c.confidence >= self.min_confidence);
        let (agent_index, intent_index) = match confident {
            Some(i) => (self.agent_of_intent[i], i),
            None => {
                let a = self.default_agent;
                let first = &self.agents[a].spec.intents[0];
                (
                    a,
                    self.intents
                        .iter()
                        .position(|n| n.as_ref() == first.as_str())
                        .unwrap_or(0),
                )
            }
        };
        let agent = &self.agents[agent_index];
        let intent = self.intents[intent_index].clone();
        let name = req
            .provider
            .as_deref()
            .or(agent.spec.provider.as_deref())
            .unwrap_or(&self.default_provider);
        let chain = self.provider_chain(name)?;

        let mut messages = Vec::with_capacity(req.messages.len() + 2);
        let system = render_prompt(&agent.spec.system_prompt, req.agent_context.as_ref());
        if !system.is_empty() {
            messages.push(ChatMessage {
                role: Role::System,
                content: system,
            });
        }
        messages.extend(req.messages.iter().cloned());
        messages.push(ChatMessage {
            role: Role::User,
            content: req.prompt.clone(),
        });

        self.stats.agents[agent_index].1.fetch_add(1, Relaxed);
        self.stats.intents[intent_index].1.fetch_add(1, Relaxed);
        if confident.is_none() {
            self.stats.low_confidence.fetch_add(1, Relaxed);
        }
        tracing::info!(
            agent = %agent.name,
            intent = %intent,
            confidence = c.confidence,
            default_agent = confident.is_none(),
            scores = %self.router.explain(&c),
            provider = name,
            micros = started.elapsed().as_micros() as u64,
            "routed"
        );
        Ok(Route {
            chain,
            model: req
                .model
                .as_deref()
                .map(Arc::from)
                .or_else(|| agent.model.clone()),
            agent: Some(agent.name.clone()),
            intent: Some(intent),
            confidence: Some(c.confidence),
            messages,
            temperature: req.temperature.or(agent.spec.temperature),
            max_tokens: req.max_tokens.or(agent.spec.max_tokens),
            fallback_backoff: self.fallback_backoff,
        })
    }
}
