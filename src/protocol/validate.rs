//! Turning loose client JSON into typed, validated values, and saying
//! exactly which field broke which rule when that fails.
//!
//! Every door parses its payloads through [`parse_payload`] (serde for the
//! shape, `validator` for the ranges); a failure is an [`Invalid`]: every
//! broken field by its path in the payload (`messages[0].role`) and the rule
//! in words. [`FieldNames`] says how the path is spelt on the wire (camelCase
//! on `/ai`, as written in config keys). Nothing here knows any door.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

/// The size of `value` as JSON if it is at most `cap` bytes (`None`
/// otherwise), counted without building the text; stops once past `cap`.
pub fn serialized_size_within(value: &impl Serialize, cap: usize) -> Option<usize> {
    struct Count {
        n: usize,
        cap: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n = self.n.saturating_add(buf.len());
            if self.n > self.cap {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count { n: 0, cap };
    serde_json::to_writer(&mut count, value).ok()?;
    Some(count.n)
}

/// A field that broke a rule: what the error event names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

/// Every rule a payload broke (at least one); the first is the headline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl From<FieldError> for Invalid {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

/// Turn a loose `/ai` payload into a typed, validated request, naming
/// fields in camelCase.
///
/// Socket.IO lets a client send an event with no argument at all; that is
/// treated as an empty object so that the missing fields get named.
pub fn parse_payload<T: DeserializeOwned + Validate>(payload: Value) -> Result<T, Invalid> {
    parse_payload_as(payload, FieldNames::Camel)
}

/// [`parse_payload`], naming fields as `names` says.
pub fn parse_payload_as<T: DeserializeOwned + Validate>(
    payload: Value,
    names: FieldNames,
) -> Result<T, Invalid> {
    let payload = match payload {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(FieldError::new(
                "payload",
                format!("must be a JSON object (got {})", json_kind(&other)),
            )
            .into());
        }
    };
    let request: T = serde_path_error(payload, names)?;
    request
        .validate()
        .map_err(|e| validation_errors(e, names))?;
    Ok(request)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserialize, and on failure name the field by its path in the payload
/// (`prompt`, `messages[0].role`) with serde's own account of the rule.
fn serde_path_error<T: DeserializeOwned>(
    payload: Value,
    names: FieldNames,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(payload).map_err(|e| {
        let msg = e.inner().to_string();
        let path = e.path().to_string();
        if let Some(field) = between(&msg, "missing field `", "`") {
            let field = names.spell(field);
            let name = if path == "." {
                field
            } else {
                format!("{path}.{field}")
            };
            return FieldError::new(name, "is required");
        }
        let name = if path == "." {
            "payload".to_string()
        } else {
            path
        };
        FieldError::new(name, format!("must be valid: {msg}"))
    })
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// snake_case (validator's field names) to the wire's camelCase.
pub fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// How a field's name is spelt where the reader will look for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldNames {
    /// camelCase, as the `/ai` wire spells it.
    Camel,
    /// As the Rust field is named (snake_case): HTTP bodies, config keys.
    AsIs,
}

impl FieldNames {
    fn spell(self, name: &str) -> String {
        match self {
            Self::Camel => camel(name),
            Self::AsIs => name.to_string(),
        }
    }
}

/// Every rule `errors` reports, each with its full path, in a stable order.
pub fn validation_errors(errors: ValidationErrors, names: FieldNames) -> Invalid {
    let walk_names = names;
    fn walk(prefix: &str, errors: &ValidationErrors, names: FieldNames, out: &mut Vec<FieldError>) {
        let mut fields: Vec<_> = errors.errors().iter().collect();
        fields.sort_by_key(|(k, _)| k.to_string());
        for (field, kind) in fields {
            let name = if prefix.is_empty() {
                names.spell(field)
            } else {
                format!("{prefix}.{}", names.spell(field))
            };
            match kind {
                ValidationErrorsKind::Field(errs) => {
                    if let Some(err) = errs.first() {
                        let rule = err
                            .message
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| format!("breaks rule `{}`", err.code));
                        out.push(FieldError::new(name, rule));
                    }
                }
                ValidationErrorsKind::Struct(inner) => walk(&name, inner, names, out),
                ValidationErrorsKind::List(items) => {
                    let mut items: Vec<_> = items.iter().collect();
                    items.sort_by_key(|(i, _)| **i);
                    for (i, inner) in items {
                        walk(&format!("{name}[{i}]"), inner, names, out);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", &errors, walk_names, &mut out);
    if out.is_empty() {
        out.push(FieldError::new("payload", "is invalid"));
    }
    Invalid(out)
}
