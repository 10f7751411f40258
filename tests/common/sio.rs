//! A raw Socket.IO v5 / Engine.IO v4 client over tokio-tungstenite, for
//! tests that need control over when frames are read.
//!
//! It reads only when the test asks (`next_event`), answering Engine.IO
//! pings as it meets them, so a test can play a slow or stalled reader.
//! Frames: `0{…}` open, `40/ai,{auth}` connect, `42/ai,[name, payload]`
//! events, `42/ai,<id>[…]` with an ack id answered by `43/ai,<id>[…]`,
//! `44/ai,{message}` connect error, `2`/`3` ping/pong.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct SioClient {
    ws: Ws,
    next_ack: u64,
    /// Ack replies read while waiting for something else.
    acks: HashMap<u64, Value>,
    /// Events read while waiting for an ack.
    backlog: std::collections::VecDeque<(String, Value)>,
    pub connected: Value,
    /// The server disconnected this client from `/ai` (or closed the connection).
    pub disconnected: bool,
}

#[derive(Debug)]
pub enum ConnectError {
    Refused(String),
    Other(String),
}

impl SioClient {
    /// Connect to `/ai` with `auth`, and read up to `ai:connected`.
    pub async fn connect(addr: SocketAddr, auth: Value) -> Result<Self, ConnectError> {
        Self::connect_with_headers(addr, auth, &[]).await
    }

    /// As [`SioClient::connect`], with extra HTTP headers on the WebSocket
    /// handshake (e.g. `X-Forwarded-For`, as a reverse proxy adds it).
    pub async fn connect_with_headers(
        addr: SocketAddr,
        auth: Value,
        headers: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        let mut client = Self::join(addr, auth, headers).await?;
        let (name, payload) = client.next_event().await.map_err(ConnectError::Other)?;
        if name != "ai:connected" {
            return Err(ConnectError::Other(format!("first event was {name}")));
        }
        client.connected = payload;
        Ok(client)
    }

    /// Open a WebSocket, join `/ai` with `auth`, and return as soon as the
    /// connect packet has arrived (`connected` is still `Null`): a client
    /// may emit from this moment on, before it has read `ai:connected`.
    pub async fn join(
        addr: SocketAddr,
        auth: Value,
        headers: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let mut request = url
            .into_client_request()
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        for (name, value) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| ConnectError::Other(e.to_string()))?;
            let value = value.parse().map_err(
                |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
                    ConnectError::Other(e.to_string())
                },
            )?;
            request.headers_mut().insert(name, value);
        }
        // TCP_NODELAY: two small frames in a row (an ai:ack the server does
        // not answer, then the next event) must not wait 40 ms for a
        // delayed ACK, as Nagle's algorithm would make them.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let open = next_text(&mut ws).await.map_err(ConnectError::Other)?;
        if !open.starts_with('0') {
            return Err(ConnectError::Other(format!("expected open, got {open}")));
        }
        ws.send(Message::text(format!("40/ai,{auth}")))
            .await
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let mut client = Self {
            ws,
            next_ack: 1,
            acks: HashMap::new(),
            backlog: Default::default(),
            connected: Value::Null,
            disconnected: false,
        };
        loop {
            let frame = next_text(&mut client.ws)
                .await
                .map_err(ConnectError::Other)?;
            if let Some(rest) = frame.strip_prefix("44/ai,") {
                let v: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                return Err(ConnectError::Refused(
                    v["message"].as_str().unwrap_or(rest).to_string(),
                ));
            }
            if frame.starts_with("40/ai,") {
                return Ok(client);
            }
            if frame == "2" {
                client
                    .ws
                    .send(Message::text("3"))
                    .await
                    .map_err(|e| ConnectError::Other(e.to_string()))?;
            }
        }
    }

    pub async fn connect_ok(addr: SocketAddr) -> Self {
        Self::connect(addr, serde_json::json!({}))
            .await
            .expect("connect")
    }

    pub async fn emit(&mut self, name: &str, payload: Value) {
        let frame = format!("42/ai,{}", serde_json::json!([name, payload]));
        self.ws.send(Message::text(frame)).await.expect("send");
    }

    /// Send a raw frame as is (for malformed-input tests).
    pub async fn send_raw(&mut self, frame: String) {
        self.ws.send(Message::text(frame)).await.expect("send");
    }

    /// Emit with an ack id and wait for the ack's first argument.
    pub async fn emit_ack(&mut self, name: &str, payload: Value) -> Value {
        let id = self.send_with_ack(name, payload).await;
        self.ack_of(id).await
    }

    /// Emit with an ack id, without waiting; returns the id.
    pub async fn send_with_ack(&mut self, name: &str, payload: Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let frame = format!("42/ai,{id}{}", serde_json::json!([name, payload]));
        self.ws.send(Message::text(frame)).await.expect("send");
        id
    }

    /// Wait for the ack of `id` (events read meanwhile are kept).
    pub async fn ack_of(&mut self, id: u64) -> Value {
        loop {
            if let Some(v) = self.acks.remove(&id) {
                return v;
            }
            match self.read_one().await.expect("read while waiting for ack") {
                Some(ev) => self.backlog.push_back(ev),
                None => continue,
            }
        }
    }

    /// The next event, answering pings on the way.
    pub async fn next_event(&mut self) -> Result<(String, Value), String> {
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(ev);
        }
        loop {
            if let Some(ev) = self.read_one().await? {
                return Ok(ev);
            }
        }
    }

    /// The next event within `d`, or None.
    pub async fn next_event_within(&mut self, d: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(d, self.next_event())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Events until `pred` matches one (included), within 10 s.
    pub async fn events_until(
        &mut self,
        pred: impl Fn(&str, &Value) -> bool,
    ) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.next_event())
                .await
                .unwrap_or_else(|_| panic!("timed out; events so far: {out:?}"))
                .expect("socket closed");
            let done = pred(&ev.0, &ev.1);
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// Read one frame; Some(event) for an event, None for anything else.
    async fn read_one(&mut self) -> Result<Option<(String, Value)>, String> {
        let frame = match next_text(&mut self.ws).await {
            Ok(f) => f,
            Err(e) => {
                self.disconnected = true;
                return Err(e);
            }
        };
        if frame == "2" {
            self.ws
                .send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?;
            return Ok(None);
        }
        if let Some(rest) = frame.strip_prefix("42/ai,") {
            let v: Value = serde_json::from_str(rest).map_err(|e| format!("{e}: {rest}"))?;
            let name = v[0].as_str().unwrap_or("").to_string();
            return Ok(Some((name, v[1].clone())));
        }
        if let Some(rest) = frame.strip_prefix("43/ai,") {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let id: u64 = digits.parse().map_err(|_| format!("bad ack {frame}"))?;
            let v: Value =
                serde_json::from_str(&rest[digits.len()..]).map_err(|e| e.to_string())?;
            self.acks.insert(id, v[0].clone());
            return Ok(None);
        }
        if frame.starts_with("41/ai") {
            self.disconnected = true;
            return Err("disconnected by server".into());
        }
        Ok(None)
    }

    /// Is the connection still open? Reads (and answers) for up to `d`.
    pub async fn still_open(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.read_one()).await {
                Err(_) => return true,
                Ok(Err(_)) => return false,
                Ok(Ok(Some(ev))) => self.backlog.push_back(ev),
                Ok(Ok(None)) => {}
            }
        }
    }

    /// `ai:ack` for a token event just read.
    pub async fn ack_token(&mut self, payload: &Value) {
        let ack = serde_json::json!({"streamId": payload["streamId"], "tokenCount": payload["tokenCount"]});
        self.emit("ai:ack", ack).await;
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}
