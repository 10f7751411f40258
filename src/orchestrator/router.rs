//! The rule-based intent router: prompt (and agentContext) in, best intent
//! and a confidence out.
//!
//! Every rule of every intent is compiled into one `RegexSet` (ASCII,
//! case-insensitive, over bytes), so a prompt is scanned once, in linear
//! time, whatever the number of rules: microseconds for ordinary prompts,
//! with no allocation beyond the per-rule match flags. Fenced code blocks
//! (```…```) are skipped so pasted code does not vote. An intent's score is
//! the sum of the weights of its rules that matched (each once) plus the
//! weights of its `context` fields present in agentContext. The result
//! carries the scores, so a decision can be logged with its reasons.

use super::agents::IntentSpec;
use crate::protocol::AgentContext;
use regex::bytes::{RegexSet, RegexSetBuilder};
use std::fmt::Write as _;

/// Rule sets larger than this (compiled) are a config mistake.
const MAX_COMPILED_BYTES: usize = 8 << 20;

pub struct IntentRouter {
    set: RegexSet,
    /// For each rule of the set: its intent (index) and weight.
    rules: Vec<(usize, f64)>,
    names: Vec<String>,
    /// Per intent: agentContext fields that add weight when present.
    context: Vec<Vec<(String, f64)>>,
}

/// One prompt's scores. `best` is `None` when nothing scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub best: Option<usize>,
    pub confidence: f64,
    pub scores: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("intent {intent:?}: pattern {pattern:?}: {reason}")]
pub struct RuleError {
    pub intent: String,
    pub pattern: String,
    pub reason: String,
}

fn builder<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> RegexSetBuilder {
    let mut b = RegexSetBuilder::new(patterns);
    b.case_insensitive(true)
        .unicode(false)
        .size_limit(MAX_COMPILED_BYTES)
        .dfa_size_limit(MAX_COMPILED_BYTES);
    b
}

impl IntentRouter {
    pub fn new(intents: &[IntentSpec]) -> Result<Self, RuleError> {
        let mut patterns = Vec::new();
        let mut rules = Vec::new();
        for (i, intent) in intents.iter().enumerate() {
            for rule in &intent.rules {
                // Compiled alone first, so a bad pattern is named.
                builder([&rule.pattern]).build().map_err(|e| RuleError {
                    intent: intent.name.clone(),
                    pattern: rule.pattern.clone(),
                    reason: e.to_string(),
                })?;
                patterns.push(rule.pattern.as_str());
                rules.push((i, rule.weight));
            }
        }
        let set = builder(&patterns).build().map_err(|e| RuleError {
            intent: "*".into(),
            pattern: "(all rules together)".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            set,
            rules,
            names: intents.iter().map(|i| i.name.clone()).collect(),
            context: intents
                .iter()
                .map(|i| i.context.iter().map(|(k, w)| (k.clone(), *w)).collect())
                .collect(),
        })
    }

    pub fn intent_name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn classify(&self, prompt: &str, context: Option<&AgentContext>) -> Classification {
        let mut matched = vec![false; self.rules.len()];
        // Even pieces lie outside ``` fences, odd ones inside.
        for (n, piece) in prompt.split("```").enumerate() {
            if n % 2 == 0 && !piece.trim().is_empty() {
                for r in self.set.matches(piece.as_bytes()).iter() {
                    matched[r] = true;
                }
            }
        }
        let mut scores = vec![0.0; self.names.len()];
        for (r, &(intent, weight)) in self.rules.iter().enumerate() {
            if matched[r] {
                scores[intent] += weight;
            }
        }
        if let Some(ctx) = context {
            for (intent, fields) in self.context.iter().enumerate() {
                for (field, weight) in fields {
                    if ctx.get(field).is_some_and(present) {
                        scores[intent] += weight;
                    }
                }
            }
        }
        let (best, confidence) = confidence(&scores);
        Classification {
            best,
            confidence,
            scores,
        }
    }

    /// `explain=3.6 fix=0.3`: the non-zero scores, for the routing log.
    pub fn explain(&self, c: &Classification) -> String {
        let mut out = String::new();
        for (i, s) in c.scores.iter().enumerate().filter(|(_, s)| **s > 0.0) {
            let _ = write!(
                out,
                "{}{}={:.1}",
                if out.is_empty() { "" } else { " " },
                self.names[i],
                s
            );
        }
        if out.is_empty() {
            out.push_str("no rule matched");
        }
        out
    }
}

/// A context value counts when it carries something.
fn present(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::String(s) => !s.trim().is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// The best intent (ties go to the one listed first) and how sure we are:
/// evidence strength `top / (top + 1)` (one weight-1 rule gives 0.5, three
/// points 0.75) times the lead over the runner-up, `0.5 + 0.5 * margin`
/// (a tie halves it). Rounded to 3 decimals so logs and events agree.
pub fn confidence(scores: &[f64]) -> (Option<usize>, f64) {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s > 0.0 && best.is_none_or(|b| s > scores[b]) {
            best = Some(i);
        }
    }
    let Some(b) = best else {
        return (None, 0.0);
    };
    let top = scores[b];
    let second = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != b)
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    let strength = top / (top + 1.0);
    let margin = (top - second) / top;
    let c = strength * (0.5 + 0.5 * margin);
    (Some(b), (c * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_rewards_strength_and_lead() {
        assert_eq!(confidence(&[0.0, 0.0]), (None, 0.0));
        assert_eq!(confidence(&[1.0, 0.0]), (Some(0), 0.5));
        assert_eq!(confidence(&[3.0, 0.0]), (Some(0), 0.75));
        // A tie halves it and goes to the first listed.
        assert_eq!(confidence(&[3.0, 3.0]), (Some(0), 0.375));
        let (b, c) = confidence(&[1.0, 4.0]);
        assert_eq!(b, Some(1));
        assert!(c > 0.5 && c < 0.8, "{c}");
    }
}
