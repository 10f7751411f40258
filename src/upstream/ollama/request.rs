//! The request body of Ollama's `POST /api/chat`, rendered from the
//! gateway's [`UpstreamRequest`].
//!
//! A message's images go as its `images` (base64; Ollama takes no image
//! URLs, so a request with one is refused before it is sent); an
//! assistant's tool calls as `tool_calls` with the arguments as an object;
//! a tool's result as a `tool` message naming the tool it answers. Tools
//! go as `tools` (`type: function`); reasoning as `think` (the effort's
//! word, which thinking models take; `true` without one). Sampling goes
//! in `options`.

use crate::error::ProviderError;
use crate::protocol::{ChatMessage, Role};
use crate::upstream::provider::UpstreamRequest;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Serialize)]
pub struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Options::is_empty")]
    options: Options,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think: Option<Value>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_name: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<String>,
}

impl Options {
    fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.num_predict.is_none() && self.stop.is_empty()
    }
}

/// What this format cannot carry.
#[derive(Debug)]
pub struct Unsendable(String);

impl Unsendable {
    pub fn into_error(self, provider: String) -> ProviderError {
        ProviderError::Rejected {
            provider,
            status: 400,
            detail: self.0,
        }
    }
}

impl<'a> ChatBody<'a> {
    pub fn of(r: &'a UpstreamRequest) -> Result<Self, Unsendable> {
        let messages = r
            .messages
            .iter()
            .map(|m| message(m, &r.messages))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            model: &r.model,
            messages,
            stream: true,
            options: Options {
                temperature: r.temperature,
                num_predict: r.max_tokens,
                stop: r.stop.clone(),
            },
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
            think: r.reasoning.as_ref().map(|x| match x.effort {
                Some(e) => json!(e.as_str()),
                None => json!(true),
            }),
        })
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

fn message<'a>(m: &'a ChatMessage, all: &'a [ChatMessage]) -> Result<Message<'a>, Unsendable> {
    let mut images = Vec::new();
    for image in m.content.images() {
        match &image.data {
            Some(data) => images.push(data.as_str()),
            None => {
                return Err(Unsendable(
                    "Ollama takes inline images only (data, not url)".into(),
                ));
            }
        }
    }
    let tool_calls = m
        .tool_calls
        .iter()
        .map(|c| {
            let arguments: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
            json!({ "function": { "name": c.name, "arguments": arguments } })
        })
        .collect();
    // Ollama matches a result to its call by the tool's name.
    let tool_name = m.tool_call_id.as_deref().and_then(|id| {
        all.iter()
            .flat_map(|x| &x.tool_calls)
            .find(|c| c.id == id)
            .map(|c| c.name.as_str())
    });
    Ok(Message {
        role: role(m.role),
        content: m.content.text().into_owned(),
        images,
        tool_calls,
        tool_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, Effort, Image, Part, ReasoningRequest, ToolCall, ToolSpec};

    #[test]
    fn images_tool_calls_and_results_render_as_ollama_takes_them() {
        let image = |data: Option<&str>, url: Option<&str>| ChatMessage {
            role: Role::User,
            content: Content::Parts(vec![
                Part::Text { text: "See".into() },
                Part::Image(Image {
                    media_type: Some("image/png".into()),
                    data: data.map(Into::into),
                    url: url.map(Into::into),
                }),
            ]),
            ..ChatMessage::default()
        };
        let mut request = UpstreamRequest {
            model: "llava".into(),
            messages: vec![
                image(Some("AAAA"), None),
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
                description: None,
                parameters: None,
            }],
            tool_choice: None,
            reasoning: Some(ReasoningRequest {
                effort: Some(Effort::Low),
                budget_tokens: None,
            }),
        };
        let body = serde_json::to_value(ChatBody::of(&request).unwrap()).unwrap();
        assert_eq!(body["messages"][0]["images"], json!(["AAAA"]));
        assert_eq!(body["messages"][0]["content"], "See");
        assert_eq!(
            body["messages"][1]["tool_calls"][0],
            json!({"function": {"name": "read_file", "arguments": {"path": "a.rs"}}})
        );
        assert_eq!(body["messages"][2]["tool_name"], "read_file");
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["think"], "low");
        request.messages[0] = image(None, Some("https://example.com/a.png"));
        assert!(ChatBody::of(&request).is_err(), "no image URLs");
    }
}
