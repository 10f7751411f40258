//! The load generator's Socket.IO client, on raw tokio-tungstenite.
//!
//! [`connect`] does the Engine.IO v4 / Socket.IO v5 handshake by hand
//! (`0{…}` open, `40/ai,{}` → `40/ai,{"sid":…}`); [`run`] then drives one
//! connection through a [`ClientPlan`]: it starts each stream at its offset
//! (`42/ai,<ack>["ai:stream",…]`), answers Engine.IO pings (`2` → `3`),
//! reads every frame, checks each stream's tokens arrive in order with none
//! missing, records each token's added latency (receive µs − the upstream's
//! send µs carried in the token), sends `ai:cancel` where the plan says, and
//! returns what it saw as a [`ClientResult`]. [`resume`] runs one stream
//! cut in the middle and resumed with `ai:reconnect` on a new connection
//! (possibly to another node), timing the resume and checking every
//! position arrives once. Frames are parsed once, into borrowed fields;
//! nothing the network sends is unwrapped.

use crate::upstream::{Script, now_us, script};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Open a websocket to `port` and join namespace `/ai`.
pub async fn connect(port: u16, timeout: Duration) -> Result<Ws, String> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let fut = async {
        // No Nagle: a cancel or a pong must leave at once, as a browser's would.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .map_err(|e| format!("websocket connect: {e}"))?;
        let mut joined = false;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| format!("handshake read: {e}"))?;
            let Message::Text(text) = msg else { continue };
            let t = text.as_str();
            if t.starts_with('0') && !joined {
                ws.send(Message::text("40/ai,{}"))
                    .await
                    .map_err(|e| format!("handshake send: {e}"))?;
                joined = true;
            } else if t.starts_with("40/ai,") {
                return Ok(ws);
            } else if t.starts_with("44/ai,") {
                return Err(format!("connect_error: {t}"));
            } else if t == "2" {
                ws.send(Message::text("3"))
                    .await
                    .map_err(|e| format!("pong: {e}"))?;
            }
        }
        Err("closed during handshake".to_string())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

/// One stream a client will run.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub id: String,
    pub script: Script,
    /// When to send `ai:stream`, from the run's start.
    pub start_after: Duration,
    /// Send `ai:cancel` once this many tokens have arrived.
    pub cancel_after: Option<u32>,
}

impl StreamPlan {
    pub fn new(id: String, tokens: u32, rate: f64, size: usize) -> Self {
        Self {
            script: Script {
                id: id.clone(),
                tokens,
                rate,
                size,
                ttft_ms: 0,
            },
            id,
            start_after: Duration::ZERO,
            cancel_after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub streams: Vec<StreamPlan>,
    /// Pause after each frame read: a slow reader.
    pub read_delay: Option<Duration>,
    pub record_latency: bool,
    /// Stay connected after the streams end, until `stop`.
    pub linger: bool,
    pub stop: CancellationToken,
    /// Hard bound on the run; unfinished streams past it are errors unless
    /// `stop` fired first.
    pub deadline: Instant,
}

#[derive(Debug, Default)]
pub struct ClientResult {
    /// Added latency of each token, µs.
    pub latencies_us: Vec<u32>,
    /// Per stream: `ai:stream` sent → first token received, µs.
    pub ttft_us: Vec<u64>,
    pub tokens: u64,
    /// Events that carried tokens (fewer than `tokens` when merged).
    pub token_events: u64,
    pub completed: u32,
    pub cancelled: u32,
    /// Streams still running when `stop` fired (expected for slow readers).
    pub cut_off: u32,
    /// (stream id, µs when `ai:cancel` was sent).
    pub cancel_sent: Vec<(String, u64)>,
    pub errors: Vec<String>,
}

#[derive(Default)]
struct StreamState {
    sent_us: u64,
    first_seen: bool,
    tokens: u32,
    terminal: bool,
    cancel_requested: bool,
}

/// The fields of any `/ai` event payload the client looks at.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(borrow, default)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    /// `ai:connected`.
    #[serde(borrow, default)]
    client_id: Option<Cow<'a, str>>,
    /// `ai:connected`, `ai:reconnect:success`.
    #[serde(borrow, default)]
    resume_token: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EventFrame<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow, default)] Payload<'a>,
);

#[derive(Deserialize)]
struct AckPayload {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Drive `ws` through `plan`.
pub async fn run(mut ws: Ws, plan: ClientPlan) -> ClientResult {
    let mut res = ClientResult::default();
    let t0 = Instant::now();
    let mut states: Vec<StreamState> = plan
        .streams
        .iter()
        .map(|_| StreamState::default())
        .collect();
    let index: HashMap<&str, usize> = plan
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut order: Vec<usize> = (0..plan.streams.len()).collect();
    order.sort_by_key(|&i| plan.streams[i].start_after);
    let mut next_start = 0usize;
    let mut open = plan.streams.len();
    let mut stopped = false;
    let far = t0 + Duration::from_secs(86_400);

    loop {
        if open == 0 && !plan.linger {
            break;
        }
        let start_at = order
            .get(next_start)
            .map(|&i| t0 + plan.streams[i].start_after)
            .unwrap_or(far);
        let frame = tokio::select! {
            biased;
            _ = plan.stop.cancelled(), if !stopped => { stopped = true; break; }
            _ = tokio::time::sleep_until(plan.deadline) => break,
            _ = tokio::time::sleep_until(start_at), if next_start < order.len() => {
                let i = order[next_start];
                next_start += 1;
                let sp = &plan.streams[i];
                let req = serde_json::json!({
                    "prompt": script(&sp.script),
                    "streamId": sp.id,
                    "provider": "ollama",
                    "useOrchestrator": false,
                });
                let text = format!("42/ai,{}[\"ai:stream\",{}]", i + 1, req);
                states[i].sent_us = now_us();
                if let Err(e) = ws.send(Message::text(text)).await {
                    res.errors.push(format!("send ai:stream: {e}"));
                    break;
                }
                continue;
            }
            f = ws.next() => f,
        };
        let recv_us = now_us();
        let text = match frame {
            None => {
                if open > 0 {
                    res.errors
                        .push(format!("connection closed with {open} streams open"));
                }
                return res;
            }
            Some(Err(e)) => {
                res.errors.push(format!("read: {e}"));
                return res;
            }
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) => {
                if open > 0 {
                    res.errors
                        .push(format!("server closed with {open} streams open"));
                }
                return res;
            }
            Some(Ok(_)) => continue,
        };
        let t = text.as_str();
        if t == "2" {
            if let Err(e) = ws.send(Message::text("3")).await {
                res.errors.push(format!("pong: {e}"));
                return res;
            }
        } else if let Some(body) = t.strip_prefix("42/ai,") {
            let mut cancels: Vec<usize> = Vec::new();
            match serde_json::from_str::<EventFrame>(body) {
                Err(e) => res
                    .errors
                    .push(format!("bad event frame ({e}): {}", clip(t))),
                Ok(EventFrame(name, p)) => {
                    let idx = p.stream_id.as_deref().and_then(|id| index.get(id).copied());
                    match (name.as_ref(), idx) {
                        ("ai:token", Some(i)) => {
                            let st = &mut states[i];
                            if st.terminal {
                                res.errors.push(format!(
                                    "token after terminal event on {}",
                                    plan.streams[i].id
                                ));
                            }
                            if !st.first_seen {
                                st.first_seen = true;
                                res.ttft_us.push(recv_us.saturating_sub(st.sent_us));
                            }
                            let data = p.data.as_deref().unwrap_or("");
                            let lat = plan.record_latency.then_some(&mut res.latencies_us);
                            let id = &plan.streams[i].id;
                            res.token_events += 1;
                            res.tokens += take_tokens(
                                data,
                                id,
                                &mut st.tokens,
                                lat,
                                recv_us,
                                &mut res.errors,
                            );
                            if let Some(n) = plan.streams[i].cancel_after
                                && st.tokens >= n
                                && !st.cancel_requested
                            {
                                st.cancel_requested = true;
                                cancels.push(i);
                            }
                        }
                        ("ai:done", Some(i)) => {
                            let st = &mut states[i];
                            let want = plan.streams[i].script.tokens;
                            if p.total_tokens != Some(u64::from(want)) || st.tokens != want {
                                res.errors.push(format!(
                                    "stream {} done with {} tokens received, totalTokens {:?}, want {want}",
                                    plan.streams[i].id, st.tokens, p.total_tokens
                                ));
                            }
                            if !st.terminal {
                                st.terminal = true;
                                open -= 1;
                                res.completed += 1;
                            }
                        }
                        ("ai:stream:cancelled", Some(i)) => {
                            let st = &mut states[i];
                            if !st.cancel_requested {
                                res.errors.push(format!(
                                    "stream {} cancelled unasked: {:?}",
                                    plan.streams[i].id, p.reason
                                ));
                            }
                            if !st.terminal {
                                st.terminal = true;
                                open -= 1;
                                res.cancelled += 1;
                            }
                        }
                        ("ai:stream:error", Some(i)) | ("ai:error", Some(i)) => {
                            res.errors.push(format!(
                                "{name} on {}: {}",
                                plan.streams[i].id,
                                clip(t)
                            ));
                            if !states[i].terminal {
                                states[i].terminal = true;
                                open -= 1;
                            }
                        }
                        ("ai:error", None) => {
                            res.errors
                                .push(format!("ai:error {:?}: {}", p.code, clip(t)))
                        }
                        _ => {}
                    }
                }
            }
            for i in cancels {
                let id = &plan.streams[i].id;
                let text = format!("42/ai,[\"ai:cancel\",{{\"streamId\":\"{id}\"}}]");
                res.cancel_sent.push((id.clone(), now_us()));
                if let Err(e) = ws.send(Message::text(text)).await {
                    res.errors.push(format!("send ai:cancel: {e}"));
                }
            }
        } else if let Some(rest) = t.strip_prefix("43/ai,") {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let id: usize = rest[..digits].parse().unwrap_or(0);
            match serde_json::from_str::<(AckPayload,)>(&rest[digits..]) {
                Ok((ack,)) if ack.ok => {}
                Ok((ack,)) => {
                    res.errors
                        .push(format!("ai:stream refused: {:?}", ack.error));
                    if let Some(st) = id.checked_sub(1).and_then(|i| states.get_mut(i))
                        && !st.terminal
                    {
                        st.terminal = true;
                        open -= 1;
                    }
                }
                Err(e) => res.errors.push(format!("bad ack ({e}): {}", clip(t))),
            }
        } else if t.starts_with("41/ai") {
            res.errors.push("server disconnected the namespace".into());
            return res;
        }
        if let Some(d) = plan.read_delay {
            tokio::time::sleep(d).await;
        }
    }
    if open > 0 {
        if stopped {
            res.cut_off += open as u32;
        } else {
            res.errors
                .push(format!("deadline passed with {open} streams unfinished"));
        }
    }
    let _ = ws.close(None).await;
    res
}

/// Take every `[<sent µs>:<seq>]` token marker out of `data` (one event's
/// text, several markers when tokens were merged): each must follow the
/// last one seen (`*last`), or the error names stream `id`. Records each
/// token's added latency into `lat` when given. Returns how many.
pub fn take_tokens(
    data: &str,
    id: &str,
    last: &mut u32,
    mut lat: Option<&mut Vec<u32>>,
    recv_us: u64,
    errors: &mut Vec<String>,
) -> u64 {
    let mut n = 0;
    for seg in data.split('[').skip(1) {
        let Some((sent, rest)) = seg.split_once(':') else {
            continue;
        };
        let Some((seq, _)) = rest.split_once(']') else {
            continue;
        };
        let (Ok(sent), Ok(seq)) = (sent.parse::<u64>(), seq.parse::<u32>()) else {
            errors.push(format!("bad token data {}", clip(data)));
            continue;
        };
        if seq != *last + 1 {
            errors.push(format!(
                "stream {id}: token {seq} after {last} (lost or reordered)"
            ));
        }
        *last = seq;
        n += 1;
        if let Some(lat) = lat.as_deref_mut() {
            lat.push(recv_us.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
        }
    }
    n
}

/// One resume: the stream, where to cut it, and the two nodes.
#[derive(Debug, Clone)]
pub struct ResumePlan {
    pub stream: StreamPlan,
    /// Stop reading once this many tokens have arrived.
    pub cut_after: u32,
    /// From then to the new connection: half of it the old socket stays
    /// open unread (tokens sent into it are lost with it), then it is
    /// dropped (the stream runs on meanwhile, so there is something to
    /// replay and something queued).
    pub gap: Duration,
    /// The node the stream starts on, and the one the client resumes on.
    pub first_port: u16,
    pub resume_port: u16,
    pub deadline: Instant,
}

/// What one resume saw.
#[derive(Debug, Default)]
pub struct ResumeResult {
    /// `ai:reconnect` sent → `ai:reconnect:success` received, µs.
    pub success_us: Option<u64>,
    /// `ai:reconnect` sent → the first token after it, µs.
    pub first_token_us: Option<u64>,
    /// Positions received before the cut, and in all.
    pub before_cut: u32,
    pub tokens: u32,
    pub completed: bool,
    pub errors: Vec<String>,
}

/// Read frames until `ai:connected` (after [`connect`]): the client's id
/// and resume token.
async fn read_identity(ws: &mut Ws, deadline: Instant) -> Result<(String, String), String> {
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no ai:connected before the deadline".to_string())?
            .ok_or("closed before ai:connected")?
            .map_err(|e| format!("read: {e}"))?;
        let Message::Text(text) = msg else { continue };
        let t = text.as_str();
        if t == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| format!("pong: {e}"))?;
        } else if let Some(body) = t.strip_prefix("42/ai,")
            && let Ok(EventFrame(name, p)) = serde_json::from_str::<EventFrame>(body)
            && name == "ai:connected"
        {
            return match (p.client_id, p.resume_token) {
                (Some(id), Some(token)) => Ok((id.into_owned(), token.into_owned())),
                _ => Err(format!(
                    "ai:connected without clientId/resumeToken: {}",
                    clip(t)
                )),
            };
        }
    }
}

/// Connect to `first_port`, start the stream, stop reading after
/// `cut_after` tokens, cut the transport half of `gap` later (the socket
/// dropped with what it holds unread, no close frame), wait the rest,
/// connect to `resume_port` and send `ai:reconnect` with the stream's
/// `lastTokenCount`; then read to `ai:done`, checking that the positions
/// after the cut follow the ones before it, each once.
pub async fn resume(plan: ResumePlan) -> ResumeResult {
    let mut res = ResumeResult::default();
    if let Err(e) = resume_inner(&plan, &mut res).await {
        res.errors.push(e);
    }
    res
}

async fn resume_inner(plan: &ResumePlan, res: &mut ResumeResult) -> Result<(), String> {
    let sp = &plan.stream;
    let left = plan.deadline.saturating_duration_since(Instant::now());
    let mut ws = connect(plan.first_port, left).await?;
    let (client_id, token) = read_identity(&mut ws, plan.deadline).await?;
    let req = serde_json::json!({
        "prompt": script(&sp.script),
        "streamId": sp.id,
        "provider": "ollama",
        "useOrchestrator": false,
    });
    ws.send(Message::text(format!("42/ai,1[\"ai:stream\",{req}]")))
        .await
        .map_err(|e| format!("send ai:stream: {e}"))?;
    let mut last = 0u32;
    // Before the cut.
    while last < plan.cut_after {
        let ev = next_event(&mut ws, plan.deadline).await?;
        match ev {
            Event::Ack(ok, body) if !ok => return Err(format!("ai:stream refused: {body}")),
            Event::Ack(..) | Event::Other => {}
            Event::Named(body) => {
                let Ok(EventFrame(n, p)) = serde_json::from_str::<EventFrame>(&body) else {
                    return Err(format!("bad event frame: {}", clip(&body)));
                };
                match n.as_ref() {
                    "ai:token" => {
                        take_tokens(
                            p.data.as_deref().unwrap_or(""),
                            &sp.id,
                            &mut last,
                            None,
                            0,
                            &mut res.errors,
                        );
                    }
                    "ai:done" => return Err(format!("{} done before the cut", sp.id)),
                    "ai:stream:error" | "ai:error" | "ai:stream:cancelled" => {
                        return Err(format!("{n}: {}", clip(&body)));
                    }
                    _ => {}
                }
            }
        }
    }
    res.before_cut = last;
    // The network goes quiet for the first half of the gap: what the
    // gateway writes meanwhile reaches the old socket's buffer and is lost
    // with it (to be replayed); in the second half the client is detached
    // and the home queues what the stream produces.
    tokio::time::sleep(plan.gap / 2).await;
    drop(ws);
    tokio::time::sleep(plan.gap - plan.gap / 2).await;
    let left = plan.deadline.saturating_duration_since(Instant::now());
    let mut ws = connect(plan.resume_port, left).await?;
    let req = serde_json::json!({
        "previousClientId": client_id,
        "resumeToken": token,
        "streams": [{ "streamId": sp.id, "lastTokenCount": last }],
    });
    let sent = Instant::now();
    ws.send(Message::text(format!("42/ai,[\"ai:reconnect\",{req}]")))
        .await
        .map_err(|e| format!("send ai:reconnect: {e}"))?;
    loop {
        let ev = next_event(&mut ws, plan.deadline).await?;
        let Event::Named(body) = ev else {
            continue;
        };
        let Ok(EventFrame(n, p)) = serde_json::from_str::<EventFrame>(&body) else {
            return Err(format!("bad event frame: {}", clip(&body)));
        };
        match n.as_ref() {
            "ai:reconnect:success" => {
                if res.success_us.is_some() {
                    res.errors.push("second ai:reconnect:success".into());
                }
                res.success_us = Some(sent.elapsed().as_micros() as u64);
            }
            "ai:reconnect:failed" => return Err(format!("resume refused: {}", clip(&body))),
            "ai:token" if p.stream_id.as_deref() == Some(sp.id.as_str()) => {
                if res.success_us.is_none() {
                    res.errors
                        .push(format!("{}: token before ai:reconnect:success", sp.id));
                }
                res.first_token_us
                    .get_or_insert_with(|| sent.elapsed().as_micros() as u64);
                take_tokens(
                    p.data.as_deref().unwrap_or(""),
                    &sp.id,
                    &mut last,
                    None,
                    0,
                    &mut res.errors,
                );
            }
            "ai:done" if p.stream_id.as_deref() == Some(sp.id.as_str()) => {
                let want = sp.script.tokens;
                if p.total_tokens != Some(u64::from(want)) || last != want {
                    res.errors.push(format!(
                        "stream {} done with {last} positions received, totalTokens {:?}, want {want}",
                        sp.id, p.total_tokens
                    ));
                }
                res.completed = true;
                break;
            }
            "ai:stream:error" | "ai:error" | "ai:stream:cancelled" => {
                return Err(format!("{n} after resume: {}", clip(&body)));
            }
            _ => {}
        }
    }
    res.tokens = last;
    let _ = ws.close(None).await;
    Ok(())
}

/// A frame of the `/ai` namespace, as [`resume`] needs it.
enum Event {
    /// `42/ai,…`: the event's JSON array.
    Named(String),
    /// `43/ai,<id>[…]`: whether `ok`, and the body.
    Ack(bool, String),
    Other,
}

/// Read the next frame (answering pings), bounded by `deadline`.
async fn next_event(ws: &mut Ws, deadline: Instant) -> Result<Event, String> {
    let msg = tokio::time::timeout_at(deadline, ws.next())
        .await
        .map_err(|_| "deadline passed".to_string())?
        .ok_or("connection closed")?
        .map_err(|e| format!("read: {e}"))?;
    let text = match msg {
        Message::Text(t) => t,
        Message::Close(_) => return Err("server closed".into()),
        _ => return Ok(Event::Other),
    };
    let t = text.as_str();
    if t == "2" {
        ws.send(Message::text("3"))
            .await
            .map_err(|e| format!("pong: {e}"))?;
        Ok(Event::Other)
    } else if let Some(body) = t.strip_prefix("42/ai,") {
        Ok(Event::Named(body.to_string()))
    } else if let Some(rest) = t.strip_prefix("43/ai,") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ok = serde_json::from_str::<(AckPayload,)>(&rest[digits..]).is_ok_and(|(a,)| a.ok);
        Ok(Event::Ack(ok, rest.to_string()))
    } else if t.starts_with("41/ai") {
        Err("server disconnected the namespace".into())
    } else {
        Ok(Event::Other)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}
