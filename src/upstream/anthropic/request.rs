//! The request body of `POST /v1/messages`, rendered from the gateway's
//! [`UpstreamRequest`].
//!
//! The API takes no `system` role: system messages go to the top-level
//! `system`. Every other message becomes content blocks, and consecutive
//! messages of one side are merged (the API wants the roles to alternate;
//! a tool's result is a `tool_result` block of a *user* message). An
//! assistant message sends back its thinking first (a `thinking` block
//! with its signature, or a `redacted_thinking` block), as the API
//! requires within a tool loop, then its text and `tool_use` blocks (the
//! arguments parsed back into an object). `max_tokens` is required: the
//! provider's default fills in, raised past the thinking budget when
//! thinking is on (which also leaves the temperature out: the API takes
//! none with thinking).

use crate::protocol::{ChatMessage, Content, MessageReasoning, Part, Role, ToolChoice, ToolMode};
use crate::upstream::provider::UpstreamRequest;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Serialize)]
pub struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Message>,
    stream: bool,
    /// Anthropic takes 0.0..=1.0 (requests may ask up to 2.0): clamped.
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
}

#[derive(Serialize)]
struct Message {
    role: &'static str,
    /// Blocks; a lone text block goes as a plain string.
    #[serde(serialize_with = "blocks_or_text")]
    content: Vec<Value>,
}

fn blocks_or_text<S: serde::Serializer>(blocks: &[Value], s: S) -> Result<S::Ok, S::Error> {
    match blocks {
        [one] if one["type"] == "text" => one["text"].serialize(s),
        many => many.serialize(s),
    }
}

impl<'a> MessagesBody<'a> {
    pub fn of(r: &'a UpstreamRequest, max_tokens_default: u32) -> Self {
        let system: Vec<String> = r
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.text().into_owned())
            .collect();
        let budget = r.reasoning.as_ref().map(|x| x.budget());
        let max_tokens = r.max_tokens.unwrap_or(max_tokens_default);
        Self {
            model: &r.model,
            max_tokens: budget.map_or(max_tokens, |b| max_tokens.max(b + 1_024)),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: messages(&r.messages),
            stream: true,
            temperature: r
                .temperature
                .filter(|_| budget.is_none())
                .map(|t| t.clamp(0.0, 1.0)),
            stop_sequences: &r.stop,
            tools: r
                .tools
                .iter()
                .map(|t| {
                    let schema = t
                        .parameters
                        .clone()
                        .unwrap_or_else(|| json!({"type": "object"}));
                    json!({ "name": t.name, "description": t.description, "input_schema": schema })
                })
                .collect(),
            tool_choice: r.tool_choice.as_ref().map(tool_choice),
            thinking: budget.map(|b| json!({ "type": "enabled", "budget_tokens": b })),
        }
    }
}

/// The conversation as alternating user / assistant messages of blocks.
fn messages(all: &[ChatMessage]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for m in all.iter().filter(|m| m.role != Role::System) {
        let role = if m.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let blocks = blocks(m);
        match out.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => out.push(Message {
                role,
                content: blocks,
            }),
        }
    }
    out
}

fn blocks(m: &ChatMessage) -> Vec<Value> {
    let mut out = Vec::new();
    if m.role == Role::Tool {
        out.push(json!({ "type": "tool_result",
                         "tool_use_id": m.tool_call_id.as_deref().unwrap_or(""),
                         "content": m.content.text() }));
        return out;
    }
    if let Some(r) = &m.reasoning {
        out.extend(thinking(r));
    }
    match &m.content {
        Content::Parts(parts) => out.extend(parts.iter().map(|p| match p {
            Part::Text { text } => json!({ "type": "text", "text": text }),
            Part::Image(i) => match (&i.data, &i.url) {
                (Some(data), _) => json!({ "type": "image", "source": { "type": "base64",
                    "media_type": i.media_type.as_deref().unwrap_or("image/png"), "data": data } }),
                (None, url) => json!({ "type": "image", "source": { "type": "url", "url": url } }),
            },
        })),
        Content::Text(t) if !t.is_empty() => out.push(json!({ "type": "text", "text": t })),
        Content::Text(_) => {}
    }
    for call in &m.tool_calls {
        let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
        out.push(json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }));
    }
    out
}

/// The thinking an assistant message hands back, in Anthropic's blocks.
fn thinking(r: &MessageReasoning) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(signature) = &r.signature {
        let text = r.text.as_deref().unwrap_or("");
        out.push(json!({ "type": "thinking", "thinking": text, "signature": signature }));
    }
    if let Some(data) = &r.redacted {
        out.push(json!({ "type": "redacted_thinking", "data": data }));
    }
    out
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Mode(ToolMode::Auto) => json!({ "type": "auto" }),
        ToolChoice::Mode(ToolMode::None) => json!({ "type": "none" }),
        ToolChoice::Mode(ToolMode::Required) => json!({ "type": "any" }),
        ToolChoice::Named { name } => json!({ "type": "tool", "name": name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Image, ReasoningRequest, ToolCall, ToolSpec};

    #[test]
    fn a_tool_loop_renders_as_anthropic_takes_it() {
        let text = |role, t: &str| ChatMessage::text(role, t);
        let request = UpstreamRequest {
            model: "claude".into(),
            messages: vec![
                text(Role::System, "Be brief."),
                ChatMessage {
                    role: Role::User,
                    content: Content::Parts(vec![
                        Part::Text { text: "See".into() },
                        Part::Image(Image {
                            media_type: Some("image/jpeg".into()),
                            data: Some("AAAA".into()),
                            url: None,
                        }),
                    ]),
                    ..ChatMessage::default()
                },
                ChatMessage {
                    role: Role::Assistant,
                    content: "Reading.".into(),
                    tool_calls: vec![ToolCall {
                        id: "toolu_1".into(),
                        name: "read_file".into(),
                        arguments: "{\"path\":\"a.rs\"}".into(),
                    }],
                    reasoning: Some(MessageReasoning {
                        text: Some("I should read it.".into()),
                        signature: Some("sig".into()),
                        redacted: None,
                    }),
                    ..ChatMessage::default()
                },
                ChatMessage {
                    role: Role::Tool,
                    content: "fn main() {}".into(),
                    tool_call_id: Some("toolu_1".into()),
                    ..ChatMessage::default()
                },
                text(Role::User, "And now?"),
            ],
            temperature: Some(0.5),
            max_tokens: Some(100),
            stop: vec![],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: None,
                parameters: None,
            }],
            tool_choice: Some(ToolChoice::Mode(ToolMode::Required)),
            reasoning: Some(ReasoningRequest {
                effort: None,
                budget_tokens: Some(2_048),
            }),
        };
        let body = serde_json::to_value(MessagesBody::of(&request, 4_096)).unwrap();
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 3_072, "raised past the thinking budget");
        assert!(body.get("temperature").is_none(), "none with thinking");
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        let m = &body["messages"];
        assert_eq!(
            m.as_array().unwrap().len(),
            3,
            "the tool result and the prompt merge"
        );
        assert_eq!(m[0]["content"][1]["source"]["media_type"], "image/jpeg");
        assert_eq!(
            m[1]["content"],
            json!([
                {"type": "thinking", "thinking": "I should read it.", "signature": "sig"},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.rs"}}
            ])
        );
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(
            m[2]["content"][1],
            json!({"type": "text", "text": "And now?"})
        );
        let plain = UpstreamRequest {
            messages: vec![text(Role::User, "hi")],
            tools: vec![],
            tool_choice: None,
            reasoning: None,
            ..request
        };
        let body = serde_json::to_value(MessagesBody::of(&plain, 4_096)).unwrap();
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "hi"}]),
            "text alone is a string"
        );
    }
}
