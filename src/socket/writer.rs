//! The Socket.IO writer: the one task per attached socket that emits, and
//! the only code that knows socketioxide's send buffer.
//!
//! It takes events from the client's [`OutboxReader`] and has its
//! namespace's [`Render`] emit them (`/ai`'s, or the default namespace's
//! dialects'); pacing, liveness and what a detach means are the same for
//! every namespace.
//! socketioxide's emit only reserves a slot in a bounded per-socket channel
//! that the Engine.IO ping also needs, so on a refusal the writer gives the
//! event back and paces itself (the pause doubles on each refusal and
//! shrinks by a tenth on each success, like TCP's AIMD) instead of keeping
//! the channel full. If every emit is refused for longer than the ping
//! interval plus timeout, the engine has dropped the peer, but its writer
//! may be stuck on it and then no disconnect handler ever runs; the writer
//! closes the socket and detaches the client itself. When its attachment
//! ends, the reason says what to do with the socket: nothing (it closed),
//! close it (heartbeat stale), or tell it it was taken over and close it.

use super::binding::Binding;
use super::render::{self, Render};
use super::reply;
use crate::app::App;
use crate::clients::{Attachment, Client, DetachReason};
use crate::error::GatewayError;
use crate::outbox::{Outbound, OutboxReader};
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::time::Instant;

/// Why a writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterEnd {
    /// Its attachment ended (see the reason).
    Detached,
    /// Shutdown, and nothing more to send.
    Flushed,
    /// socketioxide says the socket is closed.
    Closed,
    /// The transport refused everything for longer than its liveness window.
    TransportDead,
}

/// Start the writer of `binding` on `socket`, emitting through `render`;
/// `reader` is a reader a resume already rewound, or `None` to take a
/// fresh one. It emits nothing before the socket is connected.
pub fn spawn(
    app: &Arc<App>,
    socket: SocketRef,
    binding: Binding,
    reader: Option<OutboxReader>,
    mut render: impl Render,
) {
    let app2 = app.clone();
    app.shutdown.spawn(async move {
        let Binding {
            client,
            attachment,
            connected,
        } = binding;
        tokio::select! {
            _ = connected.cancelled() => {}
            _ = attachment.token().cancelled() => return,
            _ = app2.shutdown.root.cancelled() => return,
        }
        let mut reader = match reader {
            Some(r) => r,
            None => client.outbox.reader().await,
        };
        let end = write(&app2, &mut reader, &socket, &attachment, &mut render).await;
        drop(reader);
        finish(&app2, &socket, &client, &attachment, end);
    });
}

/// Emit until the attachment ends, the socket closes or shutdown flushed.
async fn write(
    app: &App,
    reader: &mut OutboxReader,
    socket: &SocketRef,
    attachment: &Attachment,
    render: &mut impl Render,
) -> WriterEnd {
    let c = &app.config.server;
    let liveness = Duration::from_millis(c.ping_interval_ms + c.ping_timeout_ms);
    let stop = attachment.token();
    let mut pace = Pace::default();
    loop {
        let Some(item) = reader.next(stop).await else {
            return if stop.is_cancelled() {
                WriterEnd::Detached
            } else {
                WriterEnd::Flushed
            };
        };
        if !pace.wait(stop).await {
            reader.put_back(item);
            return WriterEnd::Detached;
        }
        match render.emit(socket, &item) {
            Ok(()) => {
                pace.sent();
                reader.sent(item);
            }
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                app.stats.transport_refusals.fetch_add(1, Relaxed);
                reader.put_back(item);
                if pace.refused() > liveness {
                    return WriterEnd::TransportDead;
                }
            }
            Err(SendError::Socket(SocketError::Closed)) => {
                reader.put_back(item);
                return WriterEnd::Closed;
            }
            Err(SendError::Serialize(e)) => {
                tracing::error!(error = ?e, event = render::name(&item), "event did not serialize");
            }
        }
    }
}

/// What the end of a writer means for its socket and its client.
fn finish(
    app: &App,
    socket: &SocketRef,
    client: &Arc<Client>,
    attachment: &Attachment,
    end: WriterEnd,
) {
    match end {
        WriterEnd::Flushed => {}
        WriterEnd::Closed => app
            .clients
            .detach(client, attachment.epoch, DetachReason::Gone),
        WriterEnd::TransportDead => {
            tracing::info!(client = %client.id(), "transport stuck past its liveness window; detaching");
            let _ = socket.clone().disconnect();
            app.clients
                .detach(client, attachment.epoch, DetachReason::Gone);
        }
        WriterEnd::Detached => match attachment.reason() {
            Some(DetachReason::Stale) => {
                let _ = socket.clone().disconnect();
            }
            // Only `/ai` clients can be resumed, so only they are taken over.
            Some(DetachReason::TakenOver) => {
                tracing::info!(client = %client.id(), "taken over by another connection");
                if let Some(told) = reply::error_event(&GatewayError::TakenOver, None) {
                    let _ = render::emit(socket, &Outbound::Control(told));
                }
                let _ = socket.clone().disconnect();
            }
            _ => {}
        },
    }
}

/// AIMD pacing of emits on a full channel, and how long it has refused.
#[derive(Default)]
struct Pace {
    pause: Option<Duration>,
    refused_since: Option<Instant>,
}

impl Pace {
    /// Sleep the current pause; false if `stop` fired meanwhile.
    async fn wait(&self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let Some(p) = self.pause else { return true };
        tokio::select! {
            _ = tokio::time::sleep(p) => true,
            _ = stop.cancelled() => false,
        }
    }

    fn sent(&mut self) {
        self.refused_since = None;
        self.pause = self
            .pause
            .map(|p| p.mul_f64(0.9))
            .filter(|p| *p >= Duration::from_micros(500));
    }

    /// A refusal: double the pause; returns how long emits have been refused.
    fn refused(&mut self) -> Duration {
        let since = *self.refused_since.get_or_insert_with(Instant::now);
        self.pause = Some(self.pause.map_or(Duration::from_millis(2), |p| {
            (p * 2).min(Duration::from_secs(1))
        }));
        since.elapsed()
    }
}
