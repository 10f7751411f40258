//! What every HTTP provider (`ollama`, `openai`, `anthropic`) shares:
//! reading the API key, building the pooled client, sending a request and
//! turning an error status into a [`ProviderError`], and the readiness probe.
//!
//! The key is read once from the environment variable the config names and
//! goes straight into the client's default headers, marked sensitive, so it
//! is never part of a `Debug` print, a log line or an error: error details
//! are built from the status and the upstream's own message, with the key
//! scrubbed from that message in case an upstream echoes it, and dropped
//! entirely for 401/403 (whose messages tend to quote part of the key).

use super::provider::ChunkStream;
use super::sse::{EventDecoder, sse_chunks};
use crate::config::{ProviderConfig, ProviderKind};
use crate::error::ProviderError;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The key from the environment, or `None` when the variable is unset.
pub struct ApiKey {
    value: Option<String>,
    /// The variable's name: safe to show, useful in a 401's detail.
    pub env: String,
}

impl ApiKey {
    /// No key (a provider that takes none).
    pub fn none() -> Self {
        Self {
            value: None,
            env: String::new(),
        }
    }

    pub fn from_env(config: &ProviderConfig) -> Self {
        let env = if config.api_key_env.is_empty() {
            match config.kind {
                ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
                _ => "OPENAI_API_KEY",
            }
            .to_string()
        } else {
            config.api_key_env.clone()
        };
        let value = std::env::var(&env).ok().filter(|v| !v.is_empty());
        Self { value, env }
    }

    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }

    /// The header carrying the key (`Authorization: Bearer …` or
    /// `x-api-key: …`), marked sensitive.
    pub fn header(
        &self,
        name: HeaderName,
        prefix: &str,
        provider: &str,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
        let Some(key) = &self.value else {
            return Ok(None);
        };
        let mut value = HeaderValue::from_str(&format!("{prefix}{key}")).map_err(|_| {
            ProviderError::Unavailable {
                provider: provider.to_string(),
                detail: format!("the API key in ${} is not a valid header value", self.env),
            }
        })?;
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }

    /// `text` with any occurrence of the key replaced.
    pub fn scrub(&self, text: &str) -> String {
        match &self.value {
            Some(key) if key.len() >= 4 => text.replace(key.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }
}

/// One pooled client per provider, with its connect timeout and headers.
pub fn client(
    name: &str,
    config: &ProviderConfig,
    headers: HeaderMap,
) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .pool_idle_timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .map_err(|e| ProviderError::Unavailable {
            provider: name.to_string(),
            detail: e.without_url().to_string(),
        })
}

/// A transport error (connect refused, DNS, TLS, reset) as a fallback-able
/// failure. The URL is left out: it is config, not news, and a base URL may
/// carry credentials.
pub fn transport_error(name: &str, e: reqwest::Error) -> ProviderError {
    ProviderError::Unavailable {
        provider: name.to_string(),
        detail: e.without_url().to_string(),
    }
}

/// The error for a non-success response: 5xx and 429 say "not now" and
/// may fall back; other statuses are the request's or the key's fault.
/// Reads the body (bounded) for the upstream's message.
pub async fn status_error(name: &str, key: &ApiKey, response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let detail = if matches!(status.as_u16(), 401 | 403) && !key.env.is_empty() {
        format!("HTTP {status} (check the API key in ${})", key.env)
    } else {
        let body = read_bounded(response, 16 * 1024).await;
        let message = error_message(&body).unwrap_or_else(|| body.chars().take(300).collect());
        key.scrub(&format!("HTTP {status}: {message}"))
    };
    if status.is_server_error() || status.as_u16() == 429 {
        ProviderError::Unavailable {
            provider: name.to_string(),
            detail,
        }
    } else {
        ProviderError::Upstream {
            provider: name.to_string(),
            detail,
        }
    }
}

/// At most `limit` bytes of the body, as text (an error body can be
/// anything, including endless).
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    String::from_utf8_lossy(&body).into_owned()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorField,
}

/// `{"error":{…}}` (OpenAI, Anthropic) or `{"error":"…"}` (Ollama).
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ErrorObject),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `error.message` (with `error.type`) of an OpenAI- or Anthropic-style
/// error body: `{"error":{"message":…,"type":…}}`, also when Anthropic
/// wraps it in `{"type":"error",…}`; or Ollama's `{"error":"…"}`.
pub fn error_message(body: &str) -> Option<String> {
    let e = match serde_json::from_str::<ErrorBody>(body).ok()?.error {
        ErrorField::Text(text) => return Some(text),
        ErrorField::Object(e) => e,
    };
    match (e.kind, e.message) {
        (Some(kind), Some(message)) => Some(format!("{kind}: {message}")),
        (None, Some(message)) => Some(message),
        (Some(kind), None) => Some(kind),
        (None, None) => None,
    }
}

/// Await a sent request: its response if the status is a success, or
/// the error that status (or the transport) means.
pub async fn check(
    name: &str,
    key: &ApiKey,
    send: impl Future<Output = reqwest::Result<reqwest::Response>>,
) -> Result<reqwest::Response, ProviderError> {
    let response = send.await.map_err(|e| transport_error(name, e))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(status_error(name, key, response).await)
    }
}

/// Send a streaming request and hand its SSE body to `decoder`: what
/// every SSE provider's `open` does once it has built its request.
pub fn open_sse<D: EventDecoder>(
    name: Arc<str>,
    key: Arc<ApiKey>,
    send: impl Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static,
    decoder: D,
) -> BoxFuture<'static, Result<ChunkStream, ProviderError>> {
    Box::pin(async move {
        let response = check(&name, &key, send).await?;
        let body = response
            .bytes_stream()
            .map(|r| r.map_err(|e| e.without_url()));
        Ok(sse_chunks(name, body, decoder))
    })
}

/// `GET url` answers with a success status within two seconds.
pub fn probe(
    name: Arc<str>,
    key: Arc<ApiKey>,
    client: &reqwest::Client,
    url: &str,
) -> BoxFuture<'static, Result<(), ProviderError>> {
    let req = client.get(url).timeout(Duration::from_secs(2)).send();
    Box::pin(async move { check(&name, &key, req).await.map(drop) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_both_formats() {
        let openai = r#"{"error":{"message":"bad model","type":"invalid_request_error","param":null,"code":null}}"#;
        assert_eq!(
            error_message(openai).as_deref(),
            Some("invalid_request_error: bad model")
        );
        let anthropic =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            error_message(anthropic).as_deref(),
            Some("overloaded_error: Overloaded")
        );
        assert_eq!(error_message("<html>"), None);
        assert_eq!(
            error_message(r#"{"error":"model 'x' not found"}"#).as_deref(),
            Some("model 'x' not found")
        );
    }

    #[test]
    fn scrub_hides_the_key() {
        let key = ApiKey {
            value: Some("sk-secret-123".into()),
            env: "K".into(),
        };
        assert_eq!(key.scrub("bad key sk-secret-123!"), "bad key [redacted]!");
    }
}
