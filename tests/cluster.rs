//! Many nodes on one Redis (PROTOCOL.md part 2, "Many nodes"), as a
//! deployer runs them: one `redis-server` on a free port and two gateway
//! processes (the real binary, `REDIS_URL` set) in front of one fake
//! Ollama, driven by real clients (the raw Socket.IO client, reqwest).
//!
//! What is checked: a session's turn on node A and the next on node B
//! with the history intact, and the HTTP session endpoints answering the
//! same on both; one live stream per session across the nodes; the
//! per-user stream budget spent on both nodes together; `GET
//! /stats/cluster` listing both nodes on either; `/readyz` going 503 (with
//! its reason, logged once) when redis-server is killed while the nodes
//! keep streaming, and 200 again when it is restarted on the same port,
//! without restarting the nodes; the session bounds (messages per
//! session, sessions per user) kept in Redis; a node killed mid-stream
//! leaving the node table and its session's lease lapsing; `/ai` clients
//! resumed on the other node (exactly once, cancels and acks reaching the
//! home, a dead home's streams ending `node_lost`); resumable HTTP streams
//! resumed and cancelled through the other node.
//!
//! Every test skips, saying so, when `redis-server` is not on PATH (CI
//! installs it).

mod common;

use common::binary::Binary;
use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use common::{check_stream_order, is_terminal};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const SECRET: &str = "test-only-hs256-secret-for-cluster-tests!";

/// A `redis-server` of this test's own, on `port`, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Start one on a free port; `None` (after saying why) when there is
    /// no `redis-server` on PATH.
    async fn start() -> Option<Self> {
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v redis-server"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED: redis-server is not on PATH (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Some(Self::start_on(port).await)
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let server = Self { child, port };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !server.answers().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on port {port} did not answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Whether it answers `PING`.
    async fn answers(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read_exact(&mut buf).await.is_ok()
            && &buf == b"+PONG\r\n"
    }

    /// `calls` of each command in `INFO commandstats` (for the printed
    /// cost figures).
    async fn calls(&self, commands: &[&str]) -> Vec<u64> {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return vec![0; commands.len()];
        };
        let _ = s.write_all(b"INFO commandstats\r\n").await;
        let mut text = String::new();
        let mut buf = vec![0u8; 65_536];
        // One bulk reply; read until it stops coming.
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        commands
            .iter()
            .map(|c| {
                let key = format!("cmdstat_{c}:calls=");
                text.split(&key)
                    .nth(1)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn kill(mut self) -> u16 {
        let _ = self.child.kill().await;
        self.port
    }
}

/// Two nodes on one Redis and one fake Ollama.
struct TwoNodes {
    a: Binary,
    b: Binary,
    fake: FakeOllama,
}

/// The fake Ollama's replies: `slow` (100 tokens, 20 ms apart), `long…`
/// (120 tokens, 5 ms apart), `forever…` (100,000, 20 ms apart), any other
/// prompt "re: " and the prompt's first 12 bytes, in two tokens.
fn scripted(prompt: &str) -> Script {
    match prompt {
        "slow" => Script::tokens(100, 20),
        p if p.starts_with("long") => Script::tokens(120, 5),
        p if p.starts_with("many") => Script::tokens(600, 3),
        p if p.starts_with("flood") => Script::sized(50_000, 64, 0),
        p if p.starts_with("forever") => Script::tokens(100_000, 20),
        p => Script {
            tokens: vec!["re: ".into(), p[..p.len().min(12)].into()],
            ..Script::tokens(0, 1)
        },
    }
}

fn reply_to(prompt: &str) -> String {
    format!("re: {}", &prompt[..prompt.len().min(12)])
}

impl TwoNodes {
    /// Nodes `a` and `b` with auth on, on `redis`, with `extra` env.
    async fn start(redis: &RedisServer, extra: &[(&str, &str)]) -> Self {
        let fake = FakeOllama::start(scripted).await;
        let base = fake.base_url();
        let url = redis.url();
        let node = |id: &'static str| {
            let mut env: Vec<(&str, &str)> = vec![
                ("REDIS_URL", url.as_str()),
                ("STREAMGATE_REDIS__NODE_ID", id),
                ("STREAMGATE_REDIS__HEARTBEAT_INTERVAL_MS", "200"),
                ("OLLAMA_BASE_URL", base.as_str()),
                ("STREAMGATE_PROVIDERS__OLLAMA__FALLBACK", "[]"),
                ("STREAMGATE_JWT_SECRET", SECRET),
            ];
            env.extend_from_slice(extra);
            env
        };
        let a = Binary::spawn(&[], &node("node-a")).await;
        let b = Binary::spawn(&[], &node("node-b")).await;
        Self { a, b, fake }
    }

    async fn stop(self) {
        self.a.kill().await;
        self.b.kill().await;
    }
}

async fn connect_as(addr: SocketAddr, sub: &str) -> SioClient {
    let token = common::jwt::hs256(SECRET, sub);
    SioClient::connect(addr, json!({ "token": token }))
        .await
        .expect("connect")
}

/// A session turn routed straight to Ollama (no system prompt).
fn direct(prompt: &str, session: &str) -> Value {
    json!({ "prompt": prompt, "sessionId": session, "provider": "ollama", "useOrchestrator": false })
}

/// One whole turn: the ack, then the stream's events up to its terminal.
async fn turn(c: &mut SioClient, payload: Value) -> Vec<(String, Value)> {
    let ack = c.emit_ack("ai:stream", payload).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let id = ack["streamId"].as_str().expect("streamId").to_string();
    let all = c
        .events_until(|n, p| is_terminal(n) && p["streamId"] == id.as_str())
        .await;
    all.into_iter()
        .filter(|(_, p)| p["streamId"] == id.as_str())
        .collect()
}

async fn get(addr: SocketAddr, path: &str, sub: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(sub) = sub {
        req = req.bearer_auth(common::jwt::hs256(SECRET, sub));
    }
    let r = req.send().await.expect("http");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(addr: SocketAddr, path: &str, sub: &str) -> u16 {
    reqwest::Client::new()
        .delete(format!("http://{addr}{path}"))
        .bearer_auth(common::jwt::hs256(SECRET, sub))
        .send()
        .await
        .expect("http")
        .status()
        .as_u16()
}

/// Poll `path` on `addr` until its status is `want` (10 s at most).
async fn wait_status(addr: SocketAddr, path: &str, want: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(addr, path, None).await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} on {addr} stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_session_continues_on_the_other_node_and_both_nodes_agree() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[]).await;
    let (a, b) = (nodes.a.addr, nodes.b.addr);
    let mut on_a = connect_as(a, "alice").await;
    let mut on_b = connect_as(b, "alice").await;
    let first = turn(&mut on_a, direct("Explain this code", "chat-x")).await;
    let (text, end) = check_stream_order(&first.iter().collect::<Vec<_>>());
    assert_eq!(
        (text.as_str(), end.as_str()),
        ("re: Explain this", "ai:done")
    );
    let second = turn(&mut on_b, direct("And the next line", "chat-x")).await;
    let done = &second.last().expect("terminal").1;
    assert_eq!(
        (&done["sessionId"], &done["turn"]),
        (&json!("chat-x"), &json!(2))
    );
    // Node B sent the turn kept by node A before the new prompt.
    let log = nodes.fake.log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].body["messages"],
        json!([
            { "role": "user", "content": "Explain this code" },
            { "role": "assistant", "content": reply_to("Explain this code") },
            { "role": "user", "content": "And the next line" },
        ])
    );
    // The HTTP endpoints answer the same on both nodes.
    let (sa, list_a) = get(a, "/api/chat/sessions", Some("alice")).await;
    let (sb, list_b) = get(b, "/api/chat/sessions", Some("alice")).await;
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(list_a, list_b);
    assert_eq!(list_a["sessions"][0]["id"], "chat-x", "{list_a}");
    assert_eq!(list_a["sessions"][0]["turns"], 2);
    assert_eq!(list_a["sessions"][0]["messages"], 4);
    let (_, one_a) = get(a, "/api/chat/sessions/chat-x", Some("alice")).await;
    let (_, one_b) = get(b, "/api/chat/sessions/chat-x", Some("alice")).await;
    assert_eq!(one_a, one_b);
    assert_eq!(
        one_a["messages"][3]["content"],
        reply_to("And the next line")
    );
    assert_eq!(one_a["messages"][3]["status"], "complete");
    // Another user sees nothing of it on either node.
    let (status, _) = get(b, "/api/chat/sessions/chat-x", Some("mallory")).await;
    assert_eq!(status, 404);
    let mut mallory = connect_as(a, "mallory").await;
    let ack = mallory
        .emit_ack("ai:stream", direct("mine now", "chat-x"))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");

    // One live stream per session, across the nodes.
    let ack = on_a.emit_ack("ai:stream", direct("slow", "chat-x")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let busy = on_b
        .emit_ack("ai:stream", direct("meanwhile", "chat-x"))
        .await;
    assert_eq!(busy["error"]["code"], "session_busy", "{busy}");
    assert_eq!(delete(b, "/api/chat/sessions/chat-x", "alice").await, 409);
    let id = ack["streamId"].as_str().expect("streamId").to_string();
    on_a.emit("ai:cancel", json!({ "streamId": id })).await;
    on_a.events_until(|n, p| is_terminal(n) && p["streamId"] == id.as_str())
        .await;
    // Free again on the other node once A's stream ended; deleted on B,
    // gone on A.
    let third = turn(&mut on_b, direct("Third turn", "chat-x")).await;
    assert_eq!(third.last().expect("terminal").1["turn"], 4);
    assert_eq!(delete(b, "/api/chat/sessions/chat-x", "alice").await, 204);
    let (status, _) = get(a, "/api/chat/sessions/chat-x", Some("alice")).await;
    assert_eq!(status, 404);
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn per_user_stream_limits_hold_across_two_nodes() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // 6 a minute with a burst of 4: the fifth start within the minute is
    // refused, whichever node it goes to.
    let limits = [
        ("STREAMGATE_LIMITS__STREAMS_PER_MINUTE", "6"),
        ("STREAMGATE_LIMITS__STREAMS_BURST", "4"),
    ];
    let nodes = TwoNodes::start(&redis, &limits).await;
    let mut on_a = connect_as(nodes.a.addr, "bob").await;
    let mut on_b = connect_as(nodes.b.addr, "bob").await;
    let ask = json!({ "prompt": "hi", "provider": "ollama", "useOrchestrator": false });
    for i in 0..4 {
        let c = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        let ack = c.emit_ack("ai:stream", ask.clone()).await;
        assert_eq!(ack["ok"], true, "start {i}: {ack}");
    }
    for c in [&mut on_a, &mut on_b] {
        let ack = c.emit_ack("ai:stream", ask.clone()).await;
        assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
        let wait = ack["error"]["details"]["retryAfterMs"]
            .as_u64()
            .unwrap_or(0);
        assert!((1..=10_000).contains(&wait), "{ack}");
    }
    // Another user's budget is their own.
    let mut carol = connect_as(nodes.b.addr, "carol").await;
    let ack = carol.emit_ack("ai:stream", ask.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn stats_cluster_lists_both_nodes_on_either() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[]).await;
    let _one = connect_as(nodes.a.addr, "dave").await;
    let _two = connect_as(nodes.b.addr, "erin").await;
    for addr in [nodes.a.addr, nodes.b.addr] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = get(addr, "/stats/cluster", None).await;
            assert_eq!(status, 200, "{body}");
            let ids: Vec<&str> = body["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .filter_map(|n| n["id"].as_str())
                .collect();
            let live = body["total"]["connections"]["live"].as_u64();
            if ids == ["node-a", "node-b"] && live == Some(2) {
                assert!(["node-a", "node-b"].contains(&body["node"].as_str().unwrap_or("")));
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stats/cluster never listed both nodes with 2 connections: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn readyz_follows_redis_and_the_nodes_recover_without_restart() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[]).await;
    let (a, b) = (nodes.a.addr, nodes.b.addr);
    for addr in [a, b] {
        let body = wait_status(addr, "/readyz", 200).await;
        assert_eq!(body["redis"]["reachable"], true, "{body}");
    }
    let mut on_a = connect_as(a, "frank").await;
    let port = redis.kill().await;
    for addr in [a, b] {
        let body = wait_status(addr, "/readyz", 503).await;
        assert_eq!(
            (&body["ready"], &body["reason"], &body["redis"]["reachable"]),
            (&json!(false), &json!("redis unreachable"), &json!(false)),
            "{body}"
        );
    }
    // Still serving the streams it runs: the per-user budget falls back
    // to the node's own limiter.
    let events = turn(
        &mut on_a,
        json!({ "prompt": "still here", "provider": "ollama", "useOrchestrator": false }),
    )
    .await;
    let (text, end) = check_stream_order(&events.iter().collect::<Vec<_>>());
    assert_eq!((text.as_str(), end.as_str()), ("re: still here", "ai:done"));
    // A session needs Redis: refused with server_busy (retryable by the
    // protocol's table), in the ack and in ai:error.
    let ack = on_a.emit_ack("ai:stream", direct("remember", "s-1")).await;
    assert_eq!(ack["error"]["code"], "server_busy", "{ack}");
    let err = on_a
        .events_until(|n, _| n == "ai:error")
        .await
        .pop()
        .expect("ai:error")
        .1;
    assert_eq!(err["code"], "server_busy", "{err}");
    // Several more failed checks, one log line for the loss.
    for _ in 0..3 {
        get(a, "/readyz", None).await;
    }
    let redis = RedisServer::start_on(port).await;
    for addr in [a, b] {
        wait_status(addr, "/readyz", 200).await;
    }
    let turned = turn(&mut on_a, direct("remember", "s-1")).await;
    assert_eq!(turned.last().expect("terminal").0, "ai:done");
    let mut on_b = connect_as(b, "frank").await;
    let next = turn(&mut on_b, direct("recall", "s-1")).await;
    assert_eq!(next.last().expect("terminal").1["turn"], 2);
    let log = nodes.a.log();
    assert_eq!(log.matches("redis lost").count(), 1, "{log}");
    assert_eq!(log.matches("redis back").count(), 1, "{log}");
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn session_bounds_hold_in_redis() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let bounds = [
        ("STREAMGATE_SESSIONS__MAX_MESSAGES", "4"),
        ("STREAMGATE_SESSIONS__MAX_PER_USER", "2"),
    ];
    let nodes = TwoNodes::start(&redis, &bounds).await;
    let (a, b) = (nodes.a.addr, nodes.b.addr);
    let mut on_a = connect_as(a, "gina").await;
    let mut on_b = connect_as(b, "gina").await;
    // Three turns on one session, alternating nodes: the oldest dropped.
    for (i, p) in ["one", "two", "three"].iter().enumerate() {
        let c = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        turn(c, direct(p, "s1")).await;
    }
    let (_, s1) = get(b, "/api/chat/sessions/s1", Some("gina")).await;
    assert_eq!(s1["turns"], 3, "{s1}");
    let contents: Vec<&str> = s1["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["two", "re: two", "three", "re: three"]);
    // A third session of the user evicts the least recently used (s1).
    turn(&mut on_b, direct("x", "s2")).await;
    turn(&mut on_a, direct("y", "s3")).await;
    let (_, list) = get(a, "/api/chat/sessions", Some("gina")).await;
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["s3", "s2"], "{list}");
    let (status, _) = get(b, "/api/chat/sessions/s1", Some("gina")).await;
    assert_eq!(status, 404);
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn a_killed_node_leaves_the_table_and_frees_its_sessions() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[]).await;
    let (a, b) = (nodes.a.addr, nodes.b.addr);
    let mut on_a = connect_as(a, "hana").await;
    let mut on_b = connect_as(b, "hana").await;
    let ack = on_a.emit_ack("ai:stream", direct("slow", "s-k")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Wait for a token, so the stream is running on A.
    on_a.events_until(|n, _| n == "ai:token").await;
    let busy = on_b.emit_ack("ai:stream", direct("b too", "s-k")).await;
    assert_eq!(busy["error"]["code"], "session_busy", "{busy}");
    // SIGKILL: no goodbye, no release; the lease and the liveness key
    // lapse after 3 heartbeats (200 ms each here).
    nodes.a.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ack = on_b.emit_ack("ai:stream", direct("b now", "s-k")).await;
        if ack["ok"] == true {
            break;
        }
        assert_eq!(ack["error"]["code"], "session_busy", "{ack}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session stayed busy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = get(b, "/stats/cluster", None).await;
    let ids: Vec<&str> = body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, ["node-b"], "{body}");
    nodes.b.kill().await;
    redis.kill().await;
}

/// What a client knows of one stream.
#[derive(Default, Debug)]
struct Seen {
    started: bool,
    last: u64,
    text: String,
    ended: Option<String>,
    code: Option<String>,
}

/// A client that survives cuts: its id, resume token and every stream's
/// position, each event checked against them (no gap, no duplicate).
struct ResumingClient {
    client_id: String,
    token: String,
    streams: std::collections::BTreeMap<String, Seen>,
}

impl ResumingClient {
    fn new(c: &SioClient) -> Self {
        Self {
            client_id: c.connected["clientId"].as_str().expect("clientId").into(),
            token: c.connected["resumeToken"].as_str().expect("token").into(),
            streams: Default::default(),
        }
    }

    fn absorb(&mut self, name: &str, p: &Value) {
        let Some(id) = p["streamId"].as_str() else {
            return;
        };
        let s = self.streams.entry(id.to_string()).or_default();
        assert!(s.ended.is_none(), "{name} after the end of {id}: {p}");
        match name {
            "ai:stream:start" => {
                assert!(!s.started, "second start for {id}");
                s.started = true;
            }
            "ai:token" => {
                let n = p["tokenCount"].as_u64().expect("tokenCount");
                let merged = p["metadata"]["coalesced"].as_u64().unwrap_or(1);
                assert_eq!(n - merged, s.last, "gap or duplicate on {id}: {p}");
                s.last = n;
                s.text.push_str(p["data"].as_str().expect("data"));
            }
            "ai:done" | "ai:stream:cancelled" | "ai:stream:error" => {
                s.ended = Some(name.to_string());
                s.code = p["code"].as_str().map(str::to_owned);
            }
            _ => {}
        }
    }

    /// Read (acking every token) until `pred` holds.
    async fn read_until(&mut self, c: &mut SioClient, pred: impl Fn(&Self) -> bool) {
        if !self.read_within(c, Duration::from_secs(15), pred).await {
            panic!("timed out; seen {:?}", self.streams);
        }
    }

    /// The same, false when `within` passed first.
    async fn read_within(
        &mut self,
        c: &mut SioClient,
        within: Duration,
        pred: impl Fn(&Self) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !pred(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some((name, p)) = c.next_event_within(left).await else {
                return false;
            };
            if name == "ai:token" {
                c.ack_token(&p).await;
            }
            self.absorb(&name, &p);
        }
        true
    }

    /// Connect to `addr` as `sub` and resume there.
    async fn reconnect(&mut self, addr: SocketAddr, sub: &str) -> SioClient {
        let mut c = connect_as(addr, sub).await;
        let streams: Vec<Value> = self
            .streams
            .iter()
            .filter(|(_, s)| s.ended.is_none())
            .map(|(id, s)| match s.started {
                true => json!({"streamId": id, "lastTokenCount": s.last}),
                false => json!({"streamId": id}),
            })
            .collect();
        let req = json!({"previousClientId": self.client_id, "resumeToken": self.token, "streams": streams});
        c.emit("ai:reconnect", req).await;
        loop {
            let (name, p) = c.next_event().await.expect("reconnect answer");
            match name.as_str() {
                "ai:reconnect:success" => {
                    assert_eq!(p["newClientId"], c.connected["clientId"], "{p}");
                    self.client_id = p["newClientId"].as_str().expect("id").into();
                    self.token = p["resumeToken"].as_str().expect("token").into();
                    return c;
                }
                "ai:reconnect:failed" => panic!("resume refused: {p}"),
                _ => self.absorb(&name, &p),
            }
        }
    }
}

/// Start stream `id` (known to `rc` from now on).
async fn start_stream(c: &mut SioClient, rc: &mut ResumingClient, prompt: &str, id: &str) {
    rc.streams.entry(id.to_string()).or_default();
    let ask =
        json!({"prompt": prompt, "streamId": id, "provider": "ollama", "useOrchestrator": false});
    let ack = c.emit_ack("ai:stream", ask).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

const WINDOW: (&str, &str) = ("RECONNECT_TIMEOUT", "10000");

#[tokio::test]
async fn a_client_cut_on_one_node_resumes_on_the_other_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "ivan").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "long-one", "one").await;
    start_stream(&mut c, &mut rc, "long-two", "two").await;
    rc.read_until(&mut c, |r| {
        r.streams.values().map(|s| s.last).sum::<u64>() >= 30
    })
    .await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counted = ["xadd", "xread"];
    let before = redis.calls(&counted).await;
    let positions_before = rc.streams.values().map(|s| s.last).sum::<u64>();
    // On B, then cut again and back on A, then on B again.
    let mut c = rc.reconnect(nodes.b.addr, "ivan").await;
    rc.read_until(&mut c, |r| {
        r.streams.values().map(|s| s.last).sum::<u64>() >= 90
    })
    .await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = rc.reconnect(nodes.b.addr, "ivan").await;
    rc.read_until(&mut c, |r| r.streams.values().all(|s| s.ended.is_some()))
        .await;
    let after = redis.calls(&counted).await;
    let via_b = rc.streams.values().map(|s| s.last).sum::<u64>() - positions_before;
    let (_, stats_a) = get(nodes.a.addr, "/stats", None).await;
    let batches = stats_a["resume"]["remoteBatches"].as_u64().unwrap_or(0);
    let events = stats_a["resume"]["remoteEvents"].as_u64().unwrap_or(0);
    // An event may carry several positions (the outbox merges deltas at take
    // time), and a batch carries one or more events.
    assert!(batches > 0 && events >= batches && via_b > 0, "{stats_a}");
    eprintln!(
        "through node B: {via_b} positions in {events} events, {batches} batches \
         (one XADD round trip each); redis XADD {} in all (batches and forwarded \
         commands), XREAD {}",
        after[0] - before[0],
        after[1] - before[1]
    );
    for id in ["one", "two"] {
        let s = &rc.streams[id];
        assert_eq!(s.ended.as_deref(), Some("ai:done"), "{s:?}");
        assert_eq!(s.text, Script::tokens(120, 5).text(), "stream {id}");
    }
    // The streams ran on A (one upstream request each), none on B.
    assert_eq!(nodes.fake.log().len(), 2);
    let (_, stats_b) = get(nodes.b.addr, "/stats", None).await;
    assert_eq!(stats_b["streams"]["started"], 0, "{stats_b}");
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn cancel_sent_to_the_other_node_closes_the_home_upstream() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "judy").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "forever-1", "f1").await;
    rc.read_until(&mut c, |r| r.streams.get("f1").is_some_and(|s| s.last >= 3))
        .await;
    drop(c);
    let mut c = rc.reconnect(nodes.b.addr, "judy").await;
    rc.read_until(&mut c, |r| r.streams["f1"].last >= 6).await;
    c.emit("ai:cancel", json!({"streamId": "f1"})).await;
    rc.read_until(&mut c, |r| r.streams["f1"].ended.is_some())
        .await;
    assert_eq!(
        rc.streams["f1"].ended.as_deref(),
        Some("ai:stream:cancelled")
    );
    let served = nodes.fake.wait_for("forever-1", |s| s.closed_early).await;
    assert!(served.tokens_written < 100_000);
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn a_home_node_killed_ends_its_streams_with_node_lost_on_the_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "karl").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "forever-2", "f2").await;
    rc.read_until(&mut c, |r| r.streams.get("f2").is_some_and(|s| s.last >= 3))
        .await;
    drop(c);
    let mut c = rc.reconnect(nodes.b.addr, "karl").await;
    rc.read_until(&mut c, |r| r.streams["f2"].last >= 6).await;
    let killed = tokio::time::Instant::now();
    nodes.a.kill().await;
    let ended = rc
        .read_within(&mut c, Duration::from_secs(5), |r| {
            r.streams["f2"].ended.is_some()
        })
        .await;
    assert!(
        ended,
        "no end after the home died; node B's log:\n{}",
        nodes.b.log()
    );
    let s = &rc.streams["f2"];
    assert_eq!(
        (s.ended.as_deref(), s.code.as_deref()),
        (Some("ai:stream:error"), Some("node_lost")),
        "{s:?}"
    );
    // 3 heartbeats of 200 ms for the key to lapse, one more to notice.
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    nodes.b.kill().await;
    redis.kill().await;
}

#[tokio::test]
async fn random_cuts_alternating_between_nodes_never_lose_or_repeat_a_position() {
    use rand::{Rng, SeedableRng};
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = connect_as(nodes.a.addr, "lena").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "many-1", "m1").await;
    start_stream(&mut c, &mut rc, "many-2", "m2").await;
    let total = |r: &ResumingClient| r.streams.values().map(|s| s.last).sum::<u64>();
    let mut cuts = 0;
    while rc.streams.values().any(|s| s.ended.is_none()) && cuts < 100 {
        let goal = total(&rc) + rng.random_range(1..25);
        let all_ended = |r: &ResumingClient| r.streams.values().all(|s| s.ended.is_some());
        rc.read_until(&mut c, |r| total(r) >= goal || all_ended(r))
            .await;
        drop(c);
        cuts += 1;
        let to = if cuts % 2 == 1 {
            nodes.b.addr
        } else {
            nodes.a.addr
        };
        c = rc.reconnect(to, "lena").await;
    }
    rc.read_until(&mut c, |r| r.streams.values().all(|s| s.ended.is_some()))
        .await;
    for id in ["m1", "m2"] {
        let s = &rc.streams[id];
        assert_eq!(s.ended.as_deref(), Some("ai:done"), "seed {seed}: {s:?}");
        assert_eq!(
            s.text,
            Script::tokens(600, 3).text(),
            "seed {seed}: stream {id}"
        );
    }
    assert!(cuts >= 20, "seed {seed}: only {cuts} cuts");
    eprintln!("seed {seed}: {cuts} cuts alternating between the nodes");
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn a_refused_resume_on_the_other_node_says_why_and_leaves_the_connection_its_own() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let c = connect_as(nodes.a.addr, "mona").await;
    let id = c.connected["clientId"].as_str().expect("id").to_string();
    let token = c.connected["resumeToken"]
        .as_str()
        .expect("token")
        .to_string();
    drop(c);
    for (sub, token, reason) in [
        ("mona", "wrong-token", "forbidden"),
        ("nina", token.as_str(), "forbidden"),
    ] {
        let mut b = connect_as(nodes.b.addr, sub).await;
        let req = json!({"previousClientId": id, "resumeToken": token});
        b.emit("ai:reconnect", req).await;
        let failed = b
            .events_until(|n, _| n == "ai:reconnect:failed")
            .await
            .pop()
            .expect("failed")
            .1;
        assert_eq!(failed["reason"], reason, "{failed}");
        // The connection is node B's own client: its streams run on B.
        let events = turn(
            &mut b,
            json!({"prompt": "on b", "provider": "ollama", "useOrchestrator": false}),
        )
        .await;
        assert_eq!(events.last().expect("terminal").0, "ai:done");
    }
    // The right token still works after the refusals (they spend nothing).
    let mut rc = ResumingClient {
        client_id: id,
        token,
        streams: Default::default(),
    };
    rc.reconnect(nodes.b.addr, "mona").await;
    nodes.stop().await;
    redis.kill().await;
}

/// `redis-cli` on the test's server: the output lines of `args`.
fn redis_cli(port: u16, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Bytes Redis holds for every remote attachment stream now.
fn attachment_bytes(port: u16) -> u64 {
    let keys = redis_cli(port, &["--scan", "--pattern", "sg:att:*"]);
    keys.iter()
        .filter(|k| !k.is_empty())
        .map(|k| {
            redis_cli(port, &["MEMORY", "USAGE", k])
                .first()
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn a_stalled_client_on_the_other_node_holds_the_home_and_redis_under_the_caps() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "olga").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "flood-1", "fl").await;
    rc.read_until(&mut c, |r| r.streams["fl"].last >= 10).await;
    drop(c);
    let mut c = rc.reconnect(nodes.b.addr, "olga").await;
    // Attached to B, reading nothing and acking nothing for 2 s, while
    // the upstream could send 50,000 tokens of 64 bytes at once.
    let (mut largest_bytes, mut largest_replay, mut in_redis) = (0, 0, 0);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, stats) = get(nodes.a.addr, "/stats", None).await;
        let q = &stats["queues"];
        largest_bytes = largest_bytes.max(q["largestBytes"].as_u64().unwrap_or(0));
        largest_replay = largest_replay.max(q["largestReplayBytes"].as_u64().unwrap_or(0));
        in_redis = in_redis.max(attachment_bytes(redis.port));
    }
    eprintln!(
        "stalled on B: home queue {largest_bytes} B, home replay {largest_replay} B, \
         redis attachment {in_redis} B"
    );
    assert!(largest_bytes <= 1_048_576, "queue {largest_bytes}");
    assert!(largest_replay <= 1_048_576, "replay {largest_replay}");
    // An ack window (256 events) of 64-byte tokens, with their JSON.
    assert!(in_redis <= 256 * 1024, "redis {in_redis}");
    // Reading again: every position exactly once, then a cancel ends it.
    rc.read_until(&mut c, |r| r.streams["fl"].last >= 2_000)
        .await;
    c.emit("ai:cancel", json!({"streamId": "fl"})).await;
    rc.read_until(&mut c, |r| r.streams["fl"].ended.is_some())
        .await;
    assert_eq!(
        rc.streams["fl"].ended.as_deref(),
        Some("ai:stream:cancelled")
    );
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn when_the_attached_node_dies_the_client_resumes_at_home_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "pia").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "long-p", "p").await;
    rc.read_until(&mut c, |r| r.streams["p"].last >= 10).await;
    drop(c);
    let mut c = rc.reconnect(nodes.b.addr, "pia").await;
    rc.read_until(&mut c, |r| r.streams["p"].last >= 40).await;
    nodes.b.kill().await;
    drop(c);
    // Back on A (the home) with the token B's resume gave.
    let mut c = rc.reconnect(nodes.a.addr, "pia").await;
    rc.read_until(&mut c, |r| r.streams["p"].ended.is_some())
        .await;
    let s = &rc.streams["p"];
    assert_eq!(s.ended.as_deref(), Some("ai:done"), "{s:?}");
    assert_eq!(s.text, Script::tokens(120, 5).text());
    nodes.a.kill().await;
    redis.kill().await;
}

// HTTP streams (`/api/chat/stream`, resumable) across the nodes: a
// resume or a cancel on the node that does not run the stream is handed
// to the one that does.

async fn open_http(
    addr: SocketAddr,
    user: &str,
    message: &str,
) -> (String, common::sse::SseReader) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/chat/stream"))
        .bearer_auth(common::jwt::hs256(SECRET, user))
        .json(&json!({"message": message, "use_orchestrator": false, "provider": "ollama", "resumable": true}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-stream-id"].to_str().expect("id").to_string();
    (id, common::sse::SseReader::new(r))
}

async fn resume_http(
    addr: SocketAddr,
    user: Option<&str>,
    id: &str,
    last: u64,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("http://{addr}/api/chat/stream/{id}"))
        .header("Last-Event-ID", last.to_string());
    if let Some(user) = user {
        req = req.bearer_auth(common::jwt::hs256(SECRET, user));
    }
    req.send().await.expect("GET")
}

fn sse_counts(events: &[common::sse::SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.json["count"].as_u64())
        .collect()
}

#[tokio::test]
async fn an_http_stream_cut_on_one_node_resumes_on_the_other_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let (id, mut reader) = open_http(nodes.a.addr, "olga", "long-http").await;
    let mut seen = Vec::new();
    while sse_counts(&seen).len() < 7 {
        seen.push(reader.next().await.expect("event"));
    }
    drop(reader);
    let last = *sse_counts(&seen).last().expect("a count");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Not the owner, or no token: refused by B (the caller) or A (the owner).
    assert_eq!(
        resume_http(nodes.b.addr, None, &id, last).await.status(),
        401
    );
    assert_eq!(
        resume_http(nodes.b.addr, Some("mallory"), &id, last)
            .await
            .status(),
        404
    );
    let r = resume_http(nodes.b.addr, Some("olga"), &id, last).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-stream-id"], id.as_str());
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let rest = common::sse::SseReader::new(r).all().await;
    let mut all = seen.clone();
    all.extend(rest.iter().cloned());
    let positions = sse_counts(&all);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(positions.last(), Some(&120));
    let text: String = all
        .iter()
        .filter_map(|e| e.json["token"].as_str())
        .collect();
    assert_eq!(text, Script::tokens(120, 5).text(), "every token once");
    assert_eq!(rest.last().expect("an end").json["done"], true);
    // The stream ran on A alone (one upstream request), none on B.
    assert_eq!(nodes.fake.log().len(), 1);
    let (_, stats_b) = get(nodes.b.addr, "/stats", None).await;
    assert_eq!(stats_b["streams"]["started"], 0, "{stats_b}");
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn an_http_stream_cancelled_on_the_other_node_closes_the_home_upstream() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let (id, mut reader) = open_http(nodes.a.addr, "pavel", "forever-http").await;
    while sse_counts(&[reader.next().await.expect("event")]).is_empty() {}
    let path = format!("/api/chat/stream/{id}");
    assert_eq!(delete(nodes.b.addr, &path, "mallory").await, 403);
    assert_eq!(delete(nodes.b.addr, &path, "pavel").await, 204);
    let served = nodes
        .fake
        .wait_for("forever-http", |s| s.closed_early)
        .await;
    assert!(served.tokens_written < 100_000);
    let rest = reader.all().await;
    let end = rest.last().expect("an end");
    assert_eq!(end.json["error"]["code"], "cancelled", "{rest:?}");
    assert_eq!(
        delete(nodes.b.addr, "/api/chat/stream/s_nosuch", "pavel").await,
        404
    );
    nodes.stop().await;
    redis.kill().await;
}

#[tokio::test]
async fn an_http_stream_whose_node_died_answers_node_lost_on_the_other() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let (id, mut reader) = open_http(nodes.a.addr, "rita", "forever-http-2").await;
    while sse_counts(&[reader.next().await.expect("event")]).is_empty() {}
    drop(reader);
    nodes.a.kill().await;
    // 3 heartbeats of 200 ms for A's liveness key to lapse.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = resume_http(nodes.b.addr, Some("rita"), &id, 1).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "node_lost", "{body}");
    nodes.b.kill().await;
    redis.kill().await;
}

/// `ai:reconnect` on `c` for client `id` with `token`: the failure's reason.
async fn refused_resume(c: &mut SioClient, id: &str, token: &str) -> Value {
    let req = json!({"previousClientId": id, "resumeToken": token});
    c.emit("ai:reconnect", req).await;
    let failed = c
        .events_until(|n, _| n == "ai:reconnect:failed")
        .await
        .pop()
        .expect("failed")
        .1;
    failed["reason"].clone()
}

#[tokio::test]
async fn a_client_whose_home_died_gets_what_it_had_produced_from_the_logs_then_node_lost() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "sara").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "slow", "f3").await;
    rc.read_until(&mut c, |r| r.streams.get("f3").is_some_and(|s| s.last >= 5))
        .await;
    let had = rc.streams["f3"].last;
    // Cut: A runs the stream on for the window; 300 ms is ~15 tokens the
    // client never got, then A dies with them.
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes.a.kill().await;
    // 3 heartbeats of 200 ms for A's liveness key to lapse.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut b = connect_as(nodes.b.addr, "sara").await;
    let (old_id, spent) = (rc.client_id.clone(), rc.token.clone());
    assert_eq!(
        refused_resume(&mut b, &old_id, "wrong-token").await,
        "forbidden"
    );
    let asked = tokio::time::Instant::now();
    let mut b = rc.reconnect(nodes.b.addr, "sara").await;
    let ended = rc
        .read_within(&mut b, Duration::from_secs(5), |r| {
            r.streams["f3"].ended.is_some()
        })
        .await;
    assert!(ended, "no end; B's log:\n{}", nodes.b.log());
    let s = &rc.streams["f3"];
    assert_eq!(
        (s.ended.as_deref(), s.code.as_deref()),
        (Some("ai:stream:error"), Some("node_lost")),
        "{s:?}"
    );
    // Every position once (checked on each event), and what A produced
    // after the cut came first.
    assert!(
        s.last >= had + 5,
        "only {} of the tokens after {had}",
        s.last
    );
    eprintln!(
        "had {had} at the cut; from the logs on B up to {}, then node_lost",
        s.last
    );
    let script = Script::tokens(100, 20).text();
    assert!(script.starts_with(&s.text), "{:?}", s.text);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    // The token was spent: not again, on any node.
    let mut again = connect_as(nodes.b.addr, "sara").await;
    assert_eq!(refused_resume(&mut again, &old_id, &spent).await, "unknown");
    nodes.b.kill().await;
    redis.kill().await;
}

#[tokio::test]
async fn a_fast_stream_whose_home_died_is_replayed_from_merged_log_entries_exactly_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let nodes = TwoNodes::start(&redis, &[WINDOW]).await;
    let mut c = connect_as(nodes.a.addr, "tina").await;
    let mut rc = ResumingClient::new(&c);
    start_stream(&mut c, &mut rc, "flood-log", "f4").await;
    rc.read_until(&mut c, |r| r.streams.get("f4").is_some_and(|s| s.last >= 5))
        .await;
    let had = rc.streams["f4"].last;
    // Cut: A runs on until the client's queue is full (the upstream held
    // back there), every token logged on the way.
    drop(c);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, stats_a) = get(nodes.a.addr, "/stats", None).await;
    let logged = stats_a["resume"]["logEvents"].as_u64().unwrap_or(0);
    assert_eq!(stats_a["resume"]["logsStopped"], 0, "{stats_a}");
    nodes.a.kill().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut b = rc.reconnect(nodes.b.addr, "tina").await;
    let ended = rc
        .read_within(&mut b, Duration::from_secs(60), |r| {
            r.streams["f4"].ended.is_some()
        })
        .await;
    assert!(ended, "no end; B's log:\n{}", nodes.b.log());
    let s = &rc.streams["f4"];
    assert_eq!(s.code.as_deref(), Some("node_lost"), "{s:?}");
    let script = Script::sized(50_000, 64, 0).text();
    assert!(
        script.starts_with(&s.text),
        "text is not the upstream's prefix"
    );
    // What A produced while the client was away (until its queue was
    // full: a few hundred to a thousand tokens), many tokens to an entry.
    assert!(s.last > had + 200, "only {} after {had}", s.last);
    assert!(
        logged < s.last,
        "{logged} log entries for {} positions",
        s.last
    );
    eprintln!(
        "had {had}; {logged} log entries; resumed from the logs up to {}",
        s.last
    );
    nodes.b.kill().await;
    redis.kill().await;
}
