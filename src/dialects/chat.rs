//! The `chat_*` dialect of the Flask-SocketIO chat designs (PROTOCOL.md
//! part 3): `chat_message` in, `chat_chunk` per piece of text and
//! `chat_complete` at the end; and the REST + SSE report's WebSocket
//! handler on the same names' pattern, `chat_stream` in, `chat_token` and
//! `chat_done` out. Both take `cancel_message`, and fail with `chat_error`
//! (also emitted as `error`).
//!
//! A message is routed by the orchestrator, as `ai:stream` with its
//! defaults; its `session_id` (a number is taken as its decimal string)
//! names the gateway's session, which holds the conversation (one live
//! stream per session: `session busy`), and is echoed as it was sent. A
//! stream the client cancelled ends as it completes, with what it said so
//! far (these designs have no cancelled event); any other cancel is a
//! `chat_error`.

use super::door::{Conn, echo_of};
use super::live::{Dialect, Origin};
use super::voice::{Out, Voice};
use crate::app::App;
use crate::error::GatewayError;
use crate::guard;
use crate::outbox::Control;
use crate::protocol::dialects::{
    CancelMessageRequest, ChatChunk, ChatComplete, ChatDone, ChatError, ChatMessageRequest,
    ChatToken, ErrorAlias, event,
};
use crate::protocol::sse::tokens_per_second;
use crate::protocol::validate::{FieldNames, parse_payload_as};
use crate::protocol::{Done, StreamCancelled, Token, now_ms};
use crate::socket::payload::{self, EventArg};
use serde_json::Value;
use socketioxide::SendError;
use socketioxide::extract::{SocketRef, State, TryData};
use std::sync::Arc;

/// The streams `cancel_message` may cancel.
const CHAT_DIALECTS: [Dialect; 2] = [Dialect::Chat, Dialect::ChatStream];

pub fn register(socket: &SocketRef) {
    socket.on(event::CHAT_MESSAGE, on_message);
    socket.on(event::CHAT_STREAM, on_stream);
    socket.on(event::CANCEL_MESSAGE, on_cancel);
}

async fn on_message(socket: SocketRef, app: State<Arc<App>>, arg: TryData<EventArg>) {
    start(socket, app, arg, Dialect::Chat).await;
}

async fn on_stream(socket: SocketRef, app: State<Arc<App>>, arg: TryData<EventArg>) {
    start(socket, app, arg, Dialect::ChatStream).await;
}

/// Start the stream a `chat_message` / `chat_stream` asks for.
async fn start(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    TryData(arg): TryData<EventArg>,
    dialect: Dialect,
) {
    let Some(conn) = Conn::of(&socket) else {
        return;
    };
    let raw = payload::raw(arg);
    let echo = echo_of(&raw, "session_id");
    if let Err(tell) = conn.spend() {
        if let Some(e) = tell {
            refuse(&conn, &echo, &e);
        }
        return;
    }
    let what = match dialect {
        Dialect::ChatStream => event::CHAT_STREAM,
        _ => event::CHAT_MESSAGE,
    };
    let started = guard::catch_async(what, async {
        let req: ChatMessageRequest = parse_payload_as(raw?, FieldNames::AsIs)?;
        let origin = Origin {
            dialect,
            echo: echo.clone(),
            key: req.session_id.as_ref().map(|id| id.text.clone()),
        };
        conn.admit(&app, origin, req.into_stream_request(), "message")
            .await
    })
    .await;
    if let Err(e) = started {
        refuse(&conn, &echo, &e);
    }
}

async fn on_cancel(socket: SocketRef, TryData(arg): TryData<EventArg>) {
    let Some(conn) = Conn::of(&socket) else {
        return;
    };
    let raw = payload::raw(arg);
    let echo = echo_of(&raw, "session_id");
    if let Err(tell) = conn.spend() {
        if let Some(e) = tell {
            refuse(&conn, &echo, &e);
        }
        return;
    }
    let cancelled = guard::catch(event::CANCEL_MESSAGE, || {
        let req: CancelMessageRequest = parse_payload_as(raw?, FieldNames::AsIs)?;
        let key = req.session_id.as_ref().map(|id| id.text.as_str());
        conn.cancel(&CHAT_DIALECTS, key);
        Ok(())
    });
    if let Err(e) = cancelled {
        refuse(&conn, &echo, &e);
    }
}

/// Tell the frontend why its request was refused: `chat_error`, then
/// `error`.
fn refuse(conn: &Conn, echo: &Value, err: &GatewayError) {
    let error = err.dialect_message();
    conn.tell(failure(&error, echo));
}

/// `chat_error` and its alias `error`, rendered.
fn failure(error: &str, session_id: &Value) -> [Option<Control>; 2] {
    [
        Control::new(event::CHAT_ERROR, &ChatError { error, session_id }),
        Control::new(event::ERROR, &ErrorAlias { error }),
    ]
}

/// A stream's failure: `chat_error` now, its alias queued after it.
fn fail(out: &Out, error: &str) -> Result<(), SendError> {
    let session_id = &out.stream.origin.echo;
    out.emit(event::CHAT_ERROR, &ChatError { error, session_id })?;
    out.then(event::ERROR, &ErrorAlias { error });
    Ok(())
}

/// How the chat designs' frontends hear a `chat_message` stream.
pub struct ChatVoice;

impl ChatVoice {
    fn complete(out: &Out, full_response: &str) -> Result<(), SendError> {
        let s = out.stream;
        let payload = ChatComplete {
            session_id: &s.origin.echo,
            message_id: &s.id,
            full_response,
        };
        out.emit(event::CHAT_COMPLETE, &payload)
    }
}

impl Voice for ChatVoice {
    fn token(&self, out: &Out, token: &Token) -> Result<(), SendError> {
        let payload = ChatChunk {
            chunk: &token.data,
            session_id: &out.stream.origin.echo,
        };
        out.emit(event::CHAT_CHUNK, &payload)
    }

    fn done(&self, out: &Out, done: &Done) -> Result<(), SendError> {
        Self::complete(out, out.stream.full(done))
    }

    fn cancelled(&self, out: &Out, _cancelled: &StreamCancelled) -> Result<(), SendError> {
        Self::complete(out, &out.stream.text)
    }

    fn failed(&self, out: &Out, error: &str) -> Result<(), SendError> {
        fail(out, error)
    }
}

/// How the REST + SSE report's WebSocket frontends hear a `chat_stream`.
pub struct ChatStreamVoice;

impl ChatStreamVoice {
    fn finished(out: &Out, tokens: u64, duration: u64) -> Result<(), SendError> {
        let payload = ChatDone {
            session_id: &out.stream.origin.echo,
            tokens,
            duration,
            tokens_per_second: tokens_per_second(tokens, duration),
        };
        out.emit(event::CHAT_DONE, &payload)
    }
}

impl Voice for ChatStreamVoice {
    fn token(&self, out: &Out, token: &Token) -> Result<(), SendError> {
        let payload = ChatToken {
            token: &token.data,
            count: token.token_count,
        };
        out.emit(event::CHAT_TOKEN, &payload)
    }

    fn done(&self, out: &Out, done: &Done) -> Result<(), SendError> {
        Self::finished(out, done.total_tokens, done.duration)
    }

    fn cancelled(&self, out: &Out, cancelled: &StreamCancelled) -> Result<(), SendError> {
        let duration = now_ms().saturating_sub(out.stream.started_ms);
        Self::finished(out, cancelled.token_count, duration)
    }

    fn failed(&self, out: &Out, error: &str) -> Result<(), SendError> {
        fail(out, error)
    }
}
