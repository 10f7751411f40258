//! [`ProviderSet`]: every configured provider, built from config, and the
//! fallback chain of each.

use super::anthropic::AnthropicProvider;
use super::ollama::OllamaProvider;
use super::openai::OpenAiProvider;
use super::provider::Provider;
use super::simulated::SimulatedProvider;
use crate::config::{Config, ProviderKind};
use crate::error::ProviderError;
use crate::telemetry::ProviderStats;
use std::collections::BTreeMap;
use std::sync::Arc;

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
