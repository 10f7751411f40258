//! How the `/ai` door answers: a [`WireError`](crate::error::WireError) as
//! `ai:error` or as the `ai:stream` acknowledgement, and its own control
//! events, queued in the client's outbox so that they keep their place
//! among the client's events.

use crate::clients::Client;
use crate::error::GatewayError;
use crate::outbox::Control;
use crate::protocol::{AckError, ErrorEvent, StreamAck, event};
use serde::Serialize;
use serde_json::json;
use socketioxide::extract::AckSender;
use std::sync::Arc;

/// `err` as an `ai:error` event (`stream_id` added to its details when the
/// request named one).
pub fn error_event(err: &GatewayError, stream_id: Option<&str>) -> Option<Control> {
    let wire = err.wire();
    let mut details = wire.details;
    if let (Some(id), Some(map)) = (stream_id, details.as_object_mut()) {
        map.insert("streamId".into(), json!(id));
    }
    Control::new(
        event::ERROR,
        &ErrorEvent {
            code: wire.code,
            error: wire.message,
            details,
        },
    )
}

/// Queue `err` as `ai:error` (never for a live stream: those get
/// `ai:stream:error` from their task).
pub fn error(client: &Client, err: &GatewayError, stream_id: Option<&str>) {
    if let Some(c) = error_event(err, stream_id) {
        client.outbox.push_control(c);
    }
}

/// Queue a control event of the `/ai` door.
pub fn control(client: &Client, name: &'static str, payload: &impl Serialize) {
    if let Some(c) = Control::new(name, payload) {
        client.outbox.push_control(c);
    }
}

/// Answer an `ai:stream` acknowledgement with the stream id.
pub fn ack_ok(ack: AckSender, id: Arc<str>) {
    let _ = ack.send(&StreamAck {
        ok: true,
        stream_id: Some(id),
        error: None,
    });
}

/// Answer an `ai:stream` acknowledgement with `err` (its `details` too,
/// as `ai:error` has them: `retryAfterMs`, the fields, the limit).
pub fn ack_error(ack: AckSender, err: &GatewayError) {
    let wire = err.wire();
    let _ = ack.send(&StreamAck {
        ok: false,
        stream_id: None,
        error: Some(AckError {
            code: wire.code,
            message: wire.message,
            details: wire.details,
        }),
    });
}
