//! Any OpenAI-compatible server (OpenAI, DeepSeek, vLLM, llama.cpp's
//! `llama-server`, LM Studio, …): `POST {base}/chat/completions` with
//! `stream: true` and `stream_options.include_usage`, answered with SSE.
//!
//! Each `data:` event is a `chat.completion.chunk`: text in
//! `choices[0].delta.content`, the finish reason in the chunk that ends the
//! choice, then (with `include_usage`) a chunk with empty `choices` and the
//! `usage`, then `data: [DONE]`, which is where [`Chunk::Done`] is emitted.
//! An `{"error":…}` object (as a body or as an event) is an error. A body
//! that ends after a finish reason but without `[DONE]` still completes
//! (some servers omit it); one that ends before a finish reason is broken.
//!
//! Base URLs follow the official SDK's `OPENAI_BASE_URL`, which includes the
//! API version (`https://api.openai.com/v1`), with one convenience: a base
//! URL with no path at all (`http://localhost:8080`) gets `/v1` added, so
//! both `https://api.openai.com` and `https://api.openai.com/v1` work, and a
//! base with its own path (`https://host/api/openai/v1beta`) is used as is.

use super::http::{self, ApiKey};
use super::provider::{Chunk, ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use super::sse::{DecodeError, EventDecoder};
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Usage};
use crate::telemetry::ProviderStats;
use eventsource_stream::Event;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
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

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    /// `max_tokens`, not the newer `max_completion_tokens`: every
    /// compatible server accepts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
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
        let body = ChatBody {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        };
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

#[derive(Deserialize)]
struct CompletionChunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageBody>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// The `chat.completion.chunk` events of one stream: keeps the finish
/// reason and usage until `[DONE]`.
#[derive(Default)]
pub struct OpenAiEventDecoder {
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl OpenAiEventDecoder {
    fn done(&mut self) -> Chunk {
        Chunk::Done {
            finish_reason: self.finish_reason.take().unwrap_or_else(|| "stop".into()),
            usage: self.usage.take(),
        }
    }
}

fn error_detail(data: &str) -> String {
    http::error_message(data).unwrap_or_else(|| data.chars().take(300).collect())
}

impl EventDecoder for OpenAiEventDecoder {
    fn event(&mut self, event: &Event, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError> {
        let data = event.data.trim();
        if event.event == "error" {
            return Err(DecodeError::Upstream(format!(
                "error event: {}",
                error_detail(data)
            )));
        }
        if data == "[DONE]" {
            out.push_back(self.done());
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: CompletionChunk = serde_json::from_str(data)
            .map_err(|e| DecodeError::Upstream(format!("undecodable event: {e}")))?;
        if chunk.error.is_some() {
            return Err(DecodeError::Upstream(format!(
                "error in stream: {}",
                error_detail(data)
            )));
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(content) = choice.delta.and_then(|d| d.content)
                && !content.is_empty()
            {
                out.push_back(Chunk::Token(content));
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            });
        }
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError> {
        if self.finish_reason.is_some() {
            out.push_back(self.done());
            Ok(())
        } else {
            Err(DecodeError::Upstream(
                "stream ended before a finish reason or [DONE]".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::decode_pieces;
    use super::*;

    /// A byte-exact OpenAI stream: role chunk, two text chunks (one with a
    /// two-byte character, to split inside it), a keep-alive comment, the
    /// finish chunk, the usage chunk with empty choices, `[DONE]`; CRLF
    /// line ends on one event, as some proxies write.
    pub const BODY: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \u{e9}\\n\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\r\n\r\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n",
        "data: [DONE]\n\n",
    );

    fn want() -> Vec<Result<Chunk, String>> {
        vec![
            Ok(Chunk::Token("Hel".into())),
            Ok(Chunk::Token("lo é\n".into())),
            Ok(Chunk::Done {
                finish_reason: "length".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(7),
                    completion_tokens: Some(2),
                }),
            }),
        ]
    }

    #[tokio::test]
    async fn every_split_point_decodes_the_same() {
        let bytes = BODY.as_bytes();
        for cut in 0..=bytes.len() {
            let got = decode_pieces(
                vec![&bytes[..cut], &bytes[cut..]],
                OpenAiEventDecoder::default(),
            )
            .await;
            assert_eq!(got, want(), "split at byte {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            decode_pieces(bytewise, OpenAiEventDecoder::default()).await,
            want()
        );
    }

    #[tokio::test]
    async fn mid_stream_error_object_is_an_error() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n",
            "data: {\"error\":{\"message\":\"context length exceeded\",\"type\":\"invalid_request_error\"}}\n\n",
        );
        let got = decode_pieces(vec![body.as_bytes()], OpenAiEventDecoder::default()).await;
        assert_eq!(got[0], Ok(Chunk::Token("a".into())));
        let err = got[1].as_ref().unwrap_err();
        assert!(err.contains("context length exceeded"), "{err}");
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn end_without_finish_is_an_error_and_with_finish_completes() {
        let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n";
        let got = decode_pieces(vec![cut.as_bytes()], OpenAiEventDecoder::default()).await;
        assert!(
            got[1].as_ref().is_err_and(|e| e.contains("ended before")),
            "{got:?}"
        );
        let no_done = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n";
        let got = decode_pieces(vec![no_done.as_bytes()], OpenAiEventDecoder::default()).await;
        assert_eq!(
            got[1],
            Ok(Chunk::Done {
                finish_reason: "stop".into(),
                usage: None
            })
        );
    }

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
