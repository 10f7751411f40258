//! The optional LLM router: when the rules are unsure, ask a small model
//! which intent a prompt has, within a timeout.
//!
//! It is off unless `routing.llm_provider` names a provider. The rules
//! always decide first (microseconds, no failure mode); only a prompt they
//! score below `routing.min_confidence` is sent, as a one-shot
//! classification request (temperature 0, a few tokens) through the same
//! [`Provider`] trait as any stream. The answer must name an intent: the
//! exact name alone counts as confidence 0.9, a reply that mentions exactly
//! one intent name among other words as 0.6; anything else, an error or the
//! timeout leaves the rules' decision (the default agent) in place.

use crate::protocol::{ChatMessage, Role};
use crate::upstream::{Chunk, Provider, UpstreamRequest};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Prompts are cut to this many characters before classification: the
/// intent is stated early, and a small model's context is small.
const MAX_PROMPT_CHARS: usize = 2_000;
/// A classification answer longer than this is not one.
const MAX_ANSWER_CHARS: usize = 200;

pub struct LlmRouter {
    provider: Arc<dyn Provider>,
    model: Option<Arc<str>>,
    timeout: Duration,
    instructions: Arc<str>,
    intents: Arc<[Arc<str>]>,
}

impl LlmRouter {
    /// `intents` as (name, description), in the agents file's order.
    pub fn new(
        provider: Arc<dyn Provider>,
        model: Option<Arc<str>>,
        timeout: Duration,
        intents: &[(Arc<str>, String)],
    ) -> Self {
        let mut instructions = String::from(
            "Classify the developer's request to an IDE assistant into exactly one intent. \
             Answer with the intent's name only, nothing else.\nIntents:\n",
        );
        for (name, description) in intents {
            instructions.push_str(&format!("- {name}: {description}\n"));
        }
        Self {
            provider,
            model,
            timeout,
            instructions: instructions.into(),
            intents: intents.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    pub fn provider_name(&self) -> &str {
        self.provider.name()
    }

    /// The intent (index) and confidence, or `None` when the model could
    /// not say within the timeout.
    pub fn classify(&self, prompt: &str) -> BoxFuture<'static, Option<(usize, f64)>> {
        let request = UpstreamRequest {
            model: self
                .model
                .clone()
                .unwrap_or_else(|| self.provider.default_model().clone()),
            messages: vec![
                ChatMessage::text(Role::System, self.instructions.to_string()),
                ChatMessage::text(
                    Role::User,
                    prompt.chars().take(MAX_PROMPT_CHARS).collect::<String>(),
                ),
            ],
            temperature: Some(0.0),
            max_tokens: Some(8),
            stop: Vec::new(),
            tools: Vec::new(),
            tool_choice: None,
            reasoning: None,
        };
        let provider = self.provider.clone();
        let intents = self.intents.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let answer = tokio::time::timeout(timeout, async {
                let mut stream = provider.open(request).await.ok()?;
                let mut answer = String::new();
                while let Some(Ok(Chunk::Token(t))) = stream.next().await {
                    answer.push_str(&t);
                    if answer.len() > MAX_ANSWER_CHARS {
                        break;
                    }
                }
                // Dropping the stream here closes the upstream request.
                Some(answer)
            })
            .await;
            match answer {
                Ok(Some(answer)) => {
                    let parsed = parse_answer(&answer, &intents);
                    tracing::debug!(answer = %answer.trim(), ?parsed, "llm router answered");
                    parsed
                }
                Ok(None) => None,
                Err(_) => {
                    tracing::debug!(?timeout, "llm router timed out");
                    None
                }
            }
        })
    }
}

/// The intent named by a classifier's answer, with how plainly it was named.
pub fn parse_answer(answer: &str, intents: &[Arc<str>]) -> Option<(usize, f64)> {
    let words: Vec<String> = answer
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let position = |w: &str| intents.iter().position(|i| i.eq_ignore_ascii_case(w));
    if let [only] = words.as_slice() {
        return position(only).map(|i| (i, 0.9));
    }
    let mut named: Vec<usize> = words.iter().filter_map(|w| position(w)).collect();
    named.dedup();
    match named.as_slice() {
        [one] => Some((*one, 0.6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_an_intent_plainly_or_not_at_all() {
        let intents: Vec<Arc<str>> = ["explain", "fix", "test"]
            .iter()
            .map(|s| Arc::from(*s))
            .collect();
        assert_eq!(parse_answer("fix", &intents), Some((1, 0.9)));
        assert_eq!(parse_answer(" \"Test\".\n", &intents), Some((2, 0.9)));
        assert_eq!(
            parse_answer("The intent is: explain", &intents),
            Some((0, 0.6))
        );
        assert_eq!(parse_answer("fix or test", &intents), None);
        assert_eq!(parse_answer("refactor", &intents), None);
        assert_eq!(parse_answer("", &intents), None);
    }
}
