//! The ceiling: a raw tokio-tungstenite server that relays the fake
//! upstream as the same frame bytes, with no Socket.IO library and no
//! gateway logic (no registry, outbox, backpressure, validation, metrics).
//!
//! It speaks just enough Engine.IO/Socket.IO framing for the load generator
//! (`0{…}` open, `40/ai,` connect, `42/ai,N["ai:stream",…]` → `43/ai,N[…]`,
//! `ai:cancel`), and per stream: reqwest `POST /api/chat` → split NDJSON
//! lines → decode each once → one `42/ai,["ai:token",{…}]` frame. One
//! writer task per connection batches queued frames into one flush. What it
//! reaches is what the wire and the HTTP client carry on this machine.

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    message: Option<LineMessage<'a>>,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
struct LineMessage<'a> {
    #[serde(borrow, default)]
    content: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenOut<'a> {
    stream_id: &'a str,
    data: &'a str,
    token_count: u64,
    agent: Option<&'a str>,
}

pub async fn serve(port: u16, upstream: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let http = reqwest::Client::new();
    let upstream: Arc<str> = format!("{}/api/chat", upstream.trim_end_matches('/')).into();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        tokio::spawn(conn(sock, http.clone(), upstream.clone(), ids.clone()));
    }
}

async fn conn(sock: TcpStream, http: reqwest::Client, upstream: Arc<str>, ids: Arc<AtomicU64>) {
    // tungstenite's default 128 KiB read buffer per connection would make
    // the ceiling look fat in `idle`; client frames here are tiny.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(sock, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(Message::text(first)).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(Message::text(more)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let sid = ids.fetch_add(1, Relaxed);
    let open = format!(
        "0{{\"sid\":\"e{sid}\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}}"
    );
    if tx.send(open).await.is_err() {
        return;
    }
    let mut streams: HashMap<String, AbortHandle> = HashMap::new();
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(text) = msg else { continue };
        let t = text.as_str();
        if t.starts_with("40/ai") {
            let _ = tx.send(format!("40/ai,{{\"sid\":\"s{sid}\"}}")).await;
            let _ = tx
                .send(format!(
                    "42/ai,[\"ai:connected\",{{\"clientId\":\"c_{sid}\"}}]"
                ))
                .await;
        } else if let Some(rest) = t.strip_prefix("42/ai,") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let ack = &rest[..digits];
            let Ok((name, payload)) =
                serde_json::from_str::<(String, serde_json::Value)>(&rest[digits..])
            else {
                continue;
            };
            let stream_id = payload
                .get("streamId")
                .and_then(|v| v.as_str())
                .unwrap_or("s")
                .to_string();
            if name == "ai:stream" {
                let prompt = payload
                    .get("prompt")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                if !ack.is_empty() {
                    let _ = tx
                        .send(format!(
                            "43/ai,{ack}[{{\"ok\":true,\"streamId\":\"{stream_id}\"}}]"
                        ))
                        .await;
                }
                streams.retain(|_, h| !h.is_finished());
                let task = tokio::spawn(relay(
                    http.clone(),
                    upstream.clone(),
                    stream_id.clone(),
                    prompt,
                    tx.clone(),
                ));
                streams.insert(stream_id, task.abort_handle());
            } else if name == "ai:cancel"
                && let Some(h) = streams.remove(&stream_id)
            {
                // Aborting drops the response: the upstream connection closes.
                h.abort();
                let _ = tx
                    .send(format!(
                        "42/ai,[\"ai:stream:cancelled\",{{\"streamId\":\"{stream_id}\",\"reason\":\"client\"}}]"
                    ))
                    .await;
            }
        }
        // Anything else (pongs `3`, unknown events) needs no answer.
    }
    for h in streams.values() {
        h.abort();
    }
    writer.abort();
}

async fn relay(
    http: reqwest::Client,
    url: Arc<str>,
    id: String,
    prompt: String,
    tx: mpsc::Sender<String>,
) {
    let body = serde_json::json!({
        "model": "m",
        "messages": [{"role": "user", "content": prompt}],
        "stream": true,
    });
    let err = |e: String| {
        format!(
            "42/ai,[\"ai:stream:error\",{{\"streamId\":\"{id}\",\"code\":\"upstream_error\",\"error\":{}}}]",
            serde_json::Value::from(e)
        )
    };
    let resp = match http.post(&*url).json(&body).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let _ = tx.send(err(format!("HTTP {}", r.status()))).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(err(e.to_string())).await;
            return;
        }
    };
    let _ = tx
        .send(format!(
            "42/ai,[\"ai:stream:start\",{{\"streamId\":\"{id}\",\"provider\":\"ollama\"}}]"
        ))
        .await;
    let mut body = resp.bytes_stream();
    let mut partial: Vec<u8> = Vec::new();
    let mut count = 0u64;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            let _ = tx.send(err("body read failed".into())).await;
            return;
        };
        partial.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = partial[start..].iter().position(|&b| b == b'\n') {
            let line = &partial[start..start + nl];
            start += nl + 1;
            let Ok(parsed) = serde_json::from_slice::<Line>(line) else {
                continue;
            };
            if let Some(m) = parsed.message
                && !m.content.is_empty()
            {
                count += 1;
                let payload = TokenOut {
                    stream_id: &id,
                    data: &m.content,
                    token_count: count,
                    agent: None,
                };
                let mut frame = Vec::with_capacity(64 + m.content.len());
                frame.extend_from_slice(b"42/ai,");
                if serde_json::to_writer(&mut frame, &("ai:token", payload)).is_err() {
                    continue;
                }
                let Ok(frame) = String::from_utf8(frame) else {
                    continue;
                };
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            if parsed.done {
                let _ = tx
                    .send(format!(
                        "42/ai,[\"ai:stream:complete\",{{\"streamId\":\"{id}\"}}]"
                    ))
                    .await;
                let _ = tx
                    .send(format!(
                        "42/ai,[\"ai:done\",{{\"streamId\":\"{id}\",\"totalTokens\":{count},\"finishReason\":\"stop\"}}]"
                    ))
                    .await;
            }
        }
        partial.drain(..start);
    }
}
