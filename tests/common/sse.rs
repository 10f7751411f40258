//! A raw server-sent-events reader over a reqwest response, for tests that
//! need every field and comment as it came off the wire (the official
//! clients hide comments and ids).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::pin::Pin;
use std::time::Duration;

/// One event as sent.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    /// The `data:` lines joined (JSON is parsed into `json`).
    pub data: String,
    pub json: Value,
}

pub struct SseReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: String,
    /// `: …` comment lines seen so far, in order.
    pub comments: Vec<String>,
    /// Bytes read so far.
    pub bytes: usize,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buf: String::new(),
            comments: Vec::new(),
            bytes: 0,
        }
    }

    /// The next event (comments are collected on the way), or `None` when
    /// the body ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => {
                    self.bytes += bytes.len();
                    self.buf.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => return None,
            }
        }
    }

    /// [`SseReader::next`] with a deadline.
    pub async fn next_within(&mut self, d: Duration) -> Option<SseEvent> {
        tokio::time::timeout(d, self.next()).await.ok().flatten()
    }

    /// Every event until the body ends.
    pub async fn all(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next_within(Duration::from_secs(10)).await {
            out.push(e);
        }
        out
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let mut e = SseEvent::default();
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                e.event = Some(v.trim_start().to_string());
            } else if let Some(v) = line.strip_prefix("id:") {
                e.id = Some(v.trim_start().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        if data.is_empty() && e.event.is_none() {
            return None;
        }
        e.data = data.join("\n");
        e.json = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        Some(e)
    }
}
