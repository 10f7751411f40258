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

    /// `POST path` with a JSON `body` over a raw socket whose receive buffer
    /// is `rcvbuf` bytes, so that a test that stops reading really stops
    /// the gateway's writes (reqwest's client and loopback's autotuned
    /// buffers would swallow megabytes). Returns the response head.
    pub async fn raw_post(
        addr: std::net::SocketAddr,
        path: &str,
        body: &Value,
        rcvbuf: u32,
    ) -> (String, Self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(rcvbuf).expect("rcvbuf");
        let mut conn = socket.connect(addr).await.expect("connect");
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).await.expect("head");
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_string();
        let chunks = futures_util::stream::unfold(conn, |mut conn| async move {
            let chunk = read_chunk(&mut conn).await?;
            Some((Ok(Bytes::from(chunk)), conn))
        });
        let reader = Self {
            body: Box::pin(chunks),
            buf: String::new(),
            comments: Vec::new(),
            bytes: 0,
        };
        (head, reader)
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
        let block = block.trim_start_matches(['\r', '\n']);
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

/// One chunk of a chunked HTTP/1.1 body (`None` at the end or on error).
async fn read_chunk(conn: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        conn.read_exact(&mut byte).await.ok()?;
        line.push(byte[0]);
    }
    let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0u8; size + 2];
    conn.read_exact(&mut chunk).await.ok()?;
    chunk.truncate(size);
    Some(chunk)
}
