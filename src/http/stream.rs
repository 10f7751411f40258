//! An HTTP request that streams: a client of its own, attached to the
//! response body, and the [`EventFeed`] that is that body's writer.
//!
//! Each streaming request gets a [`Client`] owned by its caller, with one
//! stream, registered under a name derived from the stream id (so that a
//! resumable stream can be found again by its id). The response body pulls
//! events from the client's outbox only when hyper asks for more, so a
//! slow HTTP reader is a slow client like any other: its queue fills, its
//! policy applies, the upstream is held back; nothing buffers a whole
//! response. When hyper drops the body (the connection closed), the feed's
//! [`CloseGuard`] runs: a plain stream is cancelled at once (its upstream
//! closed, as `ai:cancel` does) and forgotten; a resumable one is detached
//! and runs on for the reconnect window, like a `/ai` client whose socket
//! went away.

use crate::app::App;
use crate::clients::{Attachment, Client, DetachReason, Liveness, Origin, random_hex};
use crate::error::GatewayError;
use crate::outbox::{Outbound, OutboxReader};
use crate::protocol::{CancelReason, StreamRequest};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What dropping the body does to its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClose {
    /// Cancel it (reason `client`) and forget the client.
    Cancel,
    /// Detach it: it runs on for the reconnect window, resumable by id.
    Detach,
}

/// The registry name of the client of HTTP stream `id`: resumable
/// streams are findable by id, plain ones under another prefix only.
pub fn client_name(stream_id: &str, on_close: OnClose) -> Arc<str> {
    match on_close {
        OnClose::Detach => format!("h_{stream_id}").into(),
        OnClose::Cancel => format!("hx_{stream_id}").into(),
    }
}

/// Admit `req` from `origin` as a new HTTP stream; returns its feed.
pub async fn open(
    app: &Arc<App>,
    origin: Origin,
    mut req: StreamRequest,
    on_close: OnClose,
) -> Result<(Arc<str>, EventFeed), GatewayError> {
    let id: Arc<str> = format!("s_{}", random_hex(8)).into();
    req.stream_id = Some(id.to_string());
    let policy = app.config.backpressure.policy;
    let client = app.clients.open(
        Some(client_name(&id, on_close)),
        origin,
        app.rate_limits.budget(),
        app.outbox_settings(policy),
    )?;
    let attachment = app.clients.attach_new(&client, Liveness::Connection);
    if let Err(e) = app.relay.start(&client, req).await {
        app.clients.forget(&client, CancelReason::Client);
        return Err(e);
    }
    if on_close == OnClose::Detach {
        app.note_home(&client, true, None);
    }
    let reader = client.outbox.reader().await;
    Ok((
        id,
        EventFeed::new(app, client, attachment, reader, on_close),
    ))
}

/// A response body's writer: the client's outbox reader, until the
/// attachment ends, shutdown has flushed, or the body is dropped.
pub struct EventFeed {
    reader: OutboxReader,
    stop: CancellationToken,
    _guard: CloseGuard,
}

impl EventFeed {
    pub fn new(
        app: &Arc<App>,
        client: Arc<Client>,
        attachment: Attachment,
        reader: OutboxReader,
        on_close: OnClose,
    ) -> Self {
        Self {
            reader,
            stop: attachment.token().clone(),
            _guard: CloseGuard {
                app: app.clone(),
                client,
                attachment,
                on_close,
            },
        }
    }

    /// The next event, rendered by `render` for the body. Handed to the
    /// body counts as sent: what hyper had not written when the connection
    /// died is what a resume sends again, from the replay log.
    pub async fn next<R>(&mut self, render: impl FnOnce(&Outbound) -> R) -> Option<R> {
        let item = self.reader.next(&self.stop).await?;
        let rendered = render(&item);
        self.reader.sent(item);
        Some(rendered)
    }
}

/// Runs when the body is dropped: what closing the connection means.
struct CloseGuard {
    app: Arc<App>,
    client: Arc<Client>,
    attachment: Attachment,
    on_close: OnClose,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if self.attachment.reason().is_some() {
            // Its tenure had ended already (resumed elsewhere, or finished).
            return;
        }
        match self.on_close {
            OnClose::Cancel => self.app.clients.forget(&self.client, CancelReason::Client),
            OnClose::Detach => {
                let epoch = self.attachment.epoch;
                self.app
                    .clients
                    .detach(&self.client, epoch, DetachReason::Gone);
                self.app.note_home(&self.client, false, None);
            }
        }
    }
}
