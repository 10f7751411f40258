//! The `llm:*` dialect of the JWT streaming guide (PROTOCOL.md part 3):
//! `llm:chat:stream` and `llm:stream:cancel` in, `llm:stream:start`,
//! `llm:stream:token` and one of `llm:stream:done` / `:error` /
//! `:cancelled` out, every payload with its `sessionId` and a `timestamp`.
//!
//! A request goes straight to the provider it names (the guide's names
//! resolved by `protocol::dialects::provider_for`: `claude` is the
//! `anthropic` provider) with the frontend's messages as they are, the
//! last one the prompt; no orchestrator. Its `sessionId` is the
//! frontend's id for that one stream, not a gateway session. A refusal is
//! `llm:stream:error` with a sentence ([`GatewayError::dialect_message`]:
//! `Provider not found: <name>` for a provider that is not configured).

use super::door::{Conn, echo_of};
use super::live::{Dialect, Origin};
use super::voice::{Out, Voice};
use crate::app::App;
use crate::error::GatewayError;
use crate::guard;
use crate::outbox::Control;
use crate::protocol::dialects::{
    LlmCancelRequest, LlmCancelled, LlmChatRequest, LlmDone, LlmError, LlmStart, LlmToken, event,
    provider_for,
};
use crate::protocol::{
    Done, FieldError, Invalid, StreamCancelled, StreamStart, Token, check_stream_sizes, now_ms,
    parse_payload,
};
use crate::socket::payload::{self, EventArg};
use serde_json::Value;
use socketioxide::SendError;
use socketioxide::extract::{SocketRef, State, TryData};
use std::sync::Arc;

pub fn register(socket: &SocketRef) {
    socket.on(event::LLM_CHAT_STREAM, on_stream);
    socket.on(event::LLM_CANCEL, on_cancel);
}

async fn on_stream(
    socket: SocketRef,
    State(app): State<Arc<App>>,
    TryData(arg): TryData<EventArg>,
) {
    let Some(conn) = Conn::of(&socket) else {
        return;
    };
    let raw = payload::raw(arg);
    let echo = echo_of(&raw, "sessionId");
    if let Err(tell) = conn.spend() {
        if let Some(e) = tell {
            refuse(&conn, &echo, &e);
        }
        return;
    }
    let started = guard::catch_async(event::LLM_CHAT_STREAM, start(&app, &conn, raw)).await;
    if let Err(e) = started {
        refuse(&conn, &echo, &e);
    }
}

async fn start(
    app: &App,
    conn: &Conn,
    raw: Result<Value, Invalid>,
) -> Result<Arc<str>, GatewayError> {
    let raw = raw?;
    check_stream_sizes(&raw, &app.relay.settings.request_bounds)?;
    let req: LlmChatRequest = parse_payload(raw)?;
    let id = req
        .session_id
        .clone()
        .ok_or_else(|| FieldError::new("sessionId", "is required"))?;
    let provider = provider_for(&req.provider, |name| app.providers.get(name).is_some());
    let prompt_field = req.prompt_field();
    let sreq = req.into_stream_request(provider)?;
    let origin = Origin {
        dialect: Dialect::Llm,
        echo: id.sent,
        key: Some(id.text),
    };
    conn.admit(app, origin, sreq, &prompt_field).await
}

async fn on_cancel(socket: SocketRef, TryData(arg): TryData<EventArg>) {
    let Some(conn) = Conn::of(&socket) else {
        return;
    };
    let raw = payload::raw(arg);
    let echo = echo_of(&raw, "sessionId");
    if let Err(tell) = conn.spend() {
        if let Some(e) = tell {
            refuse(&conn, &echo, &e);
        }
        return;
    }
    let cancelled = guard::catch(event::LLM_CANCEL, || {
        let req: LlmCancelRequest = parse_payload(raw?)?;
        conn.cancel(&[Dialect::Llm], Some(&req.session_id.text));
        Ok(())
    });
    if let Err(e) = cancelled {
        refuse(&conn, &echo, &e);
    }
}

/// Tell the frontend why its request was refused.
fn refuse(conn: &Conn, echo: &Value, err: &GatewayError) {
    let error = err.dialect_message();
    let payload = LlmError {
        session_id: echo,
        error: &error,
        timestamp: now_ms(),
    };
    conn.tell([Control::new(event::LLM_ERROR, &payload)]);
}

/// How the guide's frontends hear a stream.
pub struct LlmVoice;

impl Voice for LlmVoice {
    fn start(&self, out: &Out, start: &StreamStart) -> Result<(), SendError> {
        let payload = LlmStart {
            session_id: &out.stream.origin.echo,
            provider: &start.provider,
            model: &start.model,
            timestamp: now_ms(),
        };
        out.emit(event::LLM_START, &payload)
    }

    fn token(&self, out: &Out, token: &Token) -> Result<(), SendError> {
        let payload = LlmToken {
            session_id: &out.stream.origin.echo,
            token: &token.data,
            timestamp: now_ms(),
        };
        out.emit(event::LLM_TOKEN, &payload)
    }

    fn done(&self, out: &Out, done: &Done) -> Result<(), SendError> {
        let s = out.stream;
        let payload = LlmDone {
            session_id: &s.origin.echo,
            provider: &s.provider,
            full_response: s.full(done),
            token_count: done.total_tokens,
            timestamp: now_ms(),
        };
        out.emit(event::LLM_DONE, &payload)
    }

    fn cancelled(&self, out: &Out, _cancelled: &StreamCancelled) -> Result<(), SendError> {
        let payload = LlmCancelled {
            session_id: &out.stream.origin.echo,
            timestamp: now_ms(),
        };
        out.emit(event::LLM_CANCELLED, &payload)
    }

    fn failed(&self, out: &Out, error: &str) -> Result<(), SendError> {
        let payload = LlmError {
            session_id: &out.stream.origin.echo,
            error,
            timestamp: now_ms(),
        };
        out.emit(event::LLM_ERROR, &payload)
    }
}
