//! The default namespace `/` as a Socket.IO door: what it adds to the
//! shared handshake ([`DialectDoor`]: the `connected` greeting, the two
//! dialects' handlers, liveness by the connection, the dialect renderer)
//! and what every handler of both dialects shares ([`Conn`]: the client,
//! its live streams, admitting a stream, cancelling by the frontend's id).
//!
//! A handler finds its [`Conn`] in the socket's extensions, spends one
//! event of the client's budget, translates its payload into the engine's
//! `StreamRequest` and hands it to [`Conn::admit`], which records the
//! stream's [`Origin`] and awaits `Relay::start`: the same limits,
//! sessions, orchestrator and providers as `/ai`, no second relay. These
//! frontends cannot resume, so a closed connection cancels its streams at
//! once (closing their upstreams) instead of keeping them for a reconnect
//! window, and Engine.IO's ping is their liveness (they send no
//! heartbeat).

use super::live::{Dialect, LiveStreams, Origin};
use super::render::DialectRender;
use super::{chat, llm};
use crate::app::App;
use crate::clients::{Client, Liveness, random_hex};
use crate::error::GatewayError;
use crate::outbox::Control;
use crate::protocol::dialects::{ErrorAlias, Greeting, event};
use crate::protocol::{BackpressurePolicy, CancelReason, Invalid, StreamRequest, iso8601, now_ms};
use crate::socket::{Binding, Door};
use serde_json::Value;
use socketioxide::extract::{Event, SocketRef, State};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The greeting's words.
const GREETING: &str = "Connected to streamgate";

pub struct DialectDoor;

impl Door for DialectDoor {
    const LIVENESS: Liveness = Liveness::Connection;
    type Render = DialectRender;

    fn greet(_app: &App, client: &Client, _policy: BackpressurePolicy) {
        let greeting = Greeting {
            message: GREETING,
            timestamp: iso8601(now_ms()),
        };
        if let Some(c) = Control::new(event::CONNECTED, &greeting) {
            client.outbox.push_control(c);
        }
    }

    fn register(socket: &SocketRef, client: &Arc<Client>) -> DialectRender {
        let live = LiveStreams::default();
        socket.extensions.insert(live.clone());
        llm::register(socket);
        chat::register(socket);
        socket.on_fallback(on_unknown_event);
        socket.on_disconnect(on_disconnect);
        DialectRender::new(live, client.outbox.clone())
    }
}

/// What a handler of `/` works with.
pub struct Conn {
    pub client: Arc<Client>,
    pub live: LiveStreams,
}

impl Conn {
    pub fn of(socket: &SocketRef) -> Option<Self> {
        Some(Self {
            client: Binding::of(socket)?.client,
            live: socket.extensions.get::<LiveStreams>()?,
        })
    }

    /// One event off the client's budget. Over it: `Err(Some(e))` for the
    /// first refusal of a run (to be said), `Err(None)` for the rest
    /// (dropped quietly, as on `/ai`).
    pub fn spend(&self) -> Result<(), Option<GatewayError>> {
        self.client
            .budget
            .event()
            .map_err(|r| r.tell.then_some(r.error))
    }

    /// Queue events a handler rendered (its answer), in order.
    pub fn tell(&self, events: impl IntoIterator<Item = Option<Control>>) {
        for c in events.into_iter().flatten() {
            self.client.outbox.push_control(c);
        }
    }

    /// Start `req` for this client as a stream of `origin`'s dialect and
    /// count it; `prompt_field` is what the frontend calls the prompt, so
    /// that an error about it names that field.
    pub async fn admit(
        &self,
        app: &App,
        origin: Origin,
        mut req: StreamRequest,
        prompt_field: &str,
    ) -> Result<Arc<str>, GatewayError> {
        let id: Arc<str> = format!("s_{}", random_hex(8)).into();
        req.stream_id = Some(id.to_string());
        let dialect = origin.dialect;
        // Before the start: the writer may render the stream's first
        // event before `start` returns here.
        self.live.insert(id.clone(), origin);
        match app.relay.start(&self.client, req).await {
            Ok(id) => {
                dialect.counter(&app.stats).fetch_add(1, Relaxed);
                Ok(id)
            }
            Err(e) => {
                self.live.remove(&id);
                Err(e.with_field_renamed("prompt", prompt_field))
            }
        }
    }

    /// Cancel (reason `client`, closing the upstream) the live streams of
    /// `dialects` whose frontend id is `key` (all of theirs without one).
    /// Cancelling nothing is no error: the stream may just have ended.
    pub fn cancel(&self, dialects: &[Dialect], key: Option<&str>) {
        let ids = self.live.matching(dialects, key);
        if ids.is_empty() {
            tracing::debug!(client = %self.client.id(), ?key, "cancel: no live stream");
        }
        for id in ids {
            // Unknown: it ended since; its last event is on its way.
            let _ = self.client.cancel_stream(&id, CancelReason::Client);
        }
    }
}

/// The value of `field` in a payload, as the frontend sent it (`Null`
/// when absent or unreadable): what a refusal echoes.
pub fn echo_of(raw: &Result<Value, Invalid>, field: &str) -> Value {
    raw.as_ref()
        .ok()
        .and_then(|v| v.get(field))
        .cloned()
        .unwrap_or(Value::Null)
}

/// An event neither dialect has: said as `error`, the one name every
/// design listens to.
async fn on_unknown_event(socket: SocketRef, Event(name): Event) {
    let Some(conn) = Conn::of(&socket) else {
        return;
    };
    let error = match conn.spend() {
        Ok(()) => {
            let shown: String = name.chars().take(64).collect();
            format!(
                "{shown:?} is not an event of this server; known: {}",
                KNOWN.join(", ")
            )
        }
        Err(Some(e)) => e.dialect_message(),
        Err(None) => return,
    };
    conn.tell([Control::new(event::ERROR, &ErrorAlias { error: &error })]);
}

/// The events a frontend may send on `/`.
const KNOWN: [&str; 5] = [
    event::LLM_CHAT_STREAM,
    event::LLM_CANCEL,
    event::CHAT_MESSAGE,
    event::CHAT_STREAM,
    event::CANCEL_MESSAGE,
];

async fn on_disconnect(socket: SocketRef, State(app): State<Arc<App>>) {
    if let Some(b) = Binding::of(&socket) {
        app.clients.forget(&b.client, CancelReason::Disconnect);
    }
}
