//! Ollama's streaming chat API: `POST /api/chat` answering NDJSON.
//!
//! Each line is one JSON object: `{"message":{"content":"…"},"done":false}`
//! for a token, a last line with `"done":true`, `done_reason`,
//! `prompt_eval_count` and `eval_count`, or `{"error":"…"}`. Line framing
//! is [`super::ndjson`]'s; this file reads one line ([`OllamaLines`]) and
//! builds the request. The HTTP client, status mapping and probe are the
//! ones every provider shares ([`super::http`]).

use super::http::{self, ApiKey};
use super::ndjson::{LineDecoder, ndjson_chunks};
use super::provider::{Chunk, ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Usage};
use crate::telemetry::ProviderStats;
use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

pub struct OllamaProvider {
    profile: ProviderProfile,
    chat_url: String,
    tags_url: String,
    client: reqwest::Client,
    /// Ollama takes no key; errors are still scrubbed the same way.
    key: Arc<ApiKey>,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Options::is_empty")]
    options: Options,
}

#[derive(Serialize, Default)]
struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
}

impl Options {
    fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.num_predict.is_none()
    }
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
        let body = ChatBody {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            options: Options {
                temperature: request.temperature,
                num_predict: request.max_tokens,
            },
        };
        let send = self.client.post(&self.chat_url).json(&body).send();
        let (name, key) = (self.profile.name.clone(), self.key.clone());
        Box::pin(async move {
            let response = http::check(&name, &key, send).await?;
            Ok(ndjson_chunks(name, response.bytes_stream(), OllamaLines))
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

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

/// Ollama's reading of one NDJSON line.
pub struct OllamaLines;

impl LineDecoder for OllamaLines {
    /// A token line with empty content carries nothing and adds nothing.
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), String> {
        let parsed: Line =
            serde_json::from_str(line).map_err(|e| format!("undecodable line: {e}"))?;
        if let Some(error) = parsed.error {
            return Err(format!("error line: {error}"));
        }
        if let Some(m) = parsed.message
            && !m.content.is_empty()
        {
            out.push_back(Chunk::Token(m.content));
        }
        if parsed.done {
            let usage = (parsed.prompt_eval_count.is_some() || parsed.eval_count.is_some())
                .then_some(Usage {
                    prompt_tokens: parsed.prompt_eval_count,
                    completion_tokens: parsed.eval_count,
                });
            out.push_back(Chunk::Done {
                finish_reason: parsed.done_reason.unwrap_or_else(|| "stop".into()),
                usage,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ndjson::{MAX_LINE_BYTES, decode_pieces};
    use super::*;

    const BODY: &str = concat!(
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo \\u00e9\\n\"},\"done\":false}\r\n",
        "\n",
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"total_duration\":1,\"prompt_eval_count\":7,\"eval_count\":2}\n",
        "{\"never\":\"read\"}\n",
    );

    #[tokio::test]
    async fn every_split_point_decodes_the_same() {
        let want = vec![
            Ok(Chunk::Token("Hel".into())),
            Ok(Chunk::Token("lo é\n".into())),
            Ok(Chunk::Done {
                finish_reason: "length".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(7),
                    completion_tokens: Some(2),
                }),
            }),
        ];
        let body = BODY.as_bytes();
        for cut in 0..=body.len() {
            let got = decode_pieces(vec![&body[..cut], &body[cut..]], OllamaLines).await;
            assert_eq!(got, want, "split at byte {cut}");
        }
    }

    #[tokio::test]
    async fn error_line_is_an_error() {
        let got = decode_pieces(vec![b"{\"error\":\"model 'x' not found\"}\n"], OllamaLines).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("not found")),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn endless_line_is_capped_and_a_body_without_done_is_broken() {
        let big = vec![b'a'; MAX_LINE_BYTES + 1];
        let got = decode_pieces(vec![&big], OllamaLines).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("exceeded")),
            "{got:?}"
        );
        let line = b"{\"message\":{\"content\":\"x\"},\"done\":false}\n";
        let got = decode_pieces(vec![line], OllamaLines).await;
        assert!(
            matches!(&got[..], [Ok(_), Err(e)] if e.contains("done line")),
            "{got:?}"
        );
    }
}
