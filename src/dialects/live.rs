//! Which dialect started each live stream of a `/` connection, and the
//! frontend's own id for it.
//!
//! A handler writes an [`Origin`] here under the stream's id *before* it
//! asks the relay to start the stream, so that the writer, which renders
//! the stream's first event, always finds it; the writer removes it with
//! the stream's last event, and a refused start removes it at once. The
//! cancel handlers look streams up here by the id the frontend knows
//! (`sessionId`, `session_id`). One small map per connection behind a
//! mutex, touched at a stream's start, its end and a cancel, never per
//! token and never across an await.

use crate::telemetry::Stats;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

/// The design whose events a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The JWT streaming guide: `llm:chat:stream` and `llm:stream:*`.
    Llm,
    /// The Flask-SocketIO chat designs: `chat_message`, `chat_chunk`,
    /// `chat_complete`.
    Chat,
    /// The REST + SSE report's WebSocket handler: `chat_stream`,
    /// `chat_token`, `chat_done`.
    ChatStream,
}

impl Dialect {
    /// The counter of streams this dialect admitted (`/stats`
    /// `streams.byDialect`).
    pub fn counter(self, stats: &Stats) -> &AtomicU64 {
        match self {
            Self::Llm => &stats.dialect_llm_streams,
            Self::Chat => &stats.dialect_chat_streams,
            Self::ChatStream => &stats.dialect_chat_stream_streams,
        }
    }
}

/// Where a stream came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub dialect: Dialect,
    /// The frontend's id for the stream or its conversation, as it sent it
    /// (`Null` when it sent none): every event repeats it.
    pub echo: Value,
    /// The same id as text, which cancels find the stream by.
    pub key: Option<String>,
}

/// The live streams of one `/` connection, by stream id (cheap to clone:
/// the handlers and the writer share one map).
#[derive(Clone, Default)]
pub struct LiveStreams(Arc<Mutex<HashMap<Arc<str>, Origin>>>);

impl LiveStreams {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Origin>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: Arc<str>, origin: Origin) {
        self.map().insert(id, origin);
    }

    pub fn get(&self, id: &str) -> Option<Origin> {
        self.map().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// The streams started by one of `dialects` whose key is `key` (every
    /// one of theirs when `key` is `None`).
    pub fn matching(&self, dialects: &[Dialect], key: Option<&str>) -> Vec<Arc<str>> {
        self.map()
            .iter()
            .filter(|(_, o)| dialects.contains(&o.dialect))
            .filter(|(_, o)| key.is_none() || o.key.as_deref() == key)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
