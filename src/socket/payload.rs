//! Reading an event's payload as socketioxide hands it over.
//!
//! A Socket.IO event carries any number of arguments (`["ai:stream"]`,
//! `["ai:stream", {…}]`). [`EventArg`] takes the first one if there is one,
//! so that an event sent with no argument at all is an empty payload whose
//! missing fields get named, and a payload socketioxide could not read as
//! JSON at all (a lone UTF-16 surrogate, nesting past serde_json's depth
//! limit) is named as such: no error text of the library is matched.

use crate::protocol::{FieldError, Invalid, parse_payload};
use serde::de::DeserializeOwned;
use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use socketioxide::ParserError;
use validator::Validate;

/// The first argument of an event, if it has any.
pub struct EventArg(pub Option<Value>);

impl<'de> Deserialize<'de> for EventArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = EventArg;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the arguments of an event")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventArg, A::Error> {
                let first = seq.next_element::<Value>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventArg(first))
            }
        }
        // A tuple, so that socketioxide hands over every argument (none
        // included) rather than insisting on a first one.
        d.deserialize_tuple(1, Args)
    }
}

/// The payload as JSON (`Null` when the event had no argument).
pub fn raw(arg: Result<EventArg, ParserError>) -> Result<Value, Invalid> {
    match arg {
        Ok(EventArg(v)) => Ok(v.unwrap_or(Value::Null)),
        Err(e) => {
            tracing::debug!(error = %e, "unreadable payload");
            Err(FieldError::new(
                "payload",
                "must be valid JSON (no lone UTF-16 surrogates, at most 128 levels deep)",
            )
            .into())
        }
    }
}

/// The payload as a typed, validated request.
pub fn decode<T: DeserializeOwned + Validate>(
    arg: Result<EventArg, ParserError>,
) -> Result<T, Invalid> {
    parse_payload(raw(arg)?)
}
