//! The request body of `POST /chat/completions`, rendered from the
//! gateway's [`UpstreamRequest`].
//!
//! Messages keep their roles; content is a string, or parts with
//! `image_url` (a `data:` URL for inline images) when a message has images;
//! an assistant's tool calls go as `tool_calls` (`type: function`), a tool's
//! result as a `tool` message with its `tool_call_id`. Tools go as
//! `tools` (`type: function`), the choice as `tool_choice`, the reasoning
//! effort as `reasoning_effort`. `max_tokens`, not the newer
//! `max_completion_tokens`: every compatible server accepts it.

use crate::protocol::{ChatMessage, Content, Part, Role, ToolChoice, ToolMode};
use crate::upstream::provider::UpstreamRequest;
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;

#[derive(Serialize)]
pub struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

impl<'a> ChatBody<'a> {
    pub fn of(r: &'a UpstreamRequest) -> Self {
        Self {
            model: &r.model,
            messages: r.messages.iter().map(message).collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            temperature: r.temperature,
            max_tokens: r.max_tokens,
            stop: &r.stop,
            tools: r
                .tools
                .iter()
                .map(|t| {
                    let parameters = t
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object"}));
                    json!({ "type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": parameters } })
                })
                .collect(),
            tool_choice: r.tool_choice.as_ref().map(tool_choice),
            reasoning_effort: r
                .reasoning
                .as_ref()
                .and_then(|x| x.effort)
                .map(|e| e.as_str()),
        }
    }
}

fn role(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn message(m: &ChatMessage) -> Message<'_> {
    let content = match &m.content {
        Content::Parts(parts) if m.content.has_images() => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    Part::Text { text } => json!({ "type": "text", "text": text }),
                    Part::Image(i) => {
                        json!({ "type": "image_url", "image_url": { "url": i.as_url() } })
                    }
                })
                .collect(),
        ),
        c => {
            let text: Cow<str> = c.text();
            if text.is_empty() && !m.tool_calls.is_empty() {
                Value::Null
            } else {
                Value::String(text.into_owned())
            }
        }
    };
    Message {
        role: role(m.role),
        content,
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| {
                json!({ "id": c.id, "type": "function",
                             "function": { "name": c.name, "arguments": c.arguments } })
            })
            .collect(),
        tool_call_id: m.tool_call_id.as_deref(),
    }
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Mode(ToolMode::Auto) => json!("auto"),
        ToolChoice::Mode(ToolMode::None) => json!("none"),
        ToolChoice::Mode(ToolMode::Required) => json!("required"),
        ToolChoice::Named { name } => json!({ "type": "function", "function": { "name": name } }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Effort, Image, ReasoningRequest, ToolCall, ToolSpec};

    #[test]
    fn an_agent_loop_renders_as_openai_takes_it() {
        let request = UpstreamRequest {
            model: "m".into(),
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    content: Content::Parts(vec![
                        Part::Text {
                            text: "What is this?".into(),
                        },
                        Part::Image(Image {
                            media_type: Some("image/png".into()),
                            data: Some("iVBORw0KGgo=".into()),
                            url: None,
                        }),
                    ]),
                    ..ChatMessage::default()
                },
                ChatMessage {
                    role: Role::Assistant,
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "read_file".into(),
                        arguments: "{\"path\":\"a.rs\"}".into(),
                    }],
                    ..ChatMessage::default()
                },
                ChatMessage {
                    role: Role::Tool,
                    content: "fn main() {}".into(),
                    tool_call_id: Some("call_1".into()),
                    ..ChatMessage::default()
                },
            ],
            temperature: None,
            max_tokens: None,
            stop: vec![],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: Some("Read a file".into()),
                parameters: Some(
                    json!({"type": "object", "properties": {"path": {"type": "string"}}}),
                ),
            }],
            tool_choice: Some(ToolChoice::Named {
                name: "read_file".into(),
            }),
            reasoning: Some(ReasoningRequest {
                effort: Some(Effort::High),
                budget_tokens: None,
            }),
        };
        let body = serde_json::to_value(ChatBody::of(&request)).unwrap();
        assert_eq!(
            body["messages"][0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
        );
        assert_eq!(body["messages"][1]["content"], Value::Null);
        assert_eq!(
            body["messages"][1]["tool_calls"][0],
            json!({"id": "call_1", "type": "function",
                   "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "tool", "content": "fn main() {}", "tool_call_id": "call_1"})
        );
        assert_eq!(body["tools"][0]["function"]["name"], "read_file");
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "function": {"name": "read_file"}})
        );
        assert_eq!(body["reasoning_effort"], "high");
    }
}
