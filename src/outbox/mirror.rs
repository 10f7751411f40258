//! [`ChannelMirror`]: where a client's stream events go as they are
//! produced, besides its queue, so that a copy can outlive this process
//! (with many nodes, the `/ai` door writes them to a log in Redis that a
//! resume on another node reads when this node died).
//!
//! The outbox tells it under its lock, once per event it admits (a
//! dropped delta is not produced; a merged one is told as it was pushed,
//! before the merge) and once per ack; it only hands them to a bounded
//! channel, never waits. Events a resume queues again are not told twice.
//! When the channel is full the mirror stops for good, so what it handed
//! on is always a prefix of what each stream produced, never a log with a
//! hole. It knows no transport and no store: whoever reads the channel
//! decides what a copy is.

use super::event::StreamEvent;
use crate::telemetry::Stats;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tokio::sync::mpsc;

/// What a mirror hands on. `log` names the client's copy: the client's
/// first id, kept across resumes (its id changes with each).
#[derive(Debug)]
pub enum MirrorOp {
    Produced {
        log: Arc<str>,
        event: StreamEvent,
    },
    /// The client has rendered `stream` up to `position`.
    Acked {
        log: Arc<str>,
        stream: Arc<str>,
        position: u64,
    },
    /// The client is gone for good (its outbox was dropped).
    Gone {
        log: Arc<str>,
    },
}

/// A client's mirror onto a shared channel.
pub struct ChannelMirror {
    log: Arc<str>,
    tx: mpsc::Sender<MirrorOp>,
    /// The channel was full once: nothing more is handed on.
    stopped: AtomicBool,
    stats: Arc<Stats>,
}

impl ChannelMirror {
    pub fn new(log: Arc<str>, tx: mpsc::Sender<MirrorOp>, stats: Arc<Stats>) -> Self {
        Self {
            log,
            tx,
            stopped: AtomicBool::new(false),
            stats,
        }
    }

    pub fn log(&self) -> &Arc<str> {
        &self.log
    }

    pub(super) fn produced(&self, event: &StreamEvent) {
        if self.stopped.load(Relaxed) {
            return;
        }
        let op = MirrorOp::Produced {
            log: self.log.clone(),
            event: event.clone(),
        };
        if self.tx.try_send(op).is_err() {
            self.stopped.store(true, Relaxed);
            self.stats.logs_stopped.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn acked(&self, stream: &str, position: u64) {
        // A lost trim is made good by the next ack, or by the log's expiry.
        let _ = self.tx.try_send(MirrorOp::Acked {
            log: self.log.clone(),
            stream: stream.into(),
            position,
        });
    }
}

impl Drop for ChannelMirror {
    fn drop(&mut self) {
        let _ = self.tx.try_send(MirrorOp::Gone {
            log: self.log.clone(),
        });
    }
}
