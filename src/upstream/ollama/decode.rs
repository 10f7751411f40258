//! Reading Ollama's NDJSON lines into the gateway's deltas.
//!
//! Each line is one JSON object: `{"message":{"content":"…"},"done":false}`
//! for a piece of text, `message.thinking` for a piece of the model's
//! thinking, `message.tool_calls` for whole tool calls (Ollama sends each
//! call in one line, its arguments as an object: one piece each, numbered
//! in order over the stream, no id: the relay names them), a last line with
//! `"done":true`, `done_reason`, `prompt_eval_count` and `eval_count`, or
//! `{"error":"…"}`. Line framing is `upstream::ndjson`'s.

use crate::protocol::Usage;
use crate::upstream::ndjson::LineDecoder;
use crate::upstream::provider::Chunk;
use serde::Deserialize;
use serde_json::Value;
use std::collections::VecDeque;

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
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Vec<LineToolCall>,
}

#[derive(Deserialize)]
struct LineToolCall {
    function: LineFunction,
}

#[derive(Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// Ollama's reading of one NDJSON line, counting the tool calls seen.
#[derive(Default)]
pub struct OllamaLines {
    calls: u32,
}

impl LineDecoder for OllamaLines {
    /// A line with empty content (and no thinking or calls) carries
    /// nothing and adds nothing.
    fn line(&mut self, line: &str, out: &mut VecDeque<Chunk>) -> Result<(), String> {
        let parsed: Line =
            serde_json::from_str(line).map_err(|e| format!("undecodable line: {e}"))?;
        if let Some(error) = parsed.error {
            return Err(format!("error line: {error}"));
        }
        if let Some(m) = parsed.message {
            self.message(m, out);
        }
        if parsed.done {
            let usage = (parsed.prompt_eval_count.is_some() || parsed.eval_count.is_some())
                .then_some(Usage {
                    prompt_tokens: parsed.prompt_eval_count,
                    completion_tokens: parsed.eval_count,
                    ..Usage::default()
                });
            out.push_back(Chunk::Done {
                finish_reason: parsed.done_reason.unwrap_or_else(|| "stop".into()),
                usage,
            });
        }
        Ok(())
    }
}

impl OllamaLines {
    fn message(&mut self, m: LineMessage, out: &mut VecDeque<Chunk>) {
        if let Some(t) = m.thinking.filter(|t| !t.is_empty()) {
            out.push_back(Chunk::Reasoning(t));
        }
        if !m.content.is_empty() {
            out.push_back(Chunk::Token(m.content));
        }
        for call in m.tool_calls {
            let arguments = match call.function.arguments {
                Value::Null => "{}".to_string(),
                v => v.to_string(),
            };
            out.push_back(Chunk::ToolCall {
                index: self.calls,
                id: None,
                name: Some(call.function.name),
                arguments,
            });
            self.calls += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::ndjson::{MAX_LINE_BYTES, decode_pieces};

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
                    ..Usage::default()
                }),
            }),
        ];
        let body = BODY.as_bytes();
        for cut in 0..=body.len() {
            let got = decode_pieces(vec![&body[..cut], &body[cut..]], OllamaLines::default()).await;
            assert_eq!(got, want, "split at byte {cut}");
        }
    }

    #[tokio::test]
    async fn error_line_is_an_error() {
        let got = decode_pieces(
            vec![b"{\"error\":\"model 'x' not found\"}\n"],
            OllamaLines::default(),
        )
        .await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("not found")),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn endless_line_is_capped_and_a_body_without_done_is_broken() {
        let big = vec![b'a'; MAX_LINE_BYTES + 1];
        let got = decode_pieces(vec![&big], OllamaLines::default()).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("exceeded")),
            "{got:?}"
        );
        let line = b"{\"message\":{\"content\":\"x\"},\"done\":false}\n";
        let got = decode_pieces(vec![line], OllamaLines::default()).await;
        assert!(
            matches!(&got[..], [Ok(_), Err(e)] if e.contains("done line")),
            "{got:?}"
        );
    }

    /// Thinking, then two tool calls whole in one line (as Ollama sends
    /// them), then the done line.
    const TOOL_BODY: &str = concat!(
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Read \"},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"both.\"},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"read_file\",\"arguments\":{\"path\":\"a.rs\"}}},{\"function\":{\"name\":\"list_dir\",\"arguments\":{}}}]},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":9,\"eval_count\":4}\n",
    );

    #[tokio::test]
    async fn thinking_and_whole_tool_calls_decode_the_same_at_every_split() {
        let call = |index, name: &str, arguments: &str| {
            Ok(Chunk::ToolCall {
                index,
                id: None,
                name: Some(name.into()),
                arguments: arguments.into(),
            })
        };
        let want = vec![
            Ok(Chunk::Reasoning("Read ".into())),
            Ok(Chunk::Reasoning("both.".into())),
            call(0, "read_file", "{\"path\":\"a.rs\"}"),
            call(1, "list_dir", "{}"),
            Ok(Chunk::Done {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(9),
                    completion_tokens: Some(4),
                    ..Usage::default()
                }),
            }),
        ];
        let body = TOOL_BODY.as_bytes();
        for cut in 0..=body.len() {
            let got = decode_pieces(vec![&body[..cut], &body[cut..]], OllamaLines::default()).await;
            assert_eq!(got, want, "split at byte {cut}");
        }
    }
}
