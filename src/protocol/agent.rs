//! What agent frontends send and read beside text (PROTOCOL.md part 2,
//! "Agents' tools, reasoning, images, usage"): tool specs and the choice
//! among them, reasoning requests, message content with image parts,
//! assembled tool calls, the opaque reasoning data a provider wants back,
//! and the delta events for reasoning and tool-call arguments.
//!
//! Requests are read with serde and checked with `validator` plus
//! [`check_tools`] / [`check_content`] for the rules that need more than a
//! field (sizes, the base64 of an image, a choice naming a declared tool);
//! every broken rule names its field by its path. Plain data: nothing
//! here knows a provider's own format (the providers translate).

use super::validate::{FieldError, serialized_size_within};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::sync::Arc;
use validator::Validate;

/// At most this many tools per request.
pub const MAX_TOOLS: usize = 128;
/// A tool's `parameters` schema, serialized, at most this many bytes.
pub const MAX_TOOL_PARAMETERS_BYTES: usize = 64 * 1024;

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
pub struct ToolSpec {
    #[validate(custom(function = "validate_tool_name"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = 4096, message = "must be at most 4096 characters"))]
    pub description: Option<String>,
    /// A JSON Schema object for the call's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// Tool names as every provider accepts them: 1..=64 of `[A-Za-z0-9_-]`.
pub fn validate_tool_name(name: &str) -> Result<(), validator::ValidationError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(validator::ValidationError::new("tool_name")
            .with_message("must be 1..=64 characters of [A-Za-z0-9_-]".into()))
    }
}

/// Whether, and which, tool the model must call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"auto"`, `"none"` or `"required"`.
    Mode(ToolMode),
    /// `{ "name": "read_file" }`: that tool.
    Named { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolMode {
    Auto,
    None,
    Required,
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            name: String,
        }
        match Value::deserialize(d)? {
            Value::String(s) => serde_json::from_value(Value::String(s))
                .map(ToolChoice::Mode)
                .map_err(|_| serde::de::Error::custom("must be auto, none, required or { name }")),
            v @ Value::Object(_) => serde_json::from_value::<Named>(v)
                .map(|n| ToolChoice::Named { name: n.name })
                .map_err(|_| serde::de::Error::custom("must be auto, none, required or { name }")),
            _ => Err(serde::de::Error::custom(
                "must be auto, none, required or { name }",
            )),
        }
    }
}

/// How hard the model should think, where the provider can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningRequest {
    pub effort: Option<Effort>,
    /// A budget of thinking tokens (Anthropic takes at least 1024).
    #[validate(range(min = 1024, max = 131072, message = "must be between 1024 and 131072"))]
    #[serde(alias = "budget_tokens")]
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

impl ReasoningRequest {
    /// The thinking budget: the request's, or one that fits the effort.
    pub fn budget(&self) -> u32 {
        self.budget_tokens.unwrap_or(match self.effort {
            Some(Effort::Low) => 1_024,
            Some(Effort::High) => 16_384,
            _ => 4_096,
        })
    }
}

/// A whole tool call, as `ai:done.toolCalls` lists it and as an assistant
/// message of the conversation carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
pub struct ToolCall {
    #[validate(length(min = 1, max = 256, message = "must be 1..=256 characters"))]
    pub id: String,
    #[validate(custom(function = "validate_tool_name"))]
    pub name: String,
    /// The arguments, a JSON object as text.
    pub arguments: String,
}

/// The reasoning an assistant message carries back to its provider: the
/// thinking it streamed with its signature, or a redacted block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageReasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

/// A message's content: its text, or parts (text and images).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

impl Default for Content {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl From<String> for Content {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<&str> for Content {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self::Text(s)),
            Value::Null => Ok(Self::Text(String::new())),
            parts @ Value::Array(_) => serde_json::from_value(parts)
                .map(Self::Parts)
                .map_err(|e| D::Error::custom(format!("must be an array of parts: {e}"))),
            _ => Err(D::Error::custom(
                "must be a string or an array of parts (text, image)",
            )),
        }
    }
}

impl Content {
    /// The text parts, joined (what bounds, routing and text-only
    /// providers read).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Text(s) => s.as_str().into(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text } => Some(text.as_str()),
                    Part::Image(_) => None,
                })
                .collect::<String>()
                .into(),
        }
    }

    pub fn images(&self) -> impl Iterator<Item = &Image> {
        let parts: &[Part] = match self {
            Self::Parts(p) => p,
            Self::Text(_) => &[],
        };
        parts.iter().filter_map(|p| match p {
            Part::Image(i) => Some(i),
            Part::Text { .. } => None,
        })
    }

    pub fn has_images(&self) -> bool {
        self.images().next().is_some()
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    Text { text: String },
    Image(Image),
}

/// An image: inline base64 `data` with its `mediaType`, or a `url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "media_type")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The image media types every provider takes.
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

impl Image {
    /// A `data:` URL for providers that take images as URLs.
    pub fn as_url(&self) -> String {
        match (&self.url, &self.data) {
            (Some(url), _) => url.clone(),
            (None, Some(data)) => format!(
                "data:{};base64,{data}",
                self.media_type.as_deref().unwrap_or("image/png")
            ),
            (None, None) => String::new(),
        }
    }
}

/// The rules of one image, named at `field`.
fn check_image(image: &Image, field: &str) -> Result<(), FieldError> {
    match (&image.data, &image.url) {
        (Some(data), None) => {
            let media = image.media_type.as_deref().unwrap_or("");
            if !IMAGE_TYPES.contains(&media) {
                let rule = format!("must be one of {}", IMAGE_TYPES.join(", "));
                return Err(FieldError::new(format!("{field}.mediaType"), rule));
            }
            let base64 = data.len() % 4 == 0
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            if !base64 || data.is_empty() {
                return Err(FieldError::new(format!("{field}.data"), "must be base64"));
            }
            Ok(())
        }
        (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => Ok(()),
        (None, Some(_)) => Err(FieldError::new(
            format!("{field}.url"),
            "must be an http(s) URL",
        )),
        _ => Err(FieldError::new(
            field,
            "must have either data (with mediaType) or url",
        )),
    }
}

/// The rules of a message's content, named at `field` (`messages[3].content`).
pub fn check_content(content: &Content, field: &str) -> Result<(), FieldError> {
    if let Content::Parts(parts) = content {
        for (i, p) in parts.iter().enumerate() {
            if let Part::Image(image) = p {
                check_image(image, &format!("{field}[{i}]"))?;
            }
        }
    }
    Ok(())
}

/// The rules of `tools` and `toolChoice` together.
pub fn check_tools(tools: &[ToolSpec], choice: Option<&ToolChoice>) -> Result<(), FieldError> {
    if tools.len() > MAX_TOOLS {
        let rule = format!("must hold at most {MAX_TOOLS} tools (got {})", tools.len());
        return Err(FieldError::new("tools", rule));
    }
    for (i, t) in tools.iter().enumerate() {
        if let Some(p) = &t.parameters {
            if !p.is_object() {
                return Err(FieldError::new(
                    format!("tools[{i}].parameters"),
                    "must be a JSON Schema object",
                ));
            }
            if serialized_size_within(p, MAX_TOOL_PARAMETERS_BYTES).is_none() {
                let rule = format!("must be at most {MAX_TOOL_PARAMETERS_BYTES} bytes serialized");
                return Err(FieldError::new(format!("tools[{i}].parameters"), rule));
            }
        }
        if tools[..i].iter().any(|other| other.name == t.name) {
            return Err(FieldError::new(
                format!("tools[{i}].name"),
                "must be unique among tools",
            ));
        }
    }
    match choice {
        Some(ToolChoice::Named { name }) if !tools.iter().any(|t| &t.name == name) => {
            Err(FieldError::new("toolChoice.name", "must name one of tools"))
        }
        Some(ToolChoice::Mode(ToolMode::Required)) if tools.is_empty() => {
            Err(FieldError::new("toolChoice", "required needs tools"))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Server -> client

/// `ai:reasoning`: a piece of the model's thinking.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningDelta {
    pub stream_id: Arc<str>,
    pub data: String,
    pub token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<super::ai::TokenMetadata>,
}

/// `ai:tool_call`: a piece of the JSON argument text of call `index`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallDelta {
    pub stream_id: Arc<str>,
    pub index: u32,
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub arguments_delta: String,
    pub token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<super::ai::TokenMetadata>,
}

/// `ai:done.reasoning`: opaque data the provider returned that must be
/// sent back with the next turn (passed through unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

impl ReasoningData {
    pub fn is_empty(&self) -> bool {
        self.signature.is_none() && self.redacted.is_none()
    }
}
