//! The agents file (`config/agents.toml`): its format, its validation, and
//! the rendering of an agent's system prompt from a request's agentContext.
//!
//! The file is read once at startup (the built-in copy when
//! `routing.agents_file` is empty) and checked against the configured
//! providers, so a typo stops startup with the key's name instead of
//! failing requests later. See the file itself for the format.

use crate::protocol::AgentContext;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `config/agents.toml` as shipped, so the binary runs from any directory.
pub const BUILT_IN: &str = include_str!("../../config/agents.toml");

/// The agentContext fields a system prompt may use.
pub const PLACEHOLDERS: &[&str] = &["activeFile", "language", "projectType", "selection"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsFile {
    pub default_agent: String,
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
    #[serde(default)]
    pub intents: Vec<IntentSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub intents: Vec<String>,
    pub system_prompt: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Tools this agent always offers, merged with a request's own.
    #[serde(default)]
    pub tools: Vec<crate::protocol::ToolSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// agentContext field → weight added when it is present and non-empty.
    #[serde(default)]
    pub context: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub pattern: String,
    pub weight: f64,
}

/// Startup stops on this, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("agents file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("agents file {path}: {key} {rule}")]
    Invalid {
        path: String,
        key: String,
        rule: String,
    },
}

impl AgentsFile {
    /// The file at `path`, or the built-in one when `path` is empty.
    pub fn load(path: &str) -> Result<Self, AgentsError> {
        if path.is_empty() {
            return Self::parse(BUILT_IN, "(built-in config/agents.toml)");
        }
        let text = std::fs::read_to_string(path).map_err(|e| AgentsError::Read {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, AgentsError> {
        Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| AgentsError::Read {
                path: origin.into(),
                reason: e.to_string(),
            })
    }

    /// Names unique, every intent served, every reference resolvable,
    /// values in range. `providers` are the configured provider names.
    pub fn validate(&self, origin: &str, providers: &[String]) -> Result<(), AgentsError> {
        let bad = |key: String, rule: String| {
            Err(AgentsError::Invalid {
                path: origin.into(),
                key,
                rule,
            })
        };
        let intent_names: Vec<&str> = self.intents.iter().map(|i| i.name.as_str()).collect();
        for (n, intent) in self.intents.iter().enumerate() {
            let key = format!("intents[{}]", intent.name);
            if intent.name.is_empty() || intent_names[..n].contains(&intent.name.as_str()) {
                return bad(
                    format!("intents[{n}].name"),
                    "must be non-empty and unique".into(),
                );
            }
            if let Some(r) = intent
                .rules
                .iter()
                .find(|r| !(r.weight.is_finite() && r.weight > 0.0))
            {
                return bad(
                    format!("{key}.rules"),
                    format!("weights must be > 0 (pattern {:?})", r.pattern),
                );
            }
            if intent
                .context
                .values()
                .any(|w| !(w.is_finite() && *w > 0.0))
            {
                return bad(format!("{key}.context"), "weights must be > 0".into());
            }
            if !self.agents.iter().any(|a| a.intents.contains(&intent.name)) {
                return bad(
                    key,
                    "is served by no agent (list it in an agent's intents)".into(),
                );
            }
        }
        for (n, agent) in self.agents.iter().enumerate() {
            let key = |k: &str| format!("agents[{}].{k}", agent.name);
            if agent.name.is_empty() || self.agents[..n].iter().any(|a| a.name == agent.name) {
                return bad(
                    format!("agents[{n}].name"),
                    "must be non-empty and unique".into(),
                );
            }
            if agent.intents.is_empty() {
                return bad(key("intents"), "must list at least one intent".into());
            }
            let names = agent.tools.iter().map(validator::Validate::validate);
            if let Some(Err(e)) = names.into_iter().find(Result::is_err) {
                return bad(key("tools"), e.to_string());
            }
            if let Err(e) = crate::protocol::check_tools(&agent.tools, None) {
                return bad(key(&e.field), e.rule);
            }
            if let Some(i) = agent
                .intents
                .iter()
                .find(|i| !intent_names.contains(&i.as_str()))
            {
                return bad(key("intents"), format!("names an unknown intent {i:?}"));
            }
            if let Some(p) = &agent.provider
                && !providers.contains(p)
            {
                return bad(
                    key("provider"),
                    format!("must name a configured provider ({})", providers.join(", ")),
                );
            }
            if agent.model.as_deref() == Some("") {
                return bad(
                    key("model"),
                    "must not be empty (leave it out for the provider's default)".into(),
                );
            }
            if agent.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
                return bad(key("temperature"), "must be between 0.0 and 2.0".into());
            }
            if agent.max_tokens == Some(0) {
                return bad(key("max_tokens"), "must be at least 1".into());
            }
        }
        if !self.agents.iter().any(|a| a.name == self.default_agent) {
            return bad(
                "default_agent".into(),
                format!("must name an agent (got {:?})", self.default_agent),
            );
        }
        Ok(())
    }
}

/// An agent's system prompt for one request: `{activeFile}`, `{language}`,
/// `{projectType}` and `{selection}` replaced by the agentContext's values.
/// A line using a placeholder the request did not send (or sent empty) is
/// left out, so "File: {activeFile}" never reads "File: " or "File: null".
/// Values are inserted as they are, never expanded again.
pub fn render_prompt(template: &str, context: Option<&AgentContext>) -> String {
    let value = |name: &str| -> Option<String> {
        match context?.get(name)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let mut out = String::with_capacity(template.len());
    'lines: for line in template.trim().lines() {
        let mut rendered = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            rendered.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name = after
                .find('}')
                .map(|close| &after[..close])
                .filter(|n| PLACEHOLDERS.contains(n));
            match name {
                Some(name) => {
                    let Some(v) = value(name) else {
                        continue 'lines;
                    };
                    rendered.push_str(&v);
                    rest = &after[name.len() + 1..];
                }
                None => {
                    rendered.push('{');
                    rest = after;
                }
            }
        }
        rendered.push_str(rest);
        out.push_str(&rendered);
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_file_is_valid() {
        let f = AgentsFile::load("").unwrap();
        f.validate("built-in", &["ollama".into()]).unwrap();
        assert!(f.agents.len() >= 7);
    }

    #[test]
    fn placeholders_fill_and_missing_ones_drop_their_line() {
        let ctx = json!({ "activeFile": "App.js", "language": "javascript", "selection": "x {language} y" });
        let ctx = ctx.as_object().unwrap();
        let t = "Intro {not_a_placeholder}\nFile {activeFile} ({language})\nType {projectType}\nCode:\n{selection}";
        assert_eq!(
            render_prompt(t, Some(ctx)),
            "Intro {not_a_placeholder}\nFile App.js (javascript)\nCode:\nx {language} y"
        );
        assert_eq!(render_prompt(t, None), "Intro {not_a_placeholder}\nCode:");
    }

    #[test]
    fn validation_names_the_key() {
        let mut f = AgentsFile::load("").unwrap();
        f.agents[0].provider = Some("nope".into());
        let e = f.validate("x", &["ollama".into()]).unwrap_err().to_string();
        assert!(e.contains("agents[explainer].provider"), "{e}");
        let mut f = AgentsFile::load("").unwrap();
        f.default_agent = "ghost".into();
        let e = f.validate("x", &["ollama".into()]).unwrap_err().to_string();
        assert!(e.contains("default_agent"), "{e}");
    }
}
