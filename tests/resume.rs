//! Reconnect and resume over real sockets: cut connections, come back
//! with `ai:reconnect`, and check every stream's text arrives exactly once.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn scripted(prompt: &str) -> Script {
    match prompt {
        p if p.starts_with("long") => Script::tokens(120, 2),
        p if p.starts_with("forever") => Script::tokens(100_000, 20),
        p if p.starts_with("late") => Script {
            first_delay: Duration::from_millis(700),
            ..Script::tokens(5, 2)
        },
        _ => Script::tokens(40, 2),
    }
}

fn resume_config(fake: &FakeOllama) -> streamgate::Config {
    let mut c = config_for(&fake.base_url());
    c.session.reconnect_window_ms = 5_000;
    c
}

/// What a client knows of one stream.
#[derive(Default, Debug)]
struct Seen {
    started: bool,
    last: u64,
    text: String,
    ended: Option<String>,
}

/// A client that survives cuts: it remembers its client id, resume token
/// and every stream's position, and checks each event against them.
struct ResumingClient {
    client_id: String,
    token: String,
    streams: BTreeMap<String, Seen>,
}

impl ResumingClient {
    fn new(c: &SioClient) -> Self {
        Self {
            client_id: c.connected["clientId"].as_str().unwrap().into(),
            token: c.connected["resumeToken"].as_str().unwrap().into(),
            streams: BTreeMap::new(),
        }
    }

    /// Take one event into account; panics on a duplicate or a gap.
    fn absorb(&mut self, name: &str, p: &Value) {
        let Some(id) = p["streamId"].as_str() else {
            return;
        };
        let s = self.streams.entry(id.to_string()).or_default();
        assert!(
            s.ended.is_none(),
            "{name} after the terminal event of {id}: {p}"
        );
        match name {
            "ai:stream:start" => {
                assert!(!s.started, "second start for {id}");
                s.started = true;
            }
            "ai:token" => {
                assert!(s.started, "token before start on {id}");
                let n = p["tokenCount"].as_u64().unwrap();
                let merged = p["metadata"]["coalesced"].as_u64().unwrap_or(1);
                assert_eq!(
                    n - merged,
                    s.last,
                    "gap or duplicate on {id}: had {}, got {p}",
                    s.last
                );
                s.last = n;
                s.text.push_str(p["data"].as_str().unwrap());
            }
            "ai:stream:complete" => {}
            "ai:done" | "ai:stream:cancelled" | "ai:stream:error" => {
                s.ended = Some(name.to_string());
            }
            _ => {}
        }
    }

    /// Connect again and resume; returns the new socket.
    async fn reconnect(&mut self, addr: std::net::SocketAddr) -> SioClient {
        let mut c = SioClient::connect_ok(addr).await;
        let streams: Vec<Value> = self
            .streams
            .iter()
            .filter(|(_, s)| s.ended.is_none())
            .map(|(id, s)| {
                if s.started {
                    json!({"streamId": id, "lastTokenCount": s.last})
                } else {
                    json!({"streamId": id})
                }
            })
            .collect();
        c.emit(
            "ai:reconnect",
            json!({"previousClientId": self.client_id, "resumeToken": self.token, "streams": streams}),
        )
        .await;
        loop {
            let (name, p) = c.next_event().await.expect("reconnect answer");
            match name.as_str() {
                "ai:reconnect:success" => {
                    assert_eq!(p["previousClientId"], self.client_id.as_str());
                    assert_eq!(p["newClientId"], c.connected["clientId"]);
                    assert_ne!(
                        p["resumeToken"],
                        self.token.as_str(),
                        "token must be single-use"
                    );
                    self.client_id = p["newClientId"].as_str().unwrap().into();
                    self.token = p["resumeToken"].as_str().unwrap().into();
                    return c;
                }
                "ai:reconnect:failed" => panic!("resume refused: {p}"),
                _ => self.absorb(&name, &p),
            }
        }
    }
}

#[tokio::test]
async fn cut_mid_stream_and_resume_exactly_once() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(resume_config(&fake)).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let mut rc = ResumingClient::new(&c);
    for id in ["one", "two"] {
        let ack = c
            .emit_ack(
                "ai:stream",
                json!({"prompt": format!("long-{id}"), "streamId": id}),
            )
            .await;
        assert_eq!(ack["ok"], true);
    }
    // Read a little, acking, then cut without a goodbye.
    let mut read = 0;
    while read < 30 {
        let (name, p) = c.next_event().await.unwrap();
        if name == "ai:token" {
            c.ack_token(&p).await;
            read += 1;
        }
        rc.absorb(&name, &p);
    }
    drop(c);
    // Streams keep running while we are away.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["clients"]["detached"], 1, "{stats}");
    let mut c = rc.reconnect(gw.addr).await;
    while rc.streams.values().any(|s| s.ended.is_none()) {
        let (name, p) = c.next_event().await.unwrap();
        rc.absorb(&name, &p);
    }
    for id in ["one", "two"] {
        let s = &rc.streams[id];
        assert_eq!(s.ended.as_deref(), Some("ai:done"));
        assert_eq!(s.text, Script::tokens(120, 2).text(), "stream {id}");
    }
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["resume"]["succeeded"], 1);
    assert_eq!(stats["clients"]["detached"], 0);
    assert_eq!(stats["clients"]["connected"], 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn resume_refusals() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(resume_config(&fake)).await;
    let first = SioClient::connect_ok(gw.addr).await;
    let mut rc = ResumingClient::new(&first);
    let old_token = rc.token.clone();
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut c = SioClient::connect_ok(gw.addr).await;
    for (prev, token, reason) in [
        ("c_nobody", old_token.as_str(), "unknown"),
        (
            rc.client_id.as_str(),
            "0123456789abcdef0123456789abcdef",
            "forbidden",
        ),
    ] {
        c.emit(
            "ai:reconnect",
            json!({"previousClientId": prev, "resumeToken": token}),
        )
        .await;
        let (name, p) = c.next_event().await.unwrap();
        assert_eq!(name, "ai:reconnect:failed");
        assert_eq!(
            (p["previousClientId"].as_str(), p["reason"].as_str()),
            (Some(prev), Some(reason))
        );
    }
    // A bad payload names the field.
    c.emit("ai:reconnect", json!({"previousClientId": "c_x"}))
        .await;
    let (name, p) = c.next_event().await.unwrap();
    assert_eq!(
        (name.as_str(), p["details"]["field"].as_str()),
        ("ai:error", Some("resumeToken"))
    );

    // The right token works once; the spent one is refused.
    let c2 = rc.reconnect(gw.addr).await;
    let mut c3 = SioClient::connect_ok(gw.addr).await;
    let previous = rc.client_id.clone();
    c3.emit(
        "ai:reconnect",
        json!({"previousClientId": previous, "resumeToken": old_token}),
    )
    .await;
    let (name, p) = c3.next_event().await.unwrap();
    assert_eq!(
        (name.as_str(), p["reason"].as_str()),
        ("ai:reconnect:failed", Some("forbidden"))
    );
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["resume"]["failed"], 3);
    drop(c2);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn window_expiry_cancels_and_closes_the_upstream() {
    let fake = FakeOllama::start(scripted).await;
    let mut config = resume_config(&fake);
    config.session.reconnect_window_ms = 500;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let rc = ResumingClient::new(&c);
    c.emit("ai:stream", json!({"prompt": "forever", "streamId": "f"}))
        .await;
    c.events_until(|n, _| n == "ai:token").await;
    drop(c);
    let served = fake.wait_for("forever", |s| s.closed_early).await;
    assert!(served.tokens_written < 100_000);
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["clients"]["detached"], 0);
    assert_eq!(stats["streams"]["active"], 0);
    assert_eq!(stats["queues"]["total"], 0, "buffers freed");
    let mut late = SioClient::connect_ok(gw.addr).await;
    late.emit(
        "ai:reconnect",
        json!({"previousClientId": rc.client_id, "resumeToken": rc.token}),
    )
    .await;
    let (name, p) = late.next_event().await.unwrap();
    assert_eq!(
        (name.as_str(), p["reason"].as_str()),
        ("ai:reconnect:failed", Some("unknown"))
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_tab_takes_the_client_over() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(resume_config(&fake)).await;
    let mut tab1 = SioClient::connect_ok(gw.addr).await;
    let mut rc = ResumingClient::new(&tab1);
    tab1.emit("ai:stream", json!({"prompt": "long-t", "streamId": "t"}))
        .await;
    let (name, p) = tab1.next_event().await.unwrap();
    rc.absorb(&name, &p);
    // tab1 is still connected when tab2 resumes its client.
    let mut tab2 = rc.reconnect(gw.addr).await;
    let told = tab1
        .events_until(|n, p| n == "ai:error" && p["details"]["reason"] == "taken_over")
        .await;
    assert!(!told.is_empty());
    assert!(!tab1.still_open(Duration::from_millis(300)).await || tab1.disconnected);
    // Whatever tab1 read before the takeover is what rc absorbed; tab2
    // resumes from there.
    while rc.streams["t"].ended.is_none() {
        let (name, p) = tab2.next_event().await.unwrap();
        rc.absorb(&name, &p);
    }
    assert_eq!(rc.streams["t"].text, Script::tokens(120, 2).text());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn randomized_cuts_never_lose_or_repeat_a_token() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(resume_config(&fake)).await;
    let seed: u64 = std::env::var("RESUME_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("RESUME_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = SioClient::connect_ok(gw.addr).await;
    let mut rc = ResumingClient::new(&c);
    let mut cycles = 0;
    let mut started = 0;
    let mut completed = 0;
    while cycles < 120 {
        // Keep two streams running.
        while rc.streams.values().filter(|s| s.ended.is_none()).count() < 2 {
            let id = format!("r{started}");
            started += 1;
            let ack = c
                .emit_ack(
                    "ai:stream",
                    json!({"prompt": format!("x-{id}"), "streamId": id}),
                )
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
            rc.streams.entry(id).or_default();
        }
        // Read a random number of events (sometimes none: a cut during
        // the replay), acking some tokens, cutting right after a terminal
        // event now and then.
        let budget = rng.random_range(0..12);
        for _ in 0..budget {
            // Both streams may end inside one budget; then nothing more
            // comes until new streams start, so stop reading.
            if rc.streams.values().all(|s| s.ended.is_some()) {
                break;
            }
            let Some((name, p)) = c.next_event_within(Duration::from_secs(5)).await else {
                panic!("no event; state {:?}", rc.streams)
            };
            if name == "ai:token" && rng.random_bool(0.5) {
                c.ack_token(&p).await;
            }
            rc.absorb(&name, &p);
            if common::is_terminal(&name) && rng.random_bool(0.5) {
                break;
            }
        }
        drop(c);
        cycles += 1;
        c = rc.reconnect(gw.addr).await;
        for s in rc.streams.values() {
            if s.ended.as_deref() == Some("ai:done") && !s.text.is_empty() {
                assert_eq!(s.text, Script::tokens(40, 2).text());
            }
        }
        completed = rc.streams.values().filter(|s| s.ended.is_some()).count();
    }
    // Finish what is running.
    while rc.streams.values().any(|s| s.ended.is_none()) {
        let (name, p) = c.next_event().await.unwrap();
        rc.absorb(&name, &p);
    }
    for (id, s) in &rc.streams {
        assert_eq!(s.ended.as_deref(), Some("ai:done"), "{id}");
        assert_eq!(s.text, Script::tokens(40, 2).text(), "{id}");
    }
    println!(
        "{cycles} cuts, {} streams, {completed} ended mid-run, every token exactly once",
        rc.streams.len()
    );
    let (_, stats) = get_json(gw.addr, "/stats").await;
    assert_eq!(stats["resume"]["succeeded"], cycles);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_resumed_before_its_first_event_is_live_not_unknown() {
    let fake = FakeOllama::start(scripted).await;
    let gw = start(resume_config(&fake)).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let mut rc = ResumingClient::new(&c);
    let ack = c
        .emit_ack("ai:stream", json!({"prompt": "late", "streamId": "early"}))
        .await;
    assert_eq!(ack["ok"], true);
    rc.streams.insert("early".into(), Seen::default());
    drop(c);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut c = rc.reconnect(gw.addr).await;
    while rc.streams["early"].ended.is_none() {
        let (name, p) = c.next_event().await.unwrap();
        assert_ne!(name, "ai:error", "the stream is live: {p}");
        rc.absorb(&name, &p);
    }
    let s = &rc.streams["early"];
    assert!(s.started);
    assert_eq!(s.ended.as_deref(), Some("ai:done"));
    assert_eq!(s.text, Script::tokens(5, 2).text());
    gw.shutdown().await.unwrap();
}
