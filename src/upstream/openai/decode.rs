//! Reading an OpenAI-compatible stream: each `data:` event is a
//! `chat.completion.chunk`, read into the gateway's deltas: thinking in
//! `delta.reasoning_content`, text in `delta.content`, pieces of tool calls
//! in `delta.tool_calls[i]` (by index, `id` and name on the first piece);
//! the finish reason in the chunk that ends the choice, then (with
//! `include_usage`) a chunk with empty `choices` and the `usage` (with its
//! reasoning and cached-prompt counts), then `data: [DONE]`, which is where
//! [`Chunk::Done`] is emitted. An `{"error":…}` object (as a body or as an
//! event) is an error. A body that ends after a finish reason but without
//! `[DONE]` still completes (some servers omit it); one that ends before a
//! finish reason is broken.

use crate::protocol::Usage;
use crate::upstream::http;
use crate::upstream::provider::Chunk;
use crate::upstream::sse::{DecodeError, EventDecoder};
use eventsource_stream::Event;
use serde::Deserialize;
use std::collections::VecDeque;

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
    /// DeepSeek, vLLM and llama.cpp's name for the thinking text;
    /// `reasoning` is what some other servers call it.
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallPiece>,
}

/// `delta.tool_calls[i]`: keyed by `index`; `id` and `function.name` only
/// on a call's first piece, `function.arguments` in pieces.
#[derive(Deserialize)]
struct ToolCallPiece {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionPiece>,
}

#[derive(Deserialize)]
struct FunctionPiece {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<UsageBody> for Usage {
    fn from(u: UsageBody) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
            cache_read_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
            ..Usage::default()
        }
    }
}

/// A choice's delta as the gateway's chunks: the thinking, the text, then
/// the tool-call pieces, in that order.
fn push_delta(delta: Delta, out: &mut VecDeque<Chunk>) {
    let some = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(r) = some(delta.reasoning_content) {
        out.push_back(Chunk::Reasoning(r));
    }
    if let Some(c) = some(delta.content) {
        out.push_back(Chunk::Token(c));
    }
    for piece in delta.tool_calls {
        let (name, arguments) = piece
            .function
            .map_or((None, None), |f| (f.name, f.arguments));
        out.push_back(Chunk::ToolCall {
            index: piece.index,
            id: piece.id,
            name,
            arguments: arguments.unwrap_or_default(),
        });
    }
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
            if let Some(delta) = choice.delta {
                push_delta(delta, out);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
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
    use super::*;
    use crate::upstream::sse::decode_pieces;

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

    /// Thinking, then two parallel tool calls whose arguments come in
    /// pieces (id and name on the first only), the finish reason
    /// `tool_calls`, and usage with its reasoning and cached counts.
    pub const TOOL_BODY: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"Look at \"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"both files\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"pa\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"list_dir\",\"arguments\":\"{\\\"dir\\\":\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\":\\\"a.rs\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"src\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":20,\"total_tokens\":50,\"prompt_tokens_details\":{\"cached_tokens\":12},\"completion_tokens_details\":{\"reasoning_tokens\":5}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn tool_want() -> Vec<Result<Chunk, String>> {
        let piece = |index, id: Option<&str>, name: Option<&str>, arguments: &str| {
            Ok(Chunk::ToolCall {
                index,
                id: id.map(Into::into),
                name: name.map(Into::into),
                arguments: arguments.into(),
            })
        };
        vec![
            Ok(Chunk::Reasoning("Look at ".into())),
            Ok(Chunk::Reasoning("both files".into())),
            piece(0, Some("call_a"), Some("read_file"), ""),
            piece(0, None, None, "{\"pa"),
            piece(1, Some("call_b"), Some("list_dir"), "{\"dir\":"),
            piece(0, None, None, "th\":\"a.rs\"}"),
            piece(1, None, None, "\"src\"}"),
            Ok(Chunk::Done {
                finish_reason: "tool_calls".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(30),
                    completion_tokens: Some(20),
                    reasoning_tokens: Some(5),
                    cache_read_tokens: Some(12),
                    ..Usage::default()
                }),
            }),
        ]
    }

    #[tokio::test]
    async fn tool_calls_and_reasoning_decode_the_same_at_every_split() {
        let bytes = TOOL_BODY.as_bytes();
        for cut in 0..=bytes.len() {
            let got = decode_pieces(
                vec![&bytes[..cut], &bytes[cut..]],
                OpenAiEventDecoder::default(),
            )
            .await;
            assert_eq!(got, tool_want(), "split at byte {cut}");
        }
    }
}
