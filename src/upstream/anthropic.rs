//! Anthropic's Messages API, streaming: `POST {base}/v1/messages` with
//! `x-api-key`, `anthropic-version: 2023-06-01` and `stream: true`.
//!
//! The conversation's system messages go to the top-level `system` field
//! (the API takes no `system` role); `max_tokens` is required, so the
//! provider's `max_tokens_default` fills in when the request sets none.
//! The answer is SSE: `message_start` (input token count),
//! `content_block_delta` with a `text_delta` (one token), `message_delta`
//! (stop reason, output token count), `message_stop` (where
//! [`Chunk::Done`] is emitted); `ping`, block start/stop and unknown events
//! are ignored; an `error` event ends the stream with an error
//! (`overloaded_error` as unavailable, so before the first token the next
//! provider may serve). Stop reasons are reported in the gateway's common
//! words: `end_turn` and `stop_sequence` as `stop`, `max_tokens` as
//! `length`; others (`tool_use`, `refusal`, …) as Anthropic says them.
//!
//! `ANTHROPIC_BASE_URL` works as in the official SDK (`https://api.anthropic.com`,
//! no version); a base already ending in `/v1` is accepted as well.

use super::http::{self, ApiKey};
use super::provider::{Chunk, ChunkStream, Provider, ProviderProfile, UpstreamRequest};
use super::sse::{DecodeError, EventDecoder};
use crate::config::ProviderConfig;
use crate::error::ProviderError;
use crate::protocol::{Role, Usage};
use crate::telemetry::ProviderStats;
use eventsource_stream::Event;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
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

#[derive(Serialize)]
struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Message<'a>>,
    stream: bool,
    /// Anthropic takes 0.0..=1.0 (requests may ask up to 2.0): clamped.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: Role,
    content: &'a str,
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
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        let body = MessagesBody {
            model: &request.model,
            max_tokens: request.max_tokens.unwrap_or(self.max_tokens_default),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: request
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| Message {
                    role: m.role,
                    content: &m.content,
                })
                .collect(),
            stream: true,
            temperature: request.temperature.map(|t| t.clamp(0.0, 1.0)),
        };
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

/// The `data` of every event we read; fields absent from an event type
/// stay `None`.
#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    delta: Option<DeltaBody>,
    #[serde(default)]
    usage: Option<UsageBody>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct DeltaBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// One Messages stream's events: keeps token counts and the stop reason
/// until `message_stop`.
#[derive(Default)]
pub struct AnthropicEventDecoder {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    stop_reason: Option<String>,
}

/// Anthropic's stop reasons in the words the other providers use.
fn finish_reason(stop_reason: Option<String>) -> String {
    match stop_reason.as_deref() {
        None | Some("end_turn") | Some("stop_sequence") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some(other) => other.into(),
    }
}

impl EventDecoder for AnthropicEventDecoder {
    fn event(&mut self, event: &Event, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError> {
        let parse = || {
            serde_json::from_str::<EventData>(&event.data).map_err(|e| {
                DecodeError::Upstream(format!("undecodable {} event: {e}", event.event))
            })
        };
        // The SSE event name says the type; servers that omit it still
        // put it in the data.
        let (kind, data) = if event.event == "message" {
            let data = parse()?;
            (data.kind.clone().unwrap_or_default(), Some(data))
        } else {
            (event.event.clone(), None)
        };
        match kind.as_str() {
            "message_start" => {
                let data = data.map_or_else(parse, Ok)?;
                if let Some(u) = data.message.and_then(|m| m.usage) {
                    self.input_tokens = u.input_tokens.or(self.input_tokens);
                    self.output_tokens = u.output_tokens.or(self.output_tokens);
                }
            }
            "content_block_delta" => {
                let data = data.map_or_else(parse, Ok)?;
                if let Some(delta) = data.delta
                    && delta.kind.as_deref() == Some("text_delta")
                    && let Some(text) = delta.text
                    && !text.is_empty()
                {
                    out.push_back(Chunk::Token(text));
                }
            }
            "message_delta" => {
                let data = data.map_or_else(parse, Ok)?;
                if let Some(reason) = data.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(u) = data.usage {
                    self.input_tokens = u.input_tokens.or(self.input_tokens);
                    self.output_tokens = u.output_tokens.or(self.output_tokens);
                }
            }
            "message_stop" => {
                let usage = (self.input_tokens.is_some() || self.output_tokens.is_some())
                    .then_some(Usage {
                        prompt_tokens: self.input_tokens,
                        completion_tokens: self.output_tokens,
                    });
                out.push_back(Chunk::Done {
                    finish_reason: finish_reason(self.stop_reason.take()),
                    usage,
                });
            }
            "error" => {
                let data = data.map_or_else(parse, Ok).unwrap_or_default();
                let (kind, message) = data
                    .error
                    .map(|e| (e.kind.unwrap_or_default(), e.message.unwrap_or_default()))
                    .unwrap_or_default();
                let detail = format!("error event: {kind}: {message}");
                return Err(if kind == "overloaded_error" {
                    DecodeError::Unavailable(detail)
                } else {
                    DecodeError::Upstream(detail)
                });
            }
            // ping, content_block_start/stop, and whatever is added later.
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut VecDeque<Chunk>) -> Result<(), DecodeError> {
        Err(DecodeError::Upstream(
            "stream ended before message_stop".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::decode_pieces;
    use super::*;

    /// A byte-exact Messages stream as the API sends it.
    const BODY: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-haiku-latest\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo \u{e9}\\n\"}}\n\n",
        "event: some_future_event\n",
        "data: {\"type\":\"some_future_event\",\"x\":1}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn want() -> Vec<Result<Chunk, String>> {
        vec![
            Ok(Chunk::Token("Hel".into())),
            Ok(Chunk::Token("lo é\n".into())),
            Ok(Chunk::Done {
                finish_reason: "length".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(25),
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
                AnthropicEventDecoder::default(),
            )
            .await;
            assert_eq!(got, want(), "split at byte {cut}");
        }
    }

    #[tokio::test]
    async fn error_event_mid_stream() {
        let body = concat!(
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let got = decode_pieces(vec![body.as_bytes()], AnthropicEventDecoder::default()).await;
        assert_eq!(got[0], Ok(Chunk::Token("a".into())));
        let err = got[1].as_ref().unwrap_err();
        assert!(
            err.contains("unreachable") && err.contains("Overloaded"),
            "{err}"
        );
        assert_eq!(got.len(), 2);
    }

    #[tokio::test]
    async fn events_without_names_use_the_data_type() {
        let body = concat!(
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let got = decode_pieces(vec![body.as_bytes()], AnthropicEventDecoder::default()).await;
        assert_eq!(got[0], Ok(Chunk::Token("a".into())));
        assert_eq!(
            got[1],
            Ok(Chunk::Done {
                finish_reason: "stop".into(),
                usage: None
            })
        );
    }
}
