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
//! When `routing.llm_provider` is set, a route the rules were unsure of
//! carries a pending refinement ([`Route::take_refinement`]): the stream task lets a small model
//! reclassify the prompt (with a timeout) before opening the upstream, so
//! the handler never waits on a model and a cancel still ends the stream.

pub mod agents;
pub mod llm_router;
pub mod router;

use crate::config::Config;
use crate::error::GatewayError;
use crate::protocol::{ChatMessage, ReasoningRequest, Role, StreamRequest, ToolChoice, ToolSpec};
use crate::upstream::{Provider, ProviderSet, UpstreamRequest};
use agents::{AgentSpec, AgentsError, AgentsFile, render_prompt};
use futures_util::future::BoxFuture;
use llm_router::LlmRouter;
pub use router::{Classification, IntentRouter};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
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
    pub stop: Vec<String>,
    /// The tools offered: the agent's, then the request's (the request's
    /// win where the names meet).
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    pub reasoning: Option<ReasoningRequest>,
    /// Pause before fallback attempt `n` is `n` × this.
    pub fallback_backoff: Duration,
    /// Set when the rules were unsure and the LLM router is on: resolves to
    /// the route under the agent the LLM picked, or `None` to keep this one.
    /// [`Route::take_refinement`] hands it out; the stream task awaits it
    /// before opening.
    /// (In a mutex only so that `Route` stays `Sync`; it is never
    /// contended.)
    pub refine: Mutex<Option<BoxFuture<'static, Option<Route>>>>,
}

impl Route {
    /// The pending LLM-router refinement, taken out: it resolves to a
    /// better route, or to `None` (none pending, or keep this one).
    pub fn take_refinement(&mut self) -> impl Future<Output = Option<Route>> + Send + use<> {
        let pending = self.refine.get_mut().ok().and_then(Option::take);
        async move {
            match pending {
                Some(refine) => refine.await,
                None => None,
            }
        }
    }

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
            stop: self.stop.clone(),
            tools: self.tools.clone(),
            tool_choice: self.tool_choice.clone(),
            reasoning: self.reasoning.clone(),
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

/// What building a route from a decision needs, shared with the LLM
/// router's pending refinements (which outlive the `route` call).
struct AgentTable {
    providers: Arc<ProviderSet>,
    default_provider: String,
    agents: Vec<Agent>,
    intents: Vec<Arc<str>>,
    /// Per intent: the agent (index) serving it.
    agent_of_intent: Vec<usize>,
    default_agent: usize,
    fallback_backoff: Duration,
    stats: Arc<RoutingStats>,
}

/// What the router decided for one request.
struct Decision {
    agent: usize,
    intent: usize,
    confidence: f64,
    /// Below the threshold: the default agent serves.
    unsure: bool,
    by: DecidedBy,
}

/// Who made a routing decision, for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DecidedBy {
    Rules,
    DefaultAgent,
    Llm,
    /// The request named the agent.
    Request,
}

pub struct Orchestrator {
    table: Arc<AgentTable>,
    allowed_models: Vec<String>,
    router: IntentRouter,
    llm: Option<LlmRouter>,
    min_confidence: f64,
    pub stats: Arc<RoutingStats>,
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
        let llm = match config.routing.llm_provider.as_str() {
            "" => None,
            name => {
                let provider =
                    providers
                        .get(name)
                        .cloned()
                        .ok_or_else(|| AgentsError::Invalid {
                            path: "config".into(),
                            key: "routing.llm_provider".into(),
                            rule: format!("must name a configured provider (got {name:?})"),
                        })?;
                let described: Vec<(Arc<str>, String)> = intents
                    .iter()
                    .cloned()
                    .zip(file.intents.iter().map(|i| i.description.clone()))
                    .collect();
                let model = Some(config.routing.llm_model.as_str())
                    .filter(|m| !m.is_empty())
                    .map(Arc::from);
                let timeout = Duration::from_millis(config.routing.llm_timeout_ms);
                Some(LlmRouter::new(provider, model, timeout, &described))
            }
        };
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
        let stats = Arc::new(RoutingStats::new(&intents, &agent_names));
        tracing::info!(
            agents = agents.len(),
            intents = intents.len(),
            origin,
            llm_router = llm.as_ref().map(|l| l.provider_name().to_string()),
            "agents loaded"
        );
        Ok(Self {
            table: Arc::new(AgentTable {
                providers,
                default_provider: config.routing.default_provider.clone(),
                agents,
                intents,
                agent_of_intent,
                default_agent,
                fallback_backoff: Duration::from_millis(config.routing.fallback_backoff_ms),
                stats: stats.clone(),
            }),
            allowed_models: config.streams.allowed_models.clone(),
            router,
            llm,
            min_confidence: config.routing.min_confidence,
            stats,
        })
    }

    /// The rules' reading of a prompt, without routing (for tests and
    /// tools): the intent's name and the classification.
    pub fn classify(&self, req: &StreamRequest) -> (Option<&str>, Classification) {
        let c = self
            .router
            .classify(req.prompt_text(), req.agent_context.as_ref());
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
        if let Some(name) = &req.agent {
            self.route_to_named_agent(req, name)
        } else if req.use_orchestrator.unwrap_or(req.provider.is_none()) {
            self.route_to_agent(req)
        } else {
            self.table.route_direct(req)
        }
    }

    /// The names of the agents, in the agents file's order.
    pub fn agent_names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.table.agents.iter().map(|a| &a.name)
    }

    /// The route under the agent the request named (no classification).
    fn route_to_named_agent(&self, req: &StreamRequest, name: &str) -> Result<Route, GatewayError> {
        let t = &self.table;
        let agent = t
            .agents
            .iter()
            .position(|a| a.name.as_ref() == name)
            .ok_or_else(|| GatewayError::UnknownAgent {
                name: name.to_string(),
                known: self.agent_names().map(|n| n.to_string()).collect(),
            })?;
        let first = &t.agents[agent].spec.intents[0];
        let intent = t
            .intents
            .iter()
            .position(|n| n.as_ref() == first.as_str())
            .unwrap_or(0);
        let decision = Decision {
            agent,
            intent,
            confidence: 1.0,
            unsure: false,
            by: DecidedBy::Request,
        };
        t.record(&decision, "named by the request");
        t.build(req, &decision)
    }

    fn route_to_agent(&self, req: &StreamRequest) -> Result<Route, GatewayError> {
        let started = Instant::now();
        let c = self
            .router
            .classify(req.prompt_text(), req.agent_context.as_ref());
        let t = &self.table;
        let decision = match c.best.filter(|_| c.confidence >= self.min_confidence) {
            Some(i) => Decision {
                agent: t.agent_of_intent[i],
                intent: i,
                confidence: c.confidence,
                unsure: false,
                by: DecidedBy::Rules,
            },
            None => t.default_decision(c.confidence),
        };
        let mut route = t.build(req, &decision)?;
        match (&self.llm, decision.unsure) {
            (Some(llm), true) => {
                // Counted and logged when the LLM has answered (or not).
                let (table, req, ask) = (t.clone(), req.clone(), llm.classify(req.prompt_text()));
                let reasons = format!("rules unsure ({})", self.router.explain(&c));
                route.refine = Mutex::new(Some(Box::pin(async move {
                    let d = match ask.await {
                        Some((intent, confidence)) => Decision {
                            agent: table.agent_of_intent[intent],
                            intent,
                            confidence,
                            unsure: false,
                            by: DecidedBy::Llm,
                        },
                        None => decision,
                    };
                    table.record(&d, &reasons);
                    if d.by == DecidedBy::Llm {
                        table.build(&req, &d).ok()
                    } else {
                        None
                    }
                })));
            }
            _ => t.record(&decision, &self.router.explain(&c)),
        }
        tracing::debug!(
            micros = started.elapsed().as_micros() as u64,
            "routing took"
        );
        Ok(route)
    }
}

impl AgentTable {
    fn default_decision(&self, confidence: f64) -> Decision {
        let agent = self.default_agent;
        let first = &self.agents[agent].spec.intents[0];
        Decision {
            agent,
            intent: self
                .intents
                .iter()
                .position(|n| n.as_ref() == first.as_str())
                .unwrap_or(0),
            confidence,
            unsure: true,
            by: DecidedBy::DefaultAgent,
        }
    }

    /// Count a decision and log it with its reasons.
    fn record(&self, d: &Decision, reasons: &str) {
        self.stats.agents[d.agent].1.fetch_add(1, Relaxed);
        self.stats.intents[d.intent].1.fetch_add(1, Relaxed);
        if d.unsure {
            self.stats.low_confidence.fetch_add(1, Relaxed);
        }
        tracing::info!(
            agent = %self.agents[d.agent].name,
            intent = %self.intents[d.intent],
            confidence = d.confidence,
            by = ?d.by,
            reasons,
            "routed"
        );
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
        let messages = conversation(None, req);
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
            stop: req.stop.clone(),
            tools: req.tools.clone(),
            tool_choice: req.tool_choice.clone(),
            reasoning: req.reasoning.clone(),
            fallback_backoff: self.fallback_backoff,
            refine: Mutex::new(None),
        })
    }

    /// The route for `req` under the decided agent: its system prompt and
    /// settings, the request's own values winning.
    fn build(&self, req: &StreamRequest, d: &Decision) -> Result<Route, GatewayError> {
        let agent = &self.agents[d.agent];
        let name = req
            .provider
            .as_deref()
            .or(agent.spec.provider.as_deref())
            .unwrap_or(&self.default_provider);
        let chain = self.provider_chain(name)?;
        let system = render_prompt(&agent.spec.system_prompt, req.agent_context.as_ref());
        let messages = conversation(Some(system).filter(|s| !s.is_empty()), req);
        Ok(Route {
            chain,
            model: req
                .model
                .as_deref()
                .map(Arc::from)
                .or_else(|| agent.model.clone()),
            agent: Some(agent.name.clone()),
            intent: Some(self.intents[d.intent].clone()),
            confidence: Some(d.confidence),
            messages,
            temperature: req.temperature.or(agent.spec.temperature),
            max_tokens: req.max_tokens.or(agent.spec.max_tokens),
            stop: req.stop.clone(),
            tools: merge_tools(&agent.spec.tools, &req.tools),
            tool_choice: req.tool_choice.clone(),
            reasoning: req.reasoning.clone(),
            fallback_backoff: self.fallback_backoff,
            refine: Mutex::new(None),
        })
    }
}

/// What the upstream is sent: the system prompt (when routed to an agent),
/// the request's messages (the session's history is among them by now),
/// then the prompt, unless the request continues after tool results.
fn conversation(system: Option<String>, req: &StreamRequest) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(req.messages.len() + 2);
    messages.extend(system.map(|s| ChatMessage::text(Role::System, s)));
    messages.extend(req.messages.iter().cloned());
    if let Some(prompt) = &req.prompt {
        messages.push(ChatMessage::text(Role::User, prompt.clone()));
    }
    messages
}

/// The agent's tools, then the request's; a request's tool replaces the
/// agent's of the same name.
fn merge_tools(agent: &[ToolSpec], request: &[ToolSpec]) -> Vec<ToolSpec> {
    agent
        .iter()
        .filter(|a| !request.iter().any(|r| r.name == a.name))
        .chain(request)
        .cloned()
        .collect()
}
