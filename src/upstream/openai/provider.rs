//! The OpenAI-compatible provider: its client, its URLs, and `open`.
//!
//! Base URLs follow the official SDK's `OPENAI_BASE_URL`, which includes the
//! API version (`https://api.openai.com/v1`), with one convenience: a base
//! URL with no path at all (`http://localhost:8080`) gets `/v1` added, so
//! both `https://api.openai.com` and `https://api.openai.com/v1` work, and a
//! base with its own path (`https://host/api/openai/v1beta`) is used as is.

use super::decode::OpenAiEventDecoder;
use super::request::ChatBody;
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::telemetry::ProviderStats;
use crate::upstream::http::{self, ApiKey};
use crate::upstream::provider::{ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use std::sync::Arc;

pub struct OpenAiProvider {
    profile: ProviderProfile,
    chat_url: String,
    models_url: String,
    client: reqwest::Client,
    key: Arc<ApiKey>,
}

/// `{base}` as the API root the paths hang off (see the module docs).
pub fn api_root(base: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(base).map_err(|e| format!("base_url {base:?}: {e}"))?;
    let root = base.trim_end_matches('/');
    Ok(if url.path().trim_matches('/').is_empty() {
        format!("{root}/v1")
    } else {
        root.to_string()
    })
}

impl OpenAiProvider {
    pub fn new(
        name: &str,
        config: &ProviderConfig,
        stats: Arc<ProviderStats>,
    ) -> Result<Self, ProviderError> {
        let root = api_root(&config.base_url).map_err(|detail| ProviderError::Unavailable {
            provider: name.to_string(),
            detail,
        })?;
        let key = ApiKey::from_env(config);
        let mut headers = HeaderMap::new();
        if let Some((h, v)) = key.header(AUTHORIZATION, "Bearer ", name)? {
            headers.insert(h, v);
        }
        tracing::info!(provider = name, api_root = %root, key_env = %key.env, key_set = key.is_set(), "openai-compatible provider");
        Ok(Self {
            profile: ProviderProfile::new(name, config, stats),
            chat_url: format!("{root}/chat/completions"),
            models_url: format!("{root}/models"),
            client: http::client(name, config, headers)?,
            key: Arc::new(key),
        })
    }
}

impl Provider for OpenAiProvider {
    fn profile(&self) -> &ProviderProfile {
        &self.profile
    }

    fn open(
        &self,
        request: UpstreamRequest,
    ) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
        let body = ChatBody::of(&request);
        let send = self.client.post(&self.chat_url).json(&body).send();
        http::open_sse(
            self.profile.name.clone(),
            self.key.clone(),
            send,
            OpenAiEventDecoder::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_with_and_without_v1() {
        assert_eq!(
            api_root("https://api.openai.com").unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("https://api.openai.com/").unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("https://api.openai.com/v1").unwrap(),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            api_root("http://127.0.0.1:8080/v1/").unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert_eq!(
            api_root("https://example.com/api/openai/v1beta").unwrap(),
            "https://example.com/api/openai/v1beta"
        );
        assert!(api_root("not a url").is_err());
    }
}
