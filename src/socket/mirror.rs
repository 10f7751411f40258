//! The `/ai` door's stream logs in Redis (with many nodes): every `/ai`
//! client's outbox gets a mirror ([`attach`]), and one task per node
//! ([`spawn_log_writer`]) reads what the mirrors hand on, renders each
//! event as its `/ai` event and writes them to the logs in batches (what
//! gathered within [`LINGER`] of the first, up to [`BATCH`], in one round
//! trip), so a token costs no round trip of its own.
//!
//! A stream's tokens at consecutive positions within one batch go as one
//! entry (their pieces kept apart, so a resume can start between them):
//! fewer entries for Redis to hold and the writer to encode when a
//! stream is fast, no change for a paced one. Each log's entry ids come
//! from the stream's positions ([`Cursor`]; a merged entry has its last
//! token's); a
//! batch Redis refused marks its streams broken and nothing more of them
//! is written, so a log is always a prefix of what its stream produced
//! (a resume from it ends with `node_lost` where the prefix ends, never
//! with a hole). Nothing here reads the logs: `lost_home.rs` does.

use super::render;
use crate::app::App;
use crate::clients::Client;
use crate::cluster::{LogId, LogWrite, StreamLogs};
use crate::outbox::{ChannelMirror, MirrorOp, Outbound, StreamEvent};
use crate::protocol::Token;
use crate::telemetry::Stats;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The entry name of a stream's consecutive tokens logged as one (never
/// an event name on the wire: a resume splits it back into `ai:token`s).
pub const MERGED_TOKENS: &str = "ai:token*";

/// A [`MERGED_TOKENS`] entry: the pieces at positions `first..=tokenCount`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergedTokens {
    pub stream_id: Arc<str>,
    pub token_count: u64,
    pub first: u64,
    pub agent: Option<Arc<str>>,
    pub pieces: Vec<String>,
}

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

/// A stream's tokens of one batch at consecutive positions, written as
/// one entry ([`MERGED_TOKENS`]) under the last one's id.
struct TokenRun {
    id: LogId,
    first: u64,
    pieces: Vec<String>,
    bytes: usize,
    last: Token,
}

/// Pieces one merged entry holds at most, and bytes of text.
const RUN_PIECES: usize = 256;
const RUN_BYTES: usize = 16 * 1024;

/// A batch's open token runs, by client log and stream.
type Runs = HashMap<(Arc<str>, Arc<str>), TokenRun>;

impl Cursors {
    /// The writes `ops` make: events in order per stream, a stream's
    /// consecutive tokens in one entry.
    fn writes(&mut self, ops: impl Iterator<Item = MirrorOp>) -> Vec<LogWrite> {
        let mut out = Vec::new();
        let mut runs = Runs::new();
        for op in ops {
            match op {
                MirrorOp::Produced { log, event } => self.event(log, event, &mut runs, &mut out),
                MirrorOp::Acked {
                    log,
                    stream,
                    position,
                } => {
                    flush(&mut runs, (log.clone(), stream.clone()), &mut out);
                    out.push(LogWrite::Trim {
                        client: log,
                        stream,
                        position,
                    })
                }
                MirrorOp::Gone { log } => {
                    self.by_log.remove(&log);
                }
            }
        }
        let open: Vec<_> = runs.keys().cloned().collect();
        for key in open {
            flush(&mut runs, key, &mut out);
        }
        out
    }

    fn event(
        &mut self,
        log: Arc<str>,
        event: StreamEvent,
        runs: &mut Runs,
        out: &mut Vec<LogWrite>,
    ) {
        let stream = event.stream_id().clone();
        let streams = self.by_log.entry(log.clone()).or_default();
        let cursor = streams.entry(stream.clone()).or_insert_with(Cursor::new);
        let terminal = event.is_terminal();
        let key = (log, stream);
        if !cursor.broken {
            let id = cursor.next(&event);
            match event {
                StreamEvent::Token(t) => extend(runs, key.clone(), id, t, out),
                other => {
                    flush(runs, key.clone(), out);
                    match rendered(&key, id, Outbound::Stream(other)) {
                        Some(w) => out.push(w),
                        None => cursor.broken = true,
                    }
                }
            }
        }
        if terminal {
            // Nothing follows a terminal event.
            streams.remove(&key.1);
        }
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

/// Add token `t` (log id `id`) to its stream's run, or start one.
fn extend(
    runs: &mut Runs,
    key: (Arc<str>, Arc<str>),
    id: LogId,
    t: Token,
    out: &mut Vec<LogWrite>,
) {
    if let Some(run) = runs.get_mut(&key)
        && t.token_count == run.last.token_count + 1
        && run.pieces.len() < RUN_PIECES
        && run.bytes + t.data.len() <= RUN_BYTES
    {
        run.id = id;
        run.bytes += t.data.len();
        run.pieces.push(t.data.clone());
        run.last = t;
        return;
    }
    flush(runs, key.clone(), out);
    let run = TokenRun {
        id,
        first: t.token_count,
        pieces: vec![t.data.clone()],
        bytes: t.data.len(),
        last: t,
    };
    runs.insert(key, run);
}

/// Write `key`'s open run, if any: a lone token as its `ai:token`, more as
/// one [`MERGED_TOKENS`] entry.
fn flush(runs: &mut Runs, key: (Arc<str>, Arc<str>), out: &mut Vec<LogWrite>) {
    let Some(run) = runs.remove(&key) else { return };
    if run.pieces.len() == 1 {
        if let Some(w) = rendered(&key, run.id, Outbound::Stream(StreamEvent::Token(run.last))) {
            out.push(w);
        }
        return;
    }
    let merged = MergedTokens {
        stream_id: key.1.clone(),
        token_count: run.last.token_count,
        first: run.first,
        agent: run.last.agent.clone(),
        pieces: run.pieces,
    };
    if let Ok(payload) = serde_json::to_string(&merged) {
        out.push(LogWrite::Event {
            client: key.0,
            stream: key.1,
            id: run.id,
            name: MERGED_TOKENS,
            payload,
        });
    }
}

/// `item` as a log entry; `None` when it cannot be rendered.
fn rendered(key: &(Arc<str>, Arc<str>), id: LogId, item: Outbound) -> Option<LogWrite> {
    let payload = render::payload_json(&item).ok()?;
    Some(LogWrite::Event {
        client: key.0.clone(),
        stream: key.1.clone(),
        id,
        name: render::name(&item),
        payload,
    })
}
