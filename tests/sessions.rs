//! Sessions (PROTOCOL.md part 2): conversations the gateway keeps, over a
//! live gateway on a port, a raw Socket.IO client, a fake Ollama and a
//! fake OpenAI-compatible upstream that record each request body, and a
//! real HTTP client for `/api/chat/sessions`.
//!
//! What is checked: the exact upstream messages of each turn (the routed
//! agent's system prompt, the stored turns in order, the new prompt); the
//! reply kept as the client received it (partial when cancelled, none on
//! an error before any token); one live stream per session; `messages`
//! refused with `sessionId`; the bounds (oldest turns dropped past
//! `max_messages` and `max_bytes`, idle expiry, LRU eviction per user);
//! the HTTP endpoints with auth (401, 404 for another user's session, 409
//! while busy); a resumed client keeping its sessions.

mod common;
mod upstream_fakes;

use common::fake_ollama::{End, FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use streamgate::Config;

const SECRET: &str = "test-only-hs256-secret-for-session-tests!";
const EXPLAINER: &str = "You are a patient senior engineer explaining code inside an IDE.";

/// The fake Ollama's replies: `slow` (200 tokens, 20 ms apart), `fail`
/// (HTTP 500), `broken` (two tokens, then an error line), and for any
/// other prompt "re: " and the prompt's first 12 bytes, in two tokens.
fn scripted(prompt: &str) -> Script {
    match prompt {
        "slow" => Script::tokens(200, 20),
        "fail" => Script {
            status: 500,
            ..Script::tokens(0, 1)
        },
        "broken" => Script {
            end: End::ErrorLine("model crashed"),
            ..Script::tokens(2, 1)
        },
        p => Script {
            tokens: vec!["re: ".into(), p[..p.len().min(12)].into()],
            ..Script::tokens(0, 1)
        },
    }
}

fn reply_to(prompt: &str) -> String {
    format!("re: {}", &prompt[..prompt.len().min(12)])
}

fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({ "sub": sub, "exp": exp });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The fake Ollama, a gateway (auth off) on it, and a connected client.
async fn gateway() -> (FakeOllama, streamgate::Running, SioClient) {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(config_for(&fake.base_url())).await;
    let client = SioClient::connect_ok(gw.addr).await;
    (fake, gw, client)
}

fn with_auth(mut c: Config) -> Config {
    c.auth.jwt_secret = SECRET.into();
    c
}

async fn connect_as(addr: SocketAddr, sub: &str) -> SioClient {
    SioClient::connect(addr, json!({ "token": token(sub) }))
        .await
        .expect("connect")
}

/// Start a stream; returns the ack.
async fn ask(c: &mut SioClient, payload: Value) -> Value {
    c.emit_ack("ai:stream", payload).await
}

/// Start a stream that must be admitted; returns its id.
async fn open(c: &mut SioClient, payload: Value) -> String {
    let ack = ask(c, payload).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack["streamId"].as_str().unwrap().to_string()
}

/// A stream that must be refused with `code`: the ack says so, and so
/// does the `ai:error` that comes with it, which is returned.
async fn refused(c: &mut SioClient, payload: Value, code: &str) -> Value {
    let ack = ask(c, payload).await;
    assert_eq!(
        (&ack["ok"], &ack["error"]["code"]),
        (&json!(false), &json!(code)),
        "{ack}"
    );
    let err = c
        .events_until(|n, _| n == "ai:error")
        .await
        .pop()
        .unwrap()
        .1;
    assert_eq!(err["code"], code, "{err}");
    err
}

/// One whole turn: the ack, and the stream's events up to its terminal.
async fn turn(c: &mut SioClient, payload: Value) -> Vec<(String, Value)> {
    let id = open(c, payload).await;
    events_of(c, &id).await
}

async fn events_of(c: &mut SioClient, id: &str) -> Vec<(String, Value)> {
    let all = c
        .events_until(|n, p| is_terminal(n) && p["streamId"] == id)
        .await;
    all.into_iter()
        .filter(|(_, p)| p["streamId"] == id)
        .collect()
}

/// A session turn routed straight to Ollama (no system prompt).
fn direct(prompt: &str, session: &str) -> Value {
    json!({ "prompt": prompt, "sessionId": session, "provider": "ollama", "useOrchestrator": false })
}

/// The messages of an upstream request body.
fn sent(body: &Value) -> Value {
    body["messages"].clone()
}

fn user(content: &str) -> Value {
    json!({ "role": "user", "content": content })
}

fn assistant(content: &str) -> Value {
    json!({ "role": "assistant", "content": content })
}

async fn http(
    method: reqwest::Method,
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    if let Some(sub) = bearer {
        req = req.bearer_auth(token(sub));
    }
    let r = req.send().await.expect("http");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Value) {
    http(reqwest::Method::GET, addr, path, bearer).await
}

async fn delete(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Value) {
    http(reqwest::Method::DELETE, addr, path, bearer).await
}

#[tokio::test]
async fn three_turns_over_ollama_send_the_earlier_turns_in_order() {
    let (fake, gw, mut c) = gateway().await;
    let prompts = [
        "Explain this code",
        "Explain the second line",
        "Explain why it is fast",
    ];
    for (i, p) in prompts.iter().enumerate() {
        let events = turn(&mut c, json!({ "prompt": p, "sessionId": "chat-1" })).await;
        let (text, terminal) = check_stream_order(&events.iter().collect::<Vec<_>>());
        assert_eq!(
            (text.as_str(), terminal.as_str()),
            (reply_to(p).as_str(), "ai:done")
        );
        let start = &events[0].1;
        assert_eq!(start["sessionId"], "chat-1");
        assert_eq!(start["agent"], "explainer", "{start}");
        let done = &events.last().unwrap().1;
        assert_eq!(done["sessionId"], "chat-1");
        assert_eq!(done["turn"], i as u64 + 1);
    }
    let log = fake.log();
    assert_eq!(log.len(), 3);
    let system = sent(&log[0].body)[0].clone();
    assert_eq!(system["role"], "system");
    let system_text = system["content"].as_str().unwrap();
    assert!(system_text.starts_with(EXPLAINER), "{system_text}");
    assert_eq!(sent(&log[0].body), json!([system, user(prompts[0])]));
    assert_eq!(
        sent(&log[2].body),
        json!([
            system,
            user(prompts[0]),
            assistant(&reply_to(prompts[0])),
            user(prompts[1]),
            assistant(&reply_to(prompts[1])),
            user(prompts[2]),
        ])
    );
    // Kept as the client received it, readable over HTTP (auth off: no token).
    let (status, body) = get(gw.addr, "/api/chat/sessions/chat-1", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "chat-1");
    assert_eq!(body["turns"], 3);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    for (i, m) in messages.iter().enumerate() {
        let (role, status) = if i % 2 == 0 {
            ("user", Value::Null)
        } else {
            ("assistant", json!("complete"))
        };
        assert_eq!((&m["role"], &m["status"]), (&json!(role), &status), "{m}");
        assert!(m["timestamp"].as_u64().unwrap() > 0);
    }
    assert_eq!(messages[5]["content"], reply_to(prompts[2]));
    // Without a session: null on both events, and nothing is kept.
    let events = turn(&mut c, json!({ "prompt": "hello there" })).await;
    assert_eq!(events[0].1["sessionId"], Value::Null);
    let done = &events.last().unwrap().1;
    assert_eq!(
        (&done["sessionId"], &done["turn"]),
        (&Value::Null, &Value::Null)
    );
    let (_, list) = get(gw.addr, "/api/chat/sessions", None).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn three_turns_over_an_openai_compatible_upstream() {
    use upstream_fakes::{Fake, Reply, openai_stream, provider_config};
    upstream_fakes::init();
    let fake = Fake::start(Reply::Sse {
        parts: openai_stream(),
        hold: false,
    })
    .await;
    let ollama = FakeOllama::start(scripted).await;
    let mut config = config_for(&ollama.base_url());
    config.providers.insert(
        "openai".into(),
        provider_config(streamgate::config::ProviderKind::Openai, &fake.base),
    );
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let prompts = ["Explain this code", "Explain it again", "Explain once more"];
    for (i, p) in prompts.iter().enumerate() {
        let req = json!({ "prompt": p, "sessionId": "oa", "provider": "openai", "useOrchestrator": true });
        let events = turn(&mut c, req).await;
        assert_eq!(events[0].1["provider"], "openai");
        assert_eq!(events.last().unwrap().1["turn"], i as u64 + 1);
    }
    assert_eq!(fake.count(), 3);
    let (_, third, _) = fake.request(2);
    let (_, first, _) = fake.request(0);
    let system = sent(&first)[0].clone();
    assert_eq!(system["role"], "system");
    assert!(system["content"].as_str().unwrap().starts_with(EXPLAINER));
    let answer = "Hello, world ✓"; // what openai_stream() says every time
    assert_eq!(
        sent(&third),
        json!([
            system,
            user(prompts[0]),
            assistant(answer),
            user(prompts[1]),
            assistant(answer),
            user(prompts[2]),
        ])
    );
    assert_eq!(third["stream"], true);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_turn_keeps_what_the_client_saw_and_an_errored_one_only_the_prompt() {
    let (fake, gw, mut c) = gateway().await;
    // Cancelled after a few tokens: the text the client received.
    let id = open(&mut c, direct("slow", "cx")).await;
    let mut seen = c
        .events_until(|n, p| n == "ai:token" && p["tokenCount"].as_u64() >= Some(3))
        .await;
    c.emit("ai:cancel", json!({ "streamId": id })).await;
    seen.extend(events_of(&mut c, &id).await);
    let mine: Vec<_> = seen.iter().filter(|(_, p)| p["streamId"] == id).collect();
    let (received, terminal) = check_stream_order(&mine);
    assert_eq!(terminal, "ai:stream:cancelled");
    assert!(received.starts_with("t0 t1 t2 "), "{received}");
    // Refused upstream, no token: only the prompt, marked error.
    let events = turn(&mut c, direct("fail", "cx")).await;
    assert_eq!(events.last().unwrap().0, "ai:stream:error");
    // Broken after two tokens: the two tokens, marked error.
    let events = turn(&mut c, direct("broken", "cx")).await;
    assert_eq!(events.last().unwrap().0, "ai:stream:error");
    let (_, body) = get(gw.addr, "/api/chat/sessions/cx", None).await;
    let kept: Vec<(&str, &str, &Value)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap(),
                &m["status"],
            )
        })
        .collect();
    let (cancelled, error, none) = (json!("cancelled"), json!("error"), Value::Null);
    assert_eq!(
        kept,
        [
            ("user", "slow", &none),
            ("assistant", received.as_str(), &cancelled),
            ("user", "fail", &error),
            ("user", "broken", &none),
            ("assistant", "t0 t1 ", &error),
        ]
    );
    assert_eq!(body["turns"], 3);
    // The next turn sends all of it upstream, as kept.
    turn(&mut c, direct("next", "cx")).await;
    let served = fake.wait_for("next", |_| true).await;
    assert_eq!(
        sent(&served.body),
        json!([
            user("slow"),
            assistant(&received),
            user("fail"),
            user("broken"),
            assistant("t0 t1 "),
            user("next"),
        ])
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_live_stream_per_session_and_messages_are_refused_with_a_session() {
    let (_fake, gw, mut c) = gateway().await;
    let id = open(&mut c, direct("slow", "busy")).await;
    let err = refused(&mut c, direct("again", "busy"), "session_busy").await;
    assert_eq!(err["details"]["sessionId"], "busy");
    // Deleting it while the stream runs: 409.
    let (status, body) = delete(gw.addr, "/api/chat/sessions/busy", None).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "session_busy");
    // Another session runs beside it.
    let events = turn(&mut c, direct("beside", "other")).await;
    assert_eq!(events.last().unwrap().0, "ai:done");
    // Once the stream has ended the session takes the next turn.
    c.emit("ai:cancel", json!({ "streamId": id })).await;
    events_of(&mut c, &id).await;
    let events = turn(&mut c, direct("after", "busy")).await;
    assert_eq!(events.last().unwrap().1["turn"], 2);
    // `messages` with `sessionId`: refused, naming the field and the rule.
    let with_messages = json!({ "prompt": "x", "sessionId": "busy", "messages": [user("old")] });
    let err = refused(&mut c, with_messages, "invalid_request").await;
    assert_eq!(err["details"]["field"], "messages");
    assert_eq!(
        err["details"]["rule"],
        "not allowed with sessionId (the session holds the history)"
    );
    let err = refused(
        &mut c,
        json!({ "prompt": "x", "sessionId": "a b" }),
        "invalid_request",
    )
    .await;
    assert_eq!(err["details"]["field"], "sessionId");
    // None of the refusals touched the session.
    let (_, body) = get(gw.addr, "/api/chat/sessions/busy", None).await;
    assert_eq!(body["turns"], 2);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn bounds_drop_old_turns_expire_idle_sessions_and_evict_the_least_recently_used() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = with_auth(config_for(&fake.base_url()));
    config.sessions.max_messages = 4;
    config.sessions.max_bytes = 200;
    config.sessions.ttl_ms = 2_000;
    config.sessions.max_per_user = 3;
    let gw = start(config).await;
    let addr = gw.addr;
    let mut a = connect_as(addr, "alice").await;
    // max_messages = 4: the fourth turn is sent the second and third only.
    for p in ["m1", "m2", "m3", "m4"] {
        turn(&mut a, direct(p, "m")).await;
    }
    let served = fake.wait_for("m4", |_| true).await;
    let expected = json!([
        user("m2"),
        assistant("re: m2"),
        user("m3"),
        assistant("re: m3"),
        user("m4")
    ]);
    assert_eq!(sent(&served.body), expected);
    // max_bytes = 200: a 100-byte prompt with its reply is 116 bytes, so
    // the second such turn pushes the first out.
    let (x, y) = ("x".repeat(100), "y".repeat(100));
    for p in [&x, &y, &"z".to_string()] {
        turn(&mut a, direct(p, "b")).await;
    }
    let served = fake.wait_for("z", |_| true).await;
    assert_eq!(
        sent(&served.body),
        json!([user(&y), assistant(&reply_to(&y)), user("z")])
    );
    // max_per_user = 3 (alice already holds m and b): carol's least
    // recently used session goes; alice's and bob's stay.
    let mut carol = connect_as(addr, "carol").await;
    let mut bob = connect_as(addr, "bob").await;
    turn(&mut bob, direct("hi", "b1")).await;
    for s in ["c1", "c2", "c3", "c1", "c4"] {
        turn(&mut carol, direct("hey", s)).await;
    }
    let (_, list) = get(addr, "/api/chat/sessions", Some("carol")).await;
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c4", "c1", "c3"], "{list}");
    assert_eq!(
        get(addr, "/api/chat/sessions/c2", Some("carol")).await.0,
        404
    );
    let (_, stats) = get_json(addr, "/stats").await;
    assert_eq!(stats["sessions"]["evictions"], 1, "{stats}");
    assert_eq!(stats["sessions"]["held"], 6, "m, b, b1, c1, c3, c4");
    assert!(stats["sessions"]["bytes"].as_u64().unwrap() > 0);
    let (_, list) = get(addr, "/api/chat/sessions", Some("alice")).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);
    // ttl_ms = 2000: idle sessions are swept (no access needed) ...
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let (_, stats) = get_json(addr, "/stats").await;
    assert_eq!(stats["sessions"]["held"], 0, "{stats}");
    assert_eq!(stats["sessions"]["bytes"], 0);
    assert_eq!(stats["sessions"]["expired"], 6);
    let metrics = get_text(addr, "/metrics").await;
    assert!(
        metrics.contains("streamgate_sessions_expired_total 6"),
        "{metrics}"
    );
    assert!(metrics.contains("streamgate_session_evictions_total 1"));
    // ... and an expired id starts afresh.
    assert_eq!(
        get(addr, "/api/chat/sessions/m", Some("alice")).await.0,
        404
    );
    let events = turn(&mut a, direct("again", "m")).await;
    assert_eq!(events.last().unwrap().1["turn"], 1);
    let served = fake.wait_for("again", |_| true).await;
    assert_eq!(sent(&served.body), json!([user("again")]));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_endpoints_list_read_and_delete_only_the_callers_sessions() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(with_auth(config_for(&fake.base_url()))).await;
    let addr = gw.addr;
    let mut a = connect_as(addr, "alice").await;
    let mut b = connect_as(addr, "bob").await;
    turn(&mut a, direct("first", "a1")).await;
    turn(&mut a, direct("second", "a1")).await;
    turn(&mut a, direct("other", "a2")).await;
    turn(&mut b, direct("bobs", "b1")).await;
    // No token, a bad one, another scheme: 401 with a JSON error.
    for bad in [None, Some("Bearer not-a-jwt"), Some("Basic YWxpY2U6")] {
        let mut req = reqwest::Client::new().get(format!("http://{addr}/api/chat/sessions"));
        if let Some(h) = bad {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    }
    // The caller's sessions only, most recent first.
    let (status, list) = get(addr, "/api/chat/sessions", Some("alice")).await;
    assert_eq!(status, 200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    assert_eq!(
        (&sessions[0]["id"], &sessions[1]["id"]),
        (&json!("a2"), &json!("a1"))
    );
    let a1 = &sessions[1];
    assert_eq!((&a1["turns"], &a1["messages"]), (&json!(2), &json!(4)));
    assert!(a1["updatedAt"].as_u64() >= a1["createdAt"].as_u64());
    // One session with its messages.
    let (status, body) = get(addr, "/api/chat/sessions/a1", Some("alice")).await;
    assert_eq!(status, 200);
    let contents: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "re: first", "second", "re: second"]);
    // Bob cannot see, delete or write to alice's session.
    let (status, body) = get(addr, "/api/chat/sessions/a1", Some("bob")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_session");
    assert_eq!(
        delete(addr, "/api/chat/sessions/a1", Some("bob")).await.0,
        404
    );
    let err = refused(&mut b, direct("mine now", "a1"), "forbidden").await;
    assert_eq!(err["code"], "forbidden");
    let (_, list) = get(addr, "/api/chat/sessions", Some("bob")).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    // 409 while a stream runs on it, 204 once it has ended, then 404.
    let id = open(&mut a, direct("slow", "a1")).await;
    let (status, body) = delete(addr, "/api/chat/sessions/a1", Some("alice")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("session_busy"))
    );
    a.emit("ai:cancel", json!({ "streamId": id })).await;
    events_of(&mut a, &id).await;
    let (status, _) = delete(addr, "/api/chat/sessions/a1", Some("alice")).await;
    assert_eq!(status, 204);
    assert_eq!(
        get(addr, "/api/chat/sessions/a1", Some("alice")).await.0,
        404
    );
    assert_eq!(
        delete(addr, "/api/chat/sessions/a1", Some("alice")).await.0,
        404
    );
    assert_eq!(
        get(addr, "/api/chat/sessions/no%20such", Some("alice"))
            .await
            .0,
        404
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_resumed_client_keeps_its_sessions() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = with_auth(config_for(&fake.base_url()));
    config.session.reconnect_window_ms = 5_000;
    let gw = start(config).await;
    let mut first = connect_as(gw.addr, "alice").await;
    let hello = first.connected.clone();
    turn(&mut first, direct("before", "r")).await;
    first.close().await;
    let mut second = connect_as(gw.addr, "alice").await;
    let resume =
        json!({ "previousClientId": hello["clientId"], "resumeToken": hello["resumeToken"] });
    second.emit("ai:reconnect", resume).await;
    let ok = second
        .events_until(|n, _| n.starts_with("ai:reconnect:"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ok.0, "ai:reconnect:success", "{ok:?}");
    let events = turn(&mut second, direct("after", "r")).await;
    assert_eq!(events.last().unwrap().1["turn"], 2);
    let served = fake.wait_for("after", |_| true).await;
    assert_eq!(
        sent(&served.body),
        json!([user("before"), assistant("re: before"), user("after")])
    );
    gw.shutdown().await.unwrap();
}
