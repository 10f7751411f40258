//! OpenAI's chat-completions body as the engine's [`StreamRequest`].
//!
//! `model` picks the route: `"<provider>/<model>"` (a configured
//! provider), `"agent:<name>"`, `"streamgate/auto"` (the orchestrator
//! decides), or a bare model name for the default provider. The last user
//! message is the prompt (kept among the messages when it has images);
//! before it, the conversation: `system`/`developer`, `user` (text and
//! `image_url` parts, `data:` URLs read back into inline images),
//! `assistant` (with its `tool_calls`) and `tool` (with its
//! `tool_call_id`). Tools, the tool choice and the reasoning effort carry
//! over; every rule broken is named by the field OpenAI's clients know.

use super::completions::api_error;
use crate::app::App;
use crate::error::GatewayError;
use crate::http::error::ApiError;
use crate::protocol::openai::{ChatCompletionRequest, Content as OaContent, Message};
use crate::protocol::validate::{FieldNames, validation_errors};
use crate::protocol::{
    ChatMessage, Content, FieldError, Image, Invalid, Part, ReasoningRequest, Role, StreamRequest,
    ToolCall, ToolChoice, ToolMode, ToolSpec,
};
use serde_json::Value;
use validator::Validate;

/// The engine's request for an OpenAI body.
pub fn stream_request(app: &App, req: ChatCompletionRequest) -> Result<StreamRequest, ApiError> {
    let invalid = |e: Invalid| api_error(&GatewayError::InvalidRequest(e));
    let mut messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.into()))?;
    let prompt = prompt_of(&mut messages).map_err(|e| invalid(e.into()))?;
    let mut out = StreamRequest {
        prompt_in_messages: prompt.is_none()
            && messages.last().is_some_and(|m| m.role == Role::User),
        prompt,
        messages,
        temperature: req.temperature,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop: req.stop.map(|s| s.into_vec()).unwrap_or_default(),
        tools: req
            .tools
            .into_iter()
            .map(|t| ToolSpec {
                name: t.function.name,
                description: t.function.description,
                parameters: t.function.parameters,
            })
            .collect(),
        tool_choice: req
            .tool_choice
            .map(tool_choice)
            .transpose()
            .map_err(|e| invalid(e.into()))?,
        reasoning: req.reasoning_effort.map(|effort| ReasoningRequest {
            effort: Some(effort),
            budget_tokens: None,
        }),
        use_orchestrator: Some(false),
        ..StreamRequest::default()
    };
    out.validate()
        .map_err(|e| invalid(validation_errors(e, FieldNames::AsIs)))?;
    route(app, req.model, &mut out);
    Ok(out)
}

/// The route `model` names.
fn route(app: &App, model: String, out: &mut StreamRequest) {
    if model == "streamgate/auto" {
        out.use_orchestrator = Some(true);
    } else if let Some(agent) = model.strip_prefix("agent:") {
        out.agent = Some(agent.to_string());
    } else if let Some((provider, m)) = model.split_once('/')
        && app.providers.get(provider).is_some()
    {
        out.provider = Some(provider.to_string());
        out.model = Some(m.to_string());
    } else {
        // A bare name (which may itself hold a '/'): the default provider.
        out.model = Some(model);
    }
}

/// The prompt: the last message, a user's text; `None` when the
/// conversation ends with tool results or with a user message holding
/// images (which then stays among the messages).
fn prompt_of(messages: &mut Vec<ChatMessage>) -> Result<Option<String>, FieldError> {
    match messages.last() {
        None => Err(FieldError::new(
            "messages",
            "must hold at least one message",
        )),
        Some(m) if m.role == Role::Tool => Ok(None),
        Some(m) if m.role == Role::User && m.content.has_images() => Ok(None),
        Some(m) if m.role == Role::User => {
            Ok(messages.pop().map(|m| m.content.text().into_owned()))
        }
        Some(_) => Err(FieldError::new(
            "messages",
            "must end with a user message or tool results",
        )),
    }
}

fn message(m: Message, i: usize) -> Result<ChatMessage, FieldError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            let rule =
                format!("must be system, developer, user, assistant or tool (got {other:?})");
            return Err(FieldError::new(format!("messages[{i}].role"), rule));
        }
    };
    Ok(ChatMessage {
        role,
        content: content(m.content, i)?,
        tool_calls: m
            .tool_calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
        reasoning: None,
    })
}

/// A message's content: a string, or text and `image_url` parts.
fn content(content: Option<OaContent>, i: usize) -> Result<Content, FieldError> {
    let parts = match content {
        None => return Ok(Content::default()),
        Some(OaContent::Text(s)) => return Ok(Content::Text(s)),
        Some(OaContent::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        match (p.kind.as_str(), p.text, p.image_url) {
            ("text", Some(text), _) => out.push(Part::Text { text }),
            ("image_url", _, Some(image)) => out.push(Part::Image(image_of(image.url))),
            (kind, _, _) => {
                let field = format!("messages[{i}].content[{j}]");
                let rule =
                    format!("must be a text part with text or an image_url part (got {kind:?})");
                return Err(FieldError::new(field, rule));
            }
        }
    }
    Ok(Content::Parts(out))
}

/// An `image_url`: a `data:` URL read back into inline base64, or a URL.
fn image_of(url: String) -> Image {
    let inline = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"));
    match inline {
        Some((media_type, data)) => Image {
            media_type: Some(media_type.to_string()),
            data: Some(data.to_string()),
            url: None,
        },
        None => Image {
            media_type: None,
            data: None,
            url: Some(url),
        },
    }
}

/// OpenAI's `tool_choice`.
fn tool_choice(v: Value) -> Result<ToolChoice, FieldError> {
    let bad = || FieldError::new("tool_choice", "must be auto, none, required or a function");
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Mode(ToolMode::Auto)),
            "none" => Ok(ToolChoice::Mode(ToolMode::None)),
            "required" => Ok(ToolChoice::Mode(ToolMode::Required)),
            _ => Err(bad()),
        },
        v => v["function"]["name"]
            .as_str()
            .map(|name| ToolChoice::Named {
                name: name.to_string(),
            })
            .ok_or_else(bad),
    }
}
