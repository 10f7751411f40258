//! The load generator's HTTP streaming client: one server-sent-events
//! request per stream, over reqwest (HTTP/1.1, TCP_NODELAY, one connection
//! per stream in flight).
//!
//! [`run`] sends the stream's request at its offset to one of two doors
//! ([`Api`]): the OpenAI-compatible `POST /v1/chat/completions` with
//! `stream: true` (streamgate's and LiteLLM's), or streamgate's own
//! `POST /api/chat/stream`. It reads the event stream, takes every token
//! marker out of each event's text with the same check as the Socket.IO
//! client ([`client::take_tokens`]: in order, none missing), checks the end
//! (`[DONE]`, or the `done` object with the right count), and for a cancel
//! drops the response after `cancel_after` tokens, which closes the
//! connection: what a browser's `AbortController` does.

use crate::client::{self, ClientResult, StreamPlan};
use crate::upstream::{now_us, script};
use futures_util::StreamExt;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::time::Instant;

/// Which HTTP door a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST /v1/chat/completions`, `stream: true` (chunks, then `[DONE]`).
    Openai,
    /// streamgate's `POST /api/chat/stream` (`{token,count}`, then `done`).
    Sse,
}

/// A shared HTTP client: a connection per stream in flight, no Nagle.
pub fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// What one stream asks of a door: the path and the JSON body.
fn request(api: Api, model: &str, sp: &StreamPlan) -> (&'static str, serde_json::Value) {
    let prompt = script(&sp.script);
    match api {
        Api::Openai => (
            "/v1/chat/completions",
            serde_json::json!({
                "model": model,
                "stream": true,
                "messages": [{ "role": "user", "content": prompt }],
            }),
        ),
        Api::Sse => (
            "/api/chat/stream",
            serde_json::json!({
                "message": prompt,
                "provider": "ollama",
                "use_orchestrator": false,
            }),
        ),
    }
}

/// The fields of an event's JSON either door sends that the client reads.
#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    tokens: Option<u64>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Delta<'a>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// Where a stream stands.
#[derive(Default)]
struct State {
    tokens: u32,
    first_seen: bool,
    ended: bool,
}

/// Where and how a target takes HTTP streams.
pub struct Door {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub api: Api,
    pub model: &'static str,
    /// A bearer token to send, if the target wants one.
    pub key: Option<&'static str>,
}

/// Run one stream through `door`.
pub async fn run(
    http: reqwest::Client,
    door: Arc<Door>,
    sp: StreamPlan,
    record_latency: bool,
    deadline: Instant,
) -> ClientResult {
    let mut res = ClientResult::default();
    tokio::time::sleep(sp.start_after).await;
    let (path, body) = request(door.api, door.model, &sp);
    let base = &door.base;
    let sent_us = now_us();
    let mut req = http.post(format!("{base}{path}")).json(&body);
    if let Some(key) = door.key {
        req = req.bearer_auth(key);
    }
    let sent = req.send();
    let resp = match tokio::time::timeout_at(deadline, sent).await {
        Ok(Ok(r)) if r.status().is_success() => r,
        Ok(Ok(r)) => {
            res.errors.push(format!("{}: status {}", sp.id, r.status()));
            return res;
        }
        Ok(Err(e)) => {
            res.errors.push(format!("{}: request: {e}", sp.id));
            return res;
        }
        Err(_) => {
            res.errors
                .push(format!("{}: no answer by the deadline", sp.id));
            return res;
        }
    };
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut st = State::default();
    while !st.ended {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => {
                res.errors.push(format!("{}: deadline passed", sp.id));
                return res;
            }
            Ok(None) => {
                res.errors
                    .push(format!("{}: body ended after {} tokens", sp.id, st.tokens));
                return res;
            }
            Ok(Some(Err(e))) => {
                res.errors.push(format!("{}: read: {e}", sp.id));
                return res;
            }
            Ok(Some(Ok(c))) => c,
        };
        let recv_us = now_us();
        buf.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end.1).collect();
            on_event(
                &event[..end.0],
                &sp,
                &mut st,
                &mut res,
                record_latency,
                recv_us,
                sent_us,
            );
        }
        if let Some(n) = sp.cancel_after
            && st.tokens >= n
            && !st.ended
        {
            // Dropping the body closes the connection: the cancel.
            res.cancel_sent.push((sp.id.clone(), now_us()));
            drop(body);
            res.cancelled += 1;
            return res;
        }
    }
    res
}

/// The end of the first complete event in `buf`: (its length without the
/// blank line, the length with it).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2))
}

/// One event: its `data:` lines, as either door writes them.
fn on_event(
    event: &[u8],
    sp: &StreamPlan,
    st: &mut State,
    res: &mut ClientResult,
    record_latency: bool,
    recv_us: u64,
    sent_us: u64,
) {
    let Ok(text) = std::str::from_utf8(event) else {
        res.errors.push(format!("{}: event is not UTF-8", sp.id));
        return;
    };
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim_start) else {
            continue;
        };
        if data == "[DONE]" {
            finish(sp, st, res, None);
            continue;
        }
        let d: Data = match serde_json::from_str(data) {
            Ok(d) => d,
            Err(e) => {
                res.errors
                    .push(format!("{}: bad event ({e}): {}", sp.id, clip(data)));
                continue;
            }
        };
        if let Some(e) = d.error {
            res.errors.push(format!("{}: error event {e}", sp.id));
            st.ended = true;
            continue;
        }
        let text = d
            .token
            .or_else(|| d.choices.into_iter().next().and_then(|c| c.delta.content));
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            if !st.first_seen {
                st.first_seen = true;
                res.ttft_us.push(recv_us.saturating_sub(sent_us));
            }
            let lat = record_latency.then_some(&mut res.latencies_us);
            let got =
                client::take_tokens(&text, &sp.id, &mut st.tokens, lat, recv_us, &mut res.errors);
            res.tokens += got;
            res.token_events += 1;
            if got == 0 {
                res.errors
                    .push(format!("{}: no token in {}", sp.id, clip(&text)));
            }
        }
        if d.done {
            finish(sp, st, res, d.tokens);
        }
    }
}

/// The stream's end: every token there, and the count right when told.
fn finish(sp: &StreamPlan, st: &mut State, res: &mut ClientResult, told: Option<u64>) {
    if st.ended {
        return;
    }
    st.ended = true;
    let want = sp.script.tokens;
    if st.tokens != want || told.is_some_and(|n| n != u64::from(want)) {
        res.errors.push(format!(
            "stream {} ended with {} tokens received (told {told:?}), want {want}",
            sp.id, st.tokens
        ));
    }
    res.completed += 1;
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}
