//! The default namespace's renderer: the [`Render`] the Socket.IO writer
//! emits through on `/`, one per connection.
//!
//! Control events (greetings, refusals, aliases) were rendered by the
//! handler that queued them and go out as they are; backpressure notices
//! are not part of these designs and say nothing (the policy still
//! applies). A stream event is said by the [`Voice`] of the dialect that
//! started the stream: at the stream's start the renderer takes its
//! [`Origin`](super::live::Origin) from the connection's [`LiveStreams`]
//! and keeps what the dialects repeat later (who served, the text so far);
//! at its last event it forgets the stream in both places. [`say`] is the
//! one match on the engine's stream events. State changes only after an
//! emit went out, since a refused item comes back.

use super::chat::{ChatStreamVoice, ChatVoice};
use super::live::{Dialect, LiveStreams};
use super::llm::LlmVoice;
use super::voice::{Out, Spoken, Voice};
use crate::outbox::{ClientOutbox, Outbound, StreamEvent};
use crate::protocol::CancelReason;
use crate::socket::Render;
use socketioxide::SendError;
use socketioxide::extract::SocketRef;
use std::collections::HashMap;
use std::sync::Arc;

pub struct DialectRender {
    live: LiveStreams,
    streams: HashMap<Arc<str>, Spoken>,
    outbox: Arc<ClientOutbox>,
}

impl DialectRender {
    pub fn new(live: LiveStreams, outbox: Arc<ClientOutbox>) -> Self {
        Self {
            live,
            streams: HashMap::new(),
            outbox,
        }
    }

    fn stream_event(&mut self, socket: &SocketRef, e: &StreamEvent) -> Result<(), SendError> {
        let id = e.stream_id();
        if let StreamEvent::Start(s) = e {
            let Some(origin) = self.live.get(id) else {
                tracing::warn!(stream = %id, "a stream no dialect started; not rendered");
                return Ok(());
            };
            let stream = Spoken::new(origin, s);
            let out = Out {
                socket,
                stream: &stream,
                outbox: &self.outbox,
            };
            say(&out, e)?;
            self.streams.insert(id.clone(), stream);
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(id) else {
            return Ok(());
        };
        let out = Out {
            socket,
            stream,
            outbox: &self.outbox,
        };
        say(&out, e)?;
        if let StreamEvent::Token(t) = e {
            stream.text.push_str(&t.data);
        } else if e.is_terminal() {
            self.streams.remove(id);
            self.live.remove(id);
        }
        Ok(())
    }
}

impl Render for DialectRender {
    fn emit(&mut self, socket: &SocketRef, item: &Outbound) -> Result<(), SendError> {
        match item {
            Outbound::Control(c) => socket.emit(c.event, &*c.payload),
            Outbound::Notice(_) => Ok(()),
            Outbound::Stream(e) => self.stream_event(socket, e),
        }
    }
}

fn voice_of(dialect: Dialect) -> &'static dyn Voice {
    match dialect {
        Dialect::Llm => &LlmVoice,
        Dialect::Chat => &ChatVoice,
        Dialect::ChatStream => &ChatStreamVoice,
    }
}

/// Which moment of its stream `e` is, said in the stream's dialect.
fn say(out: &Out, e: &StreamEvent) -> Result<(), SendError> {
    let voice = voice_of(out.stream.origin.dialect);
    match e {
        StreamEvent::Start(s) => voice.start(out, s),
        StreamEvent::Token(t) => voice.token(out, t),
        // These designs have no events for thinking or tool calls.
        StreamEvent::Reasoning(_) | StreamEvent::ToolCall(_) | StreamEvent::Complete(_) => Ok(()),
        StreamEvent::Done(d) => voice.done(out, d),
        StreamEvent::Cancelled(c) if c.reason == CancelReason::Client => voice.cancelled(out, c),
        StreamEvent::Cancelled(c) => voice.failed(out, stopped_because(c.reason)),
        StreamEvent::Failed(f) => voice.failed(out, &f.error),
    }
}

/// A cancel the client did not ask for, as these designs' error sentence.
fn stopped_because(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Client => "the stream was cancelled",
        CancelReason::Timeout => "the stream ran past the server's time limit and was stopped",
        CancelReason::Disconnect => "the connection was lost; the stream was stopped",
        CancelReason::Shutdown => "the server is shutting down; the stream was stopped",
        CancelReason::ClientTooSlow => {
            "this client read too slowly for too long; the stream was stopped"
        }
    }
}
