//! The `/ai` door's stream logs in Redis (with many nodes): every `/ai`
//! client's outbox gets a mirror ([`attach`]), and one task per node
//! ([`spawn_log_writer`]) reads what the mirrors hand on, renders each
//! event as its `/ai` event and writes them to the logs in batches (what
//! gathered within [`LINGER`] of the first, up to [`BATCH`], in one round
//! trip), so a token costs no round trip of its own.
//!
//! Each log's entry ids come from the stream's positions ([`Cursor`]); a
//! batch Redis refused marks its streams broken and nothing more of them
//! is written, so a log is always a prefix of what its stream produced
//! (a resume from it ends with `node_lost` where the prefix ends, never
//! with a hole). Nothing here reads the logs: `lost_home.rs` does.

use super::render;
use crate::app::App;
use crate::clients::Client;
use crate::cluster::{LogId, LogWrite, StreamLogs};
use crate::outbox::{ChannelMirror, MirrorOp, Outbound, StreamEvent};
use crate::telemetry::Stats;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Ops one write carries at most.
const BATCH: usize = 2_048;
/// How long the writer lets ops gather before a write that is not full:
/// the logs are not on the way to any client, so a few milliseconds cost
/// nothing but make a paced stream's tokens share a round trip.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Give `client`'s outbox a mirror onto the node's log writer; nothing
/// without Redis.
pub fn attach(app: &App, client: &Client) {
    if let Some(cluster) = &app.cluster {
        let mirror = ChannelMirror::new(client.id(), cluster.mirror.clone(), app.stats.clone());
        client.outbox.set_mirror(mirror);
    }
}

/// Start the node's log writer (once; nothing without Redis).
pub fn spawn_log_writer(app: &Arc<App>) {
    let Some(cluster) = &app.cluster else { return };
    let taken = cluster.mirror_rx.lock().ok().and_then(|mut rx| rx.take());
    let Some(mut rx) = taken else { return };
    let (logs, root) = (cluster.logs.clone(), app.shutdown.root.clone());
    let stats = app.stats.clone();
    app.shutdown.spawn(async move {
        let mut cursors = Cursors::default();
        let mut ops = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                _ = root.cancelled() => return,
                n = rx.recv_many(&mut ops, BATCH) => n,
            };
            if n == 0 {
                return;
            }
            if ops.len() < BATCH {
                tokio::time::sleep(LINGER).await;
                while ops.len() < BATCH {
                    let Ok(op) = rx.try_recv() else { break };
                    ops.push(op);
                }
            }
            let batch = cursors.writes(ops.drain(..));
            write(&logs, &stats, &mut cursors, batch).await;
        }
    });
}

async fn write(logs: &StreamLogs, stats: &Stats, cursors: &mut Cursors, batch: Vec<LogWrite>) {
    if batch.is_empty() {
        return;
    }
    match logs.write(&batch).await {
        Ok(()) => {
            stats.log_batches.fetch_add(1, Relaxed);
            let events = batch.iter().filter(|w| matches!(w, LogWrite::Event { .. }));
            stats.log_events.fetch_add(events.count() as u64, Relaxed);
        }
        Err(e) => {
            tracing::debug!(error = %e, ops = batch.len(), "stream logs not written");
            let stopped = cursors.break_all(&batch);
            stats.logs_stopped.fetch_add(stopped, Relaxed);
        }
    }
}

/// Where one stream's log is.
struct Cursor {
    /// The last id given.
    last: LogId,
    /// The highest delta position seen.
    top: u64,
    broken: bool,
}

impl Cursor {
    fn new() -> Self {
        Self {
            last: (0, 0),
            top: 0,
            broken: false,
        }
    }

    /// The id of `event`: a delta's position, the start at position 0,
    /// anything else just after the last delta; always above the last id
    /// (Redis refuses `0-0`, so the start is `0-1`).
    fn next(&mut self, event: &StreamEvent) -> LogId {
        let target = match (event.position(), event) {
            (Some(p), _) => {
                self.top = self.top.max(p);
                p
            }
            (None, StreamEvent::Start(_)) => 0,
            (None, _) => self.top + 1,
        };
        self.last = if target > self.last.0 {
            (target, 0)
        } else {
            (self.last.0, self.last.1 + 1)
        };
        self.last
    }
}

/// The cursors of every log this node writes, by client log and stream.
#[derive(Default)]
struct Cursors {
    by_log: HashMap<Arc<str>, HashMap<Arc<str>, Cursor>>,
}

impl Cursors {
    /// The writes `ops` make.
    fn writes(&mut self, ops: impl Iterator<Item = MirrorOp>) -> Vec<LogWrite> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                MirrorOp::Produced { log, event } => {
                    if let Some(w) = self.event(log, event) {
                        out.push(w);
                    }
                }
                MirrorOp::Acked {
                    log,
                    stream,
                    position,
                } => out.push(LogWrite::Trim {
                    client: log,
                    stream,
                    position,
                }),
                MirrorOp::Gone { log } => {
                    self.by_log.remove(&log);
                }
            }
        }
        out
    }

    fn event(&mut self, log: Arc<str>, event: StreamEvent) -> Option<LogWrite> {
        let stream = event.stream_id().clone();
        let streams = self.by_log.entry(log.clone()).or_default();
        let cursor = streams.entry(stream.clone()).or_insert_with(Cursor::new);
        let terminal = event.is_terminal();
        let write = if cursor.broken {
            None
        } else {
            let id = cursor.next(&event);
            let item = Outbound::Stream(event);
            match render::payload_json(&item) {
                Ok(payload) => Some(LogWrite::Event {
                    client: log,
                    stream: stream.clone(),
                    id,
                    name: render::name(&item),
                    payload,
                }),
                Err(_) => {
                    cursor.broken = true;
                    None
                }
            }
        };
        if terminal {
            // Nothing follows a terminal event.
            streams.remove(&stream);
        }
        write
    }

    /// Redis refused `batch`: its streams are written no more; how many
    /// stopped now.
    fn break_all(&mut self, batch: &[LogWrite]) -> u64 {
        let mut stopped = 0;
        for w in batch {
            if let LogWrite::Event { client, stream, .. } = w
                && let Some(c) = self
                    .by_log
                    .get_mut(client)
                    .and_then(|streams| streams.get_mut(stream))
                && !c.broken
            {
                c.broken = true;
                stopped += 1;
            }
        }
        stopped
    }
}
