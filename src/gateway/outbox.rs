//! `ClientOutbox`: the one bounded queue between a client's streams and its
//! socket, and the drain task that empties it.
//!
//! Stream tasks `push` events; a token push waits while the queue holds
//! `capacity` events, which stops that stream from reading its upstream
//! (TCP then holds the upstream back). Terminal and control events are
//! never refused, since each stream sends one terminal event and control
//! events are capped separately. The drain task pops events in order and
//! emits them into socketioxide; when socketioxide's own per-socket buffer
//! is full (`InternalChannelFull`) it keeps the event and backs off instead
//! of dropping it or spinning. Emitting never happens under the lock.

use crate::protocol::{
    Connected, Done, ErrorEvent, HeartbeatAck, StreamCancelled, StreamComplete, StreamError,
    StreamStart, Token, event,
};
use crate::telemetry::Stats;
use socketioxide::SendError;
use socketioxide::SocketError;
use socketioxide::extract::SocketRef;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// An event waiting for its socket, typed until it is emitted.
#[derive(Debug, Clone)]
pub enum Outbound {
    Connected(Connected),
    Start(StreamStart),
    Token(Token),
    Complete(StreamComplete),
    Done(Done),
    Cancelled(StreamCancelled),
    StreamError(StreamError),
    Error(ErrorEvent),
    HeartbeatAck(HeartbeatAck),
}

impl Outbound {
    pub fn event(&self) -> &'static str {
        match self {
            Self::Connected(_) => event::CONNECTED,
            Self::Start(_) => event::STREAM_START,
            Self::Token(_) => event::TOKEN,
            Self::Complete(_) => event::STREAM_COMPLETE,
            Self::Done(_) => event::DONE,
            Self::Cancelled(_) => event::STREAM_CANCELLED,
            Self::StreamError(_) => event::STREAM_ERROR,
            Self::Error(_) => event::ERROR,
            Self::HeartbeatAck(_) => event::HEARTBEAT_ACK,
        }
    }

    fn emit(&self, socket: &SocketRef) -> Result<(), SendError> {
        let name = self.event();
        match self {
            Self::Connected(p) => socket.emit(name, p),
            Self::Start(p) => socket.emit(name, p),
            Self::Token(p) => socket.emit(name, p),
            Self::Complete(p) => socket.emit(name, p),
            Self::Done(p) => socket.emit(name, p),
            Self::Cancelled(p) => socket.emit(name, p),
            Self::StreamError(p) => socket.emit(name, p),
            Self::Error(p) => socket.emit(name, p),
            Self::HeartbeatAck(p) => socket.emit(name, p),
        }
    }
}

pub struct ClientOutbox {
    queue: Mutex<VecDeque<Outbound>>,
    /// Queued events at which token pushes wait.
    capacity: usize,
    has_items: Notify,
    has_room: Notify,
    stats: Arc<Stats>,
}

/// Control events (errors, heartbeat acks) past this many queued events are
/// dropped: a client flooding bad requests must not grow its queue.
const CONTROL_SLACK: usize = 64;

/// Longest pause of the drain when socketioxide's buffer stays full.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

impl ClientOutbox {
    pub fn new(capacity: usize, stats: Arc<Stats>) -> Self {
        Self {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            has_items: Notify::new(),
            has_room: Notify::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn enqueue(&self, q: &mut VecDeque<Outbound>, item: Outbound) {
        q.push_back(item);
        self.stats.queued_events.fetch_add(1, Relaxed);
        self.has_items.notify_one();
    }

    /// Queue a token, waiting while the queue is full.
    pub async fn push_token(&self, token: Token) {
        loop {
            let room = self.has_room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = self.lock();
                if q.len() < self.capacity {
                    self.enqueue(&mut q, Outbound::Token(token));
                    return;
                }
            }
            room.await;
        }
    }

    /// Queue a stream's start or terminal event: never refused.
    pub fn push_stream_event(&self, item: Outbound) {
        let mut q = self.lock();
        self.enqueue(&mut q, item);
    }

    /// Queue a control event; false when the client is too far behind and
    /// the event was dropped.
    pub fn push_control(&self, item: Outbound) -> bool {
        let mut q = self.lock();
        if q.len() >= self.capacity + CONTROL_SLACK {
            return false;
        }
        self.enqueue(&mut q, item);
        true
    }

    async fn next(&self, cancel: &CancellationToken) -> Option<Outbound> {
        loop {
            let ready = self.has_items.notified();
            if let Some(item) = self.lock().pop_front() {
                self.stats.queued_events.fetch_sub(1, Relaxed);
                self.has_room.notify_waiters();
                return Some(item);
            }
            tokio::select! {
                _ = ready => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Move events into `socket` until `cancel` fires or the socket closes.
    /// An event that could not be emitted because the socket closed is put
    /// back at the front, so nothing popped is lost.
    pub async fn drain(self: Arc<Self>, socket: SocketRef, cancel: CancellationToken) {
        while let Some(item) = self.next(&cancel).await {
            let mut backoff = Duration::from_millis(1);
            loop {
                match item.emit(&socket) {
                    Ok(()) => break,
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = cancel.cancelled() => {
                                self.push_front(item);
                                return;
                            }
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(SendError::Socket(SocketError::Closed)) => {
                        self.push_front(item);
                        return;
                    }
                    Err(SendError::Serialize(e)) => {
                        tracing::error!(error = ?e, event = item.event(), "event did not serialize");
                        break;
                    }
                }
            }
        }
    }

    fn push_front(&self, item: Outbound) {
        let mut q = self.lock();
        q.push_front(item);
        self.stats.queued_events.fetch_add(1, Relaxed);
    }

    /// Forget everything queued (the client is gone for good).
    pub fn clear(&self) {
        let mut q = self.lock();
        self.stats.queued_events.fetch_sub(q.len() as u64, Relaxed);
        q.clear();
        self.has_room.notify_waiters();
    }
}
