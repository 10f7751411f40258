//! The Ollama provider: its client (no key), its URLs, and `open`.

use super::decode::OllamaLines;
use super::request::ChatBody;
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::telemetry::ProviderStats;
use crate::upstream::http::{self, ApiKey};
use crate::upstream::ndjson::ndjson_chunks;
use crate::upstream::provider::{ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use std::sync::Arc;

pub struct OllamaProvider {
    profile: ProviderProfile,
    chat_url: String,
    tags_url: String,
    client: reqwest::Client,
    /// Ollama takes no key; errors are still scrubbed the same way.
    key: Arc<ApiKey>,
}

impl OllamaProvider {
    pub fn new(
        name: &str,
        config: &ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Result<Self, ProviderError> {
        let base = config.base_url.trim_end_matches('/');
        Ok(Self {
            profile: ProviderProfile::new(name, config, stats),
            chat_url: format!("{base}/api/chat"),
            tags_url: format!("{base}/api/tags"),
            client: http::client(name, config, HeaderMap::new())?,
            key: Arc::new(ApiKey::none()),
        })
    }
}

impl Provider for OllamaProvider {
    fn profile(&self) -> &ProviderProfile {
        &self.profile
    }

    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
        let body = match ChatBody::of(&request) {
            Ok(body) => body,
            Err(e) => {
                let name = self.profile.name.to_string();
                return Box::pin(async move { Err(e.into_error(name)) });
            }
        };
        let send = self.client.post(&self.chat_url).json(&body).send();
        let (name, key) = (self.profile.name.clone(), self.key.clone());
        Box::pin(async move {
            let response = http::check(&name, &key, send).await?;
            Ok(ndjson_chunks(
                name,
                response.bytes_stream(),
                OllamaLines::default(),
            ))
        })
    }

    fn probe(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        http::probe(
            self.profile.name.clone(),
            self.key.clone(),
            &self.client,
            &self.tags_url,
        )
    }
}
