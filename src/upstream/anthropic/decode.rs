//! Reading a Messages event stream into the gateway's deltas.
//!
//! `message_start` carries the prompt's token counts (with the cache's);
//! each `content_block_start` says what its block is (text, thinking,
//! redacted thinking, tool use with its id and name); `content_block_delta`
//! carries a piece of it (`text_delta` as text, `thinking_delta` as
//! reasoning, `input_json_delta` as a piece of the tool call's arguments,
//! `signature_delta` as the reasoning data to hand back); a tool-use block
//! that ends with no input gave `{}`. `message_delta` has the stop reason
//! and the output count; `message_stop` is where [`Chunk::Done`] is
//! emitted. Stop reasons are reported in the gateway's words: `end_turn`
//! and `stop_sequence` as `stop`, `max_tokens` as `length`, `tool_use` as
//! `tool_calls`. `ping` and unknown events are ignored; an `error` event
//! ends the stream (`overloaded_error` as unavailable, so before the first
//! token the next provider may serve).

use crate::protocol::{ReasoningData, Usage};
use crate::upstream::provider::Chunk;
use crate::upstream::sse::{DecodeError, EventDecoder};
use eventsource_stream::Event;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

/// The `data` of every event we read; fields absent from an event type
/// stay `None`.
#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(default)]
    content_block: Option<Block>,
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
struct Block {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct DeltaBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A tool-use block being streamed: its call's index among the tool
/// calls, and whether any of its input came.
struct ToolBlock {
    call: u32,
    id: String,
    name: String,
    any_input: bool,
}

/// One Messages stream's events: the blocks open now, token counts and
/// the stop reason until `message_stop`.
#[derive(Default)]
pub struct AnthropicEventDecoder {
    usage: Usage,
    stop_reason: Option<String>,
    /// Tool-use blocks by content-block index.
    tools: HashMap<u32, ToolBlock>,
    calls: u32,
}

/// Anthropic's stop reasons in the words the other providers use.
fn finish_reason(stop_reason: Option<String>) -> String {
    match stop_reason.as_deref() {
        None | Some("end_turn") | Some("stop_sequence") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some(other) => other.into(),
    }
}

impl AnthropicEventDecoder {
    fn count(&mut self, u: UsageBody) {
        let usage = &mut self.usage;
        usage.prompt_tokens = u.input_tokens.or(usage.prompt_tokens);
        usage.completion_tokens = u.output_tokens.or(usage.completion_tokens);
        usage.cache_read_tokens = u.cache_read_input_tokens.or(usage.cache_read_tokens);
        usage.cache_write_tokens = u.cache_creation_input_tokens.or(usage.cache_write_tokens);
    }

    fn block_start(&mut self, index: u32, block: Block, out: &mut VecDeque<Chunk>) {
        match block.kind.as_str() {
            "tool_use" => {
                let call = self.calls;
                self.calls += 1;
                let (id, name) = (block.id.unwrap_or_default(), block.name.unwrap_or_default());
                self.tools.insert(
                    index,
                    ToolBlock {
                        call,
                        id,
                        name,
                        any_input: false,
                    },
                );
            }
            "redacted_thinking" => out.push_back(Chunk::ReasoningData(ReasoningData {
                signature: None,
                redacted: block.data,
            })),
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u32, delta: DeltaBody, out: &mut VecDeque<Chunk>) {
        let some = |s: Option<String>| s.filter(|s| !s.is_empty());
        match delta.kind.as_deref() {
            Some("text_delta") => out.extend(some(delta.text).map(Chunk::Token)),
            Some("thinking_delta") => out.extend(some(delta.thinking).map(Chunk::Reasoning)),
            Some("signature_delta") => out.extend(some(delta.signature).map(|s| {
                Chunk::ReasoningData(ReasoningData {
                    signature: Some(s),
                    redacted: None,
                })
            })),
            Some("input_json_delta") => {
                if let (Some(t), Some(json)) =
                    (self.tools.get_mut(&index), some(delta.partial_json))
                {
                    t.any_input = true;
                    out.push_back(tool_piece(t, json));
                }
            }
            _ => {}
        }
    }

    /// A tool-use block that ended with no input called with `{}`.
    fn block_stop(&mut self, index: u32, out: &mut VecDeque<Chunk>) {
        if let Some(t) = self.tools.remove(&index)
            && !t.any_input
        {
            out.push_back(tool_piece(&t, "{}".into()));
        }
    }
}

fn tool_piece(t: &ToolBlock, arguments: String) -> Chunk {
    Chunk::ToolCall {
        index: t.call,
        id: Some(t.id.clone()),
        name: Some(t.name.clone()),
        arguments,
    }
}

impl EventDecoder for AnthropicEventDecoder {
    fn event(&mut self, event: &Event, out: &mut VecDeque<Chunk>) -> Result<(), DecodeError> {
        let data = serde_json::from_str::<EventData>(&event.data)
            .map_err(|e| DecodeError::Upstream(format!("undecodable {} event: {e}", event.event)));
        // The SSE event name says the type; servers that omit it still
        // put it in the data.
        let kind = if event.event == "message" {
            data.as_ref()
                .ok()
                .and_then(|d| d.kind.clone())
                .unwrap_or_default()
        } else {
            event.event.clone()
        };
        let index = data.as_ref().ok().and_then(|d| d.index).unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                if let Some(u) = data?.message.and_then(|m| m.usage) {
                    self.count(u);
                }
            }
            "content_block_start" => {
                if let Some(block) = data?.content_block {
                    self.block_start(index, block, out);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = data?.delta {
                    self.block_delta(index, delta, out);
                }
            }
            "content_block_stop" => self.block_stop(index, out),
            "message_delta" => {
                let data = data?;
                if let Some(reason) = data.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(u) = data.usage {
                    self.count(u);
                }
            }
            "message_stop" => {
                let usage = std::mem::take(&mut self.usage);
                let counted = usage.prompt_tokens.is_some() || usage.completion_tokens.is_some();
                out.push_back(Chunk::Done {
                    finish_reason: finish_reason(self.stop_reason.take()),
                    usage: counted.then_some(usage),
                });
            }
            "error" => {
                let (kind, message) = data
                    .unwrap_or_default()
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
            // ping, and whatever is added later.
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
    use super::*;
    use crate::upstream::sse::decode_pieces;

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
                    ..Usage::default()
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

    /// Thinking with its signature, a redacted block, text, then two
    /// tool_use blocks whose input comes in pieces (one with none), the
    /// stop reason `tool_use`, and usage with the cache counts.
    const TOOL_BODY: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"usage\":{\"input_tokens\":40,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Read \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"it.\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"EmwKAhgB\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me look.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"read_file\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"path\\\": \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"a.rs\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":4,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"list_dir\",\"input\":{}}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":4}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":55}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn tool_want() -> Vec<Result<Chunk, String>> {
        let piece = |index, id: &str, name: &str, arguments: &str| {
            Ok(Chunk::ToolCall {
                index,
                id: Some(id.into()),
                name: Some(name.into()),
                arguments: arguments.into(),
            })
        };
        vec![
            Ok(Chunk::Reasoning("Read ".into())),
            Ok(Chunk::Reasoning("it.".into())),
            Ok(Chunk::ReasoningData(ReasoningData {
                signature: Some("EqQBCgIYAhIM".into()),
                redacted: None,
            })),
            Ok(Chunk::ReasoningData(ReasoningData {
                signature: None,
                redacted: Some("EmwKAhgB".into()),
            })),
            Ok(Chunk::Token("Let me look.".into())),
            piece(0, "toolu_a", "read_file", "{\"path\": "),
            piece(0, "toolu_a", "read_file", "\"a.rs\"}"),
            piece(1, "toolu_b", "list_dir", "{}"),
            Ok(Chunk::Done {
                finish_reason: "tool_calls".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(40),
                    completion_tokens: Some(55),
                    cache_read_tokens: Some(100),
                    cache_write_tokens: Some(7),
                    ..Usage::default()
                }),
            }),
        ]
    }

    #[tokio::test]
    async fn tool_use_thinking_and_cache_usage_decode_the_same_at_every_split() {
        let bytes = TOOL_BODY.as_bytes();
        for cut in 0..=bytes.len() {
            let got = decode_pieces(
                vec![&bytes[..cut], &bytes[cut..]],
                AnthropicEventDecoder::default(),
            )
            .await;
            assert_eq!(got, tool_want(), "split at byte {cut}");
        }
    }
}
