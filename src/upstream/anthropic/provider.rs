//! The Anthropic provider: its client (`x-api-key`,
//! `anthropic-version: 2023-06-01`), its URLs, and `open`.
//!
//! `ANTHROPIC_BASE_URL` works as in the official SDK
//! (`https://api.anthropic.com`, no version); a base already ending in
//! `/v1` is accepted as well.

use super::decode::AnthropicEventDecoder;
use super::request::MessagesBody;
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::telemetry::ProviderStats;
use crate::upstream::http::{self, ApiKey};
use crate::upstream::provider::{ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

const API_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    profile: ProviderProfile,
    messages_url: String,
    models_url: String,
    max_tokens_default: u32,
    client: reqwest::Client,
    key: Arc<ApiKey>,
}

impl AnthropicProvider {
    pub fn new(
        name: &str,
        config: &ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Result<Self, ProviderError> {
        let base = config.base_url.trim_end_matches('/');
        let root = base.strip_suffix("/v1").unwrap_or(base);
        let key = ApiKey::from_env(config);
        let mut headers = HeaderMap::new();
        if let Some((h, v)) = key.header(HeaderName::from_static("x-api-key"), "", name)? {
            headers.insert(h, v);
        }
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        tracing::info!(provider = name, base = %root, key_env = %key.env, key_set = key.is_set(), "anthropic provider");
        Ok(Self {
            profile: ProviderProfile::new(name, config, stats),
            messages_url: format!("{root}/v1/messages"),
            models_url: format!("{root}/v1/models"),
            max_tokens_default: config.max_tokens_default,
            client: http::client(name, config, headers)?,
            key: Arc::new(key),
        })
    }
}

impl Provider for AnthropicProvider {
    fn profile(&self) -> &ProviderProfile {
        &self.profile
    }

    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
        let body = MessagesBody::of(&request, self.max_tokens_default);
        let send = self.client.post(&self.messages_url).json(&body).send();
        http::open_sse(
            self.profile.name.clone(),
            self.key.clone(),
            send,
            AnthropicEventDecoder::default(),
        )
    }

    fn probe(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        http::probe(
            self.profile.name.clone(),
            self.key.clone(),
            &self.client,
            &self.models_url,
        )
    }
}
