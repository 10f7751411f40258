//! The orchestrator's routing: the routing table (tests/routing_cases.toml
//! through the built-in agents, with the accuracy printed) and the shape of
//! orchestrated and direct routes.

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use streamgate::Config;
use streamgate::orchestrator::Orchestrator;
use streamgate::protocol::{Role, StreamRequest};
use streamgate::upstream::ProviderSet;

/// Keyword routing gets a wrong agent only a less specialised system
/// prompt (every agent can answer anything), and the table deliberately
/// holds multi-intent prompts ("review this and add comments"). Below 90%
/// the rules are missing common phrasings, which is a real regression.
const MIN_ACCURACY: f64 = 0.90;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    intent: String,
    #[serde(default)]
    context: Option<serde_json::Map<String, Value>>,
}

fn orchestrator(config: &Config) -> Orchestrator {
    let providers = Arc::new(ProviderSet::from_config(config).expect("providers"));
    Orchestrator::new(providers, config).expect("built-in agents load")
}

fn request(v: Value) -> StreamRequest {
    serde_json::from_value(v).expect("valid request")
}

#[test]
fn routing_table_accuracy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/routing_cases.toml");
    let cases: Cases = Figment::from(Toml::file(&path))
        .extract()
        .expect("routing_cases.toml parses");
    assert!(cases.case.len() >= 40, "keep at least 40 cases");
    let orch = orchestrator(&Config::default());
    let mut right = 0;
    let mut slowest = 0u128;
    let mut total_us = 0u128;
    for case in &cases.case {
        let req = request(json!({ "prompt": case.prompt, "agentContext": case.context }));
        let started = Instant::now();
        let route = orch.route(&req).expect("routes");
        let us = started.elapsed().as_micros();
        slowest = slowest.max(us);
        total_us += us;
        let got = route.intent.as_deref().unwrap_or("-");
        if got == case.intent {
            right += 1;
        } else {
            println!(
                "MISS {:?}: want {}, got {} (agent {}, confidence {:?})",
                case.prompt,
                case.intent,
                got,
                route.agent.as_deref().unwrap_or("-"),
                route.confidence
            );
        }
    }
    let accuracy = right as f64 / cases.case.len() as f64;
    println!(
        "routing accuracy: {right}/{} = {:.1}% (route: mean {} us, slowest {slowest} us incl. first-use warm-up)",
        cases.case.len(),
        accuracy * 100.0,
        total_us / cases.case.len() as u128
    );
    assert!(
        accuracy >= MIN_ACCURACY,
        "accuracy {accuracy:.3} below {MIN_ACCURACY}"
    );
}

/// Prints what classifying and routing cost (no assertion: timings depend
/// on the machine and the build; run with `--release --nocapture`).
#[test]
fn routing_cost() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/routing_cases.toml");
    let cases: Cases = Figment::from(Toml::file(&path)).extract().unwrap();
    let orch = orchestrator(&Config::default());
    let reqs: Vec<StreamRequest> = cases
        .case
        .iter()
        .map(|c| request(json!({ "prompt": c.prompt, "agentContext": c.context })))
        .collect();
    let long = request(json!({ "prompt": "Please explain what this does. ".repeat(1000) }));
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        for r in &reqs {
            std::hint::black_box(orch.classify(r));
        }
    }
    let classify = started.elapsed() / (rounds * reqs.len() as u32);
    let started = Instant::now();
    for _ in 0..rounds {
        for r in &reqs {
            std::hint::black_box(orch.route(r).unwrap());
        }
    }
    let route = started.elapsed() / (rounds * reqs.len() as u32);
    let started = Instant::now();
    std::hint::black_box(orch.classify(&long));
    println!(
        "classify: {classify:?} per prompt, route (with prompt building): {route:?}, a {}-char prompt: {:?}",
        long.prompt_text().len(),
        started.elapsed()
    );
}

#[test]
fn orchestrated_route_names_agent_and_builds_the_system_prompt() {
    let orch = orchestrator(&Config::default());
    let req = request(json!({
        "prompt": "Write unit tests for this",
        "messages": [{ "role": "user", "content": "earlier" }, { "role": "assistant", "content": "reply" }],
        "agentContext": { "activeFile": "cart.js", "language": "javascript", "selection": "export const total = items => 0;" }
    }));
    let route = orch.route(&req).unwrap();
    assert_eq!(route.agent.as_deref(), Some("tester"));
    assert_eq!(route.intent.as_deref(), Some("test"));
    assert!(route.confidence.is_some_and(|c| (0.3..=1.0).contains(&c)));
    assert_eq!(route.chain[0].name().as_ref(), "ollama");
    let roles: Vec<Role> = route.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User]
    );
    let system = route.messages[0].content.text();
    assert!(
        system.contains("cart.js") && system.contains("export const total"),
        "{system}"
    );
    assert!(
        !system.contains("{projectType}") && !system.contains("Project type"),
        "{system}"
    );
    // The agent's settings apply where the request sets none.
    assert_eq!(route.temperature, Some(0.2));
    assert_eq!(route.max_tokens, Some(2048));
    assert_eq!(
        route.messages.last().unwrap().content.text(),
        "Write unit tests for this"
    );
}

#[test]
fn direct_routes_carry_no_agent() {
    let orch = orchestrator(&Config::default());
    for req in [
        json!({ "prompt": "Explain this", "useOrchestrator": false }),
        json!({ "prompt": "Explain this", "provider": "simulated" }),
    ] {
        let route = orch.route(&request(req)).unwrap();
        assert_eq!(
            (route.agent, route.intent, route.confidence),
            (None, None, None)
        );
        assert_eq!(
            route.messages.len(),
            1,
            "no system prompt on a direct route"
        );
    }
    // Asking for the orchestrator and a provider: the agent, on that provider.
    let route = orch
        .route(&request(json!({ "prompt": "Explain this code", "provider": "simulated", "useOrchestrator": true, "temperature": 1.5 })))
        .unwrap();
    assert_eq!(route.agent.as_deref(), Some("explainer"));
    assert_eq!(route.chain[0].name().as_ref(), "simulated");
    assert_eq!(route.temperature, Some(1.5), "the request's value wins");
    assert_eq!(orch.stats.direct(), 2);
    let snap = orch.stats.snapshot();
    assert_eq!(snap["orchestrated"], 1);
    assert_eq!(snap["agents"]["explainer"], 1);
    assert_eq!(snap["intents"]["explain"], 1);
}

#[test]
fn low_confidence_goes_to_the_default_agent() {
    let orch = orchestrator(&Config::default());
    let route = orch
        .route(&request(json!({ "prompt": "hmm, ok" })))
        .unwrap();
    assert_eq!(route.agent.as_deref(), Some("assistant"));
    assert_eq!(route.intent.as_deref(), Some("chat"));
    assert_eq!(orch.stats.low_confidence(), 1);
    let mut config = Config::default();
    config.routing.min_confidence = 1.0;
    let strict = orchestrator(&config);
    let route = strict
        .route(&request(json!({ "prompt": "Explain this code please" })))
        .unwrap();
    assert_eq!(route.agent.as_deref(), Some("assistant"));
}

#[test]
fn unknown_provider_is_a_validation_error() {
    let orch = orchestrator(&Config::default());
    let e = orch
        .route(&request(json!({ "prompt": "x", "provider": "nope" })))
        .err()
        .unwrap();
    assert_eq!(e.code(), "invalid_request");
}

#[test]
fn agents_file_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("sg-agents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        "default_agent = \"a\"\n[[agents]]\nname = \"a\"\nintents = [\"x\"]\nsystem_prompt = \"s\"\nprovider = \"openai\"\n[[intents]]\nname = \"x\"\nrules = [{ pattern = 'hi', weight = 1.0 }]\n",
    )
    .unwrap();
    let mut config = Config::default();
    config.routing.agents_file = file.to_string_lossy().into_owned();
    let providers = Arc::new(ProviderSet::from_config(&config).unwrap());
    let e = Orchestrator::new(providers.clone(), &config)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("agents[a].provider"), "{e}");
    std::fs::write(
        &file,
        "default_agent = \"a\"\n[[agents]]\nname = \"a\"\nintents = [\"x\"]\nsystem_prompt = \"s\"\n[[intents]]\nname = \"x\"\nrules = [{ pattern = '(unclosed', weight = 1.0 }]\n",
    )
    .unwrap();
    let e = Orchestrator::new(providers, &config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("intents[x].rules") && e.contains("(unclosed"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
