//! Security over live sockets: who gets in (JWT at the handshake), who
//! touches what (ownership of clients and streams), how floods are held
//! back (rate limits) and how large input is refused (size limits).
//!
//! The RS256/ES256 keys under `tests/fixtures/` are TEST-ONLY key pairs
//! committed on purpose (see the README there); they protect nothing.

mod common;

use common::binary::Binary;
use common::fake_ollama::{FakeOllama, Script};
use common::sio::{ConnectError, SioClient};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use streamgate::Config;

const SECRET: &str = "test-only-hs256-secret-for-streamgate-tests";
const ISSUER: &str = "streamgate-tests";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn hs256(claims: Value) -> String {
    sign_with(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign_with(claims: Value, alg: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(alg), &claims, key).expect("sign")
}

/// Claims of a good token for `sub`.
fn good(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "exp": now() + 600, "iat": now() })
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A validly signed HS256 token whose header marks `crit` extensions.
fn with_crit(claims: Value, crit: &[&str]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(crit.iter().map(|c| c.to_string()).collect());
    for c in crit {
        header.extras.insert(c.to_string(), "on");
    }
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// An unsigned token (`alg: none`), the classic forgery.
fn alg_none(claims: Value) -> String {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", b64url(claims.to_string().as_bytes()))
}

fn auth_config(fake: &FakeOllama) -> Config {
    let mut c = config_for(&fake.base_url());
    c.auth.jwt_secret = SECRET.into();
    c.auth.issuer = ISSUER.into();
    c
}

async fn refused(addr: std::net::SocketAddr, auth: Value) -> String {
    match SioClient::connect(addr, auth.clone()).await {
        Err(ConnectError::Refused(msg)) => msg,
        Err(ConnectError::Other(e)) => panic!("{auth}: not a connect_error: {e}"),
        Ok(c) => panic!("{auth}: connected: {}", c.connected),
    }
}

async fn slow_upstream() -> FakeOllama {
    FakeOllama::start(|p| {
        if p.starts_with("slow") {
            Script::tokens(2_000, 20)
        } else {
            Script::tokens(3, 1)
        }
    })
    .await
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_handshake() {
    let fake = slow_upstream().await;
    let gw = start(auth_config(&fake)).await;
    let t = now();
    let wrong_key = EncodingKey::from_secret(b"another-secret-entirely");
    // (what, auth object, a word the reason must contain)
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no auth at all", json!({}), "missing token"),
        ("empty token", json!({"token": ""}), "missing token"),
        ("not a JWT", json!({"token": "not-a-jwt"}), "malformed"),
        ("three junk parts", json!({"token": "a.b.c"}), "malformed"),
        (
            "expired",
            json!({"token": hs256(json!({"sub": "u", "iss": ISSUER, "exp": t - 3_600}))}),
            "expired",
        ),
        (
            "not valid yet",
            json!({"token": hs256(json!({"sub": "u", "iss": ISSUER, "exp": t + 600, "nbf": t + 3_600}))}),
            "not valid yet",
        ),
        (
            "wrongly signed",
            json!({"token": sign_with(good("u"), Algorithm::HS256, &wrong_key)}),
            "bad signature",
        ),
        (
            "alg none",
            json!({"token": alg_none(good("u"))}),
            "alg none",
        ),
        (
            "wrong issuer",
            json!({"token": hs256(json!({"sub": "u", "iss": "someone-else", "exp": t + 600}))}),
            "issuer",
        ),
        (
            "no exp",
            json!({"token": hs256(json!({"sub": "u", "iss": ISSUER}))}),
            "exp",
        ),
        (
            "no sub",
            json!({"token": hs256(json!({"iss": ISSUER, "exp": t + 600}))}),
            "sub",
        ),
        (
            // CVE-2026-25537: a string `nbf` must not skip the nbf check.
            "nbf of the wrong type",
            json!({"token": hs256(json!({"sub": "u", "iss": ISSUER, "exp": t + 600, "nbf": "99999999999"}))}),
            "claim nbf has the wrong type",
        ),
        (
            "HS384, another algorithm",
            json!({"token": sign_with(good("u"), Algorithm::HS384, &EncodingKey::from_secret(SECRET.as_bytes()))}),
            "algorithm",
        ),
        ("token not a string", json!({"token": 42}), "auth"),
        (
            // RFC 7515 §4.1.11: an extension the server does not
            // understand, marked critical, must make the token invalid.
            "unknown crit header entry",
            json!({"token": with_crit(good("u"), &["x-bind"])}),
            "crit",
        ),
        (
            "exp out of range",
            json!({"token": hs256(json!({"sub": "u", "iss": ISSUER, "exp": 1e20}))}),
            "claim exp has the wrong type (it must be a number",
        ),
        (
            "numeric sub",
            json!({"token": hs256(json!({"sub": 42, "iss": ISSUER, "exp": t + 600}))}),
            "sub must be a string",
        ),
    ];
    let n = cases.len();
    for (what, auth, word) in cases {
        let msg = refused(gw.addr, auth).await;
        if !what.starts_with("no ") {
            assert!(
                !msg.contains("lacks"),
                "{what}: present but said to lack: {msg}"
            );
        }
        let expect_prefix = if what == "token not a string" {
            "invalid_request:"
        } else {
            "unauthorized:"
        };
        assert!(msg.starts_with(expect_prefix), "{what}: {msg}");
        assert!(msg.contains(word), "{what}: {msg:?} lacks {word:?}");
        assert!(!msg.contains(SECRET), "{what}: secret in {msg}");
    }
    println!("{n} bad handshakes refused, each with its reason");

    let mut c = SioClient::connect(gw.addr, json!({"token": hs256(good("alice"))}))
        .await
        .expect("a valid token connects");
    assert!(c.connected["clientId"].as_str().is_some());
    let ack = c.emit_ack("ai:stream", json!({"prompt": "hi"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn rs256_and_es256_public_keys_from_pem_files() {
    let fake = slow_upstream().await;
    for (public, private, alg) in [
        (
            "test_rsa_public.pem",
            "test_rsa_private.pem",
            Algorithm::RS256,
        ),
        (
            "test_ec_public.pem",
            "test_ec_private.pem",
            Algorithm::ES256,
        ),
    ] {
        let mut config = config_for(&fake.base_url());
        config.auth.jwt_public_key = fixture(public).to_string_lossy().into_owned();
        let gw = start(config).await;
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let claims = json!({"sub": "carol", "exp": now() + 600});
        let c = SioClient::connect(
            gw.addr,
            json!({"token": sign_with(claims.clone(), alg, &key)}),
        )
        .await
        .unwrap_or_else(|e| panic!("{alg:?} token refused: {e:?}"));
        assert!(c.connected["clientId"].is_string());

        // Algorithm confusion: HS256 "signed" with the public key's bytes.
        let public_bytes = std::fs::read(fixture(public)).unwrap();
        let forged = sign_with(
            claims.clone(),
            Algorithm::HS256,
            &EncodingKey::from_secret(&public_bytes),
        );
        let msg = refused(gw.addr, json!({"token": forged})).await;
        assert!(msg.starts_with("unauthorized:"), "{msg}");
        assert!(msg.contains(&format!("{alg:?}")), "{msg}");
        // Expired, with the right key.
        let expired = sign_with(json!({"sub": "carol", "exp": now() - 600}), alg, &key);
        let msg = refused(gw.addr, json!({"token": expired})).await;
        assert_eq!(msg, "unauthorized: token expired");
        gw.shutdown().await.unwrap();
    }
}

async fn next_named(c: &mut SioClient, name: &str) -> Value {
    let evs = c.events_until(|n, _| n == name).await;
    evs.last().unwrap().1.clone()
}

#[tokio::test]
async fn another_user_cannot_cancel_or_resume_my_stream() {
    let fake = slow_upstream().await;
    let mut config = auth_config(&fake);
    config.session.reconnect_window_ms = 5_000;
    let gw = start(config).await;
    let mut alice = SioClient::connect(gw.addr, json!({"token": hs256(good("alice"))}))
        .await
        .unwrap();
    let alice_id = alice.connected["clientId"].as_str().unwrap().to_string();
    let alice_token = alice.connected["resumeToken"].as_str().unwrap().to_string();
    let ack = alice
        .emit_ack("ai:stream", json!({"prompt": "slow", "streamId": "mine"}))
        .await;
    assert_eq!(ack["ok"], true);
    next_named(&mut alice, "ai:token").await;

    let mut bob = SioClient::connect(gw.addr, json!({"token": hs256(good("bob"))}))
        .await
        .unwrap();
    // Cancel: bob sees no stream "mine", exactly as for one that never was.
    bob.emit("ai:cancel", json!({"streamId": "mine"})).await;
    let e = next_named(&mut bob, "ai:error").await;
    assert_eq!(e["code"], "unknown_stream");
    bob.emit("ai:cancel", json!({"streamId": "never-was"}))
        .await;
    let e2 = next_named(&mut bob, "ai:error").await;
    assert_eq!(e2["code"], e["code"]);
    assert_eq!(
        e["error"].as_str().unwrap().replace("mine", "X"),
        e2["error"].as_str().unwrap().replace("never-was", "X"),
        "the answer must not tell whether the stream exists"
    );
    // Resume: even with alice's (leaked) resume token, bob is refused like
    // a wrong token, and the token stays good for alice.
    bob.emit(
        "ai:reconnect",
        json!({"previousClientId": alice_id, "resumeToken": alice_token}),
    )
    .await;
    let f = next_named(&mut bob, "ai:reconnect:failed").await;
    assert_eq!(f["reason"], "forbidden");
    bob.emit(
        "ai:reconnect",
        json!({"previousClientId": alice_id, "resumeToken": "wrong"}),
    )
    .await;
    let f2 = next_named(&mut bob, "ai:reconnect:failed").await;
    assert_eq!(f2, f, "another user's client looks like a wrong token");
    // Acks only touch bob's own (absent) streams: no effect, no error.
    bob.emit(
        "ai:ack",
        json!({"streamId": "mine", "tokenCount": 1_000_000}),
    )
    .await;

    // Alice's stream is untouched and still streaming.
    let t = next_named(&mut alice, "ai:token").await;
    assert_eq!(t["streamId"], "mine");
    // Alice herself, from a second connection, may resume it.
    let mut alice2 = SioClient::connect(gw.addr, json!({"token": hs256(good("alice"))}))
        .await
        .unwrap();
    alice2
        .emit(
            "ai:reconnect",
            json!({"previousClientId": alice_id, "resumeToken": alice_token}),
        )
        .await;
    let ok = next_named(&mut alice2, "ai:reconnect:success").await;
    assert_eq!(ok["streams"][0]["streamId"], "mine");
    alice2.emit("ai:cancel", json!({"streamId": "mine"})).await;
    let c = next_named(&mut alice2, "ai:stream:cancelled").await;
    assert_eq!(c["reason"], "client");
    gw.shutdown().await.unwrap();
}

fn limited(fake: &FakeOllama) -> Config {
    let mut c = config_for(&fake.base_url());
    c.limits.events_per_minute = 60;
    c.limits.events_burst = 10;
    c
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_others_stay_responsive() {
    let fake = slow_upstream().await;
    let gw = start(limited(&fake)).await;
    let mut flooder = SioClient::connect_ok(gw.addr).await;
    let mut calm = SioClient::connect_ok(gw.addr).await;

    let flood = 2_000;
    for _ in 0..flood {
        flooder.emit("ai:heartbeat", json!({})).await;
    }
    // Meanwhile the calm client's round trips stay short.
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let sent = Instant::now();
        calm.emit("ai:heartbeat", json!({})).await;
        next_named(&mut calm, "ai:heartbeat:ack").await;
        worst = worst.max(sent.elapsed());
    }
    println!("calm client's worst heartbeat round trip during the flood: {worst:?}");
    assert!(worst < Duration::from_millis(500), "{worst:?}");

    let (mut acks, mut limited_errors) = (0, 0);
    let mut retry = 0;
    while acks + limited_errors < flood {
        let Some((name, p)) = flooder.next_event_within(Duration::from_secs(2)).await else {
            break;
        };
        match name.as_str() {
            "ai:heartbeat:ack" => acks += 1,
            "ai:error" => {
                assert_eq!(p["code"], "rate_limited", "{p}");
                retry = p["details"]["retryAfterMs"].as_u64().expect("retryAfterMs");
                assert!(p["error"].as_str().unwrap().contains("retry after"));
                limited_errors += 1;
            }
            _ => {}
        }
    }
    println!(
        "flood of {flood}: {acks} answered, {limited_errors} rate_limited, the rest refused quietly; retryAfterMs {retry}"
    );
    assert!((10..=15).contains(&acks), "the burst of 10 passes: {acks}");
    // The first refusal of a run is answered; the rest of the run is not
    // (a refill inside the flood starts a new run).
    assert!(
        (1..=acks - 9).contains(&limited_errors),
        "one answer per run of refusals: {limited_errors}"
    );
    let metrics = metrics_text(gw.addr).await;
    let refused = metric(&metrics, "streamgate_refused_events_total");
    assert_eq!(refused, (flood - acks) as u64, "every refusal is counted");
    assert_eq!(
        metric(&metrics, "streamgate_refusals_unanswered_total"),
        refused - limited_errors as u64
    );
    assert!(
        (1..=1_000).contains(&retry),
        "one event a second refills: {retry}"
    );
    assert!(flooder.still_open(Duration::from_millis(200)).await);
    // The stream call's ack carries the refusal too (after using up
    // whatever refilled meanwhile).
    for _ in 0..20 {
        flooder.emit("ai:heartbeat", json!({})).await;
    }
    let ack = flooder.emit_ack("ai:stream", json!({"prompt": "x"})).await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn streams_per_user_connections_per_ip_and_acks_are_limited() {
    let fake = slow_upstream().await;
    let mut config = auth_config(&fake);
    // One per minute: nothing refills while the test runs.
    config.limits.streams_per_minute = 1;
    config.limits.streams_burst = 2;
    config.limits.connections_per_minute = 1;
    config.limits.connections_burst = 4;
    config.limits.acks_per_minute = 1;
    config.limits.acks_burst = 5;
    let gw = start(config).await;
    let token = json!({"token": hs256(good("dave"))});
    let mut a = SioClient::connect(gw.addr, token.clone()).await.unwrap();
    let mut b = SioClient::connect(gw.addr, token.clone()).await.unwrap();
    // Two streams pass; the user's third, from another connection, does not.
    assert_eq!(
        a.emit_ack("ai:stream", json!({"prompt": "s1"})).await["ok"],
        true
    );
    assert_eq!(
        a.emit_ack("ai:stream", json!({"prompt": "s2"})).await["ok"],
        true
    );
    let ack = b.emit_ack("ai:stream", json!({"prompt": "s3"})).await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    assert!(ack["error"]["message"].as_str().unwrap().contains("user"));
    let e = next_named(&mut b, "ai:error").await;
    assert!(e["details"]["retryAfterMs"].as_u64().unwrap() > 0);
    // Another user has their own budget.
    let mut erin = SioClient::connect(gw.addr, json!({"token": hs256(good("erin"))}))
        .await
        .unwrap();
    assert_eq!(
        erin.emit_ack("ai:stream", json!({"prompt": "e"})).await["ok"],
        true
    );

    // A flood of acks: 5 pass, then one rate_limited error, then silence.
    for i in 0..50 {
        erin.emit("ai:ack", json!({"streamId": "x", "tokenCount": i}))
            .await;
    }
    let mut errors = 0;
    while let Some((name, p)) = erin.next_event_within(Duration::from_millis(300)).await {
        if name == "ai:error" {
            assert_eq!(p["code"], "rate_limited");
            errors += 1;
        }
    }
    assert_eq!(errors, 1, "one notice per run of refused acks");

    // Connections per address: 3 made above, 1 more in the burst, then
    // refused at the Engine.IO handshake, before any session or token.
    SioClient::connect(gw.addr, token.clone()).await.unwrap();
    match SioClient::connect(gw.addr, token.clone()).await {
        Err(ConnectError::Other(e)) => assert!(e.contains("429"), "{e}"),
        other => panic!("a fifth connection: {:?}", other.map(|c| c.connected)),
    }
    let r = reqwest::get(format!(
        "http://{}/socket.io/?EIO=4&transport=polling",
        gw.addr
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("retry after"),
        "{body}"
    );
    assert!(
        body["details"]["retryAfterMs"].as_u64().unwrap() > 0,
        "{body}"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_fields_are_refused_by_name() {
    let fake = slow_upstream().await;
    let mut config = config_for(&fake.base_url());
    config.streams.max_messages_bytes = 1_000;
    config.streams.max_agent_context_bytes = 100;
    config.streams.max_prompt_chars = 50;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let msg = |s: &str| json!({"role": "user", "content": s});
    let cases = [
        (
            json!({"prompt": "x", "messages": [msg(&"a".repeat(600)), msg(&"b".repeat(600))]}),
            "messages",
            "1000 bytes",
        ),
        (
            json!({"prompt": "x", "agentContext": {"selection": "s".repeat(10_000)}}),
            "agentContext",
            "100 bytes",
        ),
        // Characters, not bytes: 51 two-byte ones are refused, 50
        // four-byte ones (below) pass.
        (json!({"prompt": "é".repeat(51)}), "prompt", "50 characters"),
    ];
    for (payload, field, words) in cases {
        let ack = c.emit_ack("ai:stream", payload).await;
        assert_eq!(ack["error"]["code"], "invalid_request", "{ack}");
        let e = next_named(&mut c, "ai:error").await;
        assert_eq!(e["details"]["field"], field, "{e}");
        assert!(e["error"].as_str().unwrap().contains(words), "{e}");
    }
    let ack = c
        .emit_ack("ai:stream", json!({"prompt": "😀".repeat(50)}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    gw.shutdown().await.unwrap();
}

/// The released binary, configured only by the environment: without a key
/// it warns that auth is off; `STREAMGATE_JWT_SECRET` turns auth on.
#[tokio::test]
async fn env_secret_turns_auth_on_in_the_binary_and_its_absence_is_warned() {
    let open = Binary::spawn(&[], &[]).await;
    assert!(
        open.log().contains("AUTH IS OFF"),
        "no warning in:\n{}",
        open.log()
    );
    SioClient::connect_ok(open.addr).await;
    open.kill().await;

    let closed = Binary::spawn(&[], &[("STREAMGATE_JWT_SECRET", SECRET)]).await;
    let log = closed.log();
    assert!(!log.contains("AUTH IS OFF"), "{log}");
    assert!(!log.contains(SECRET), "the secret is logged:\n{log}");
    let msg = refused(closed.addr, json!({})).await;
    assert_eq!(msg, "unauthorized: missing token");
    let claims = json!({"sub": "frank", "exp": now() + 600});
    SioClient::connect(closed.addr, json!({"token": hs256(claims)}))
        .await
        .expect("a token signed with the env secret connects");
    closed.kill().await;
}

/// `server.max_payload_bytes` bounds WebSocket messages too (socketioxide
/// applies `max_payload` to long-polling only): a larger frame ends that
/// connection at the transport, before any of it is parsed, and nobody
/// else notices.
#[tokio::test]
async fn a_frame_over_max_payload_ends_only_its_connection() {
    let fake = slow_upstream().await;
    let mut config = config_for(&fake.base_url());
    config.server.max_payload_bytes = 64 * 1024;
    let gw = start(config).await;
    let mut big = SioClient::connect_ok(gw.addr).await;
    let mut other = SioClient::connect_ok(gw.addr).await;
    let under = json!({"prompt": "p".repeat(30_000)});
    let ack = big.emit_ack("ai:stream", under).await;
    assert_eq!(ack["ok"], true, "a frame under the limit passes: {ack}");
    let over = format!(
        "42/ai,{}",
        json!(["ai:stream", {"prompt": "p".repeat(200_000)}])
    );
    big.send_raw(over).await;
    assert!(
        !big.still_open(Duration::from_secs(2)).await,
        "a 200 KB frame was accepted with a 64 KiB limit"
    );
    other.emit("ai:heartbeat", json!({})).await;
    next_named(&mut other, "ai:heartbeat:ack").await;
    gw.shutdown().await.unwrap();
}

/// A token that expires while its connection lasts starts no more streams
/// (its other events still work, so the client can end what it runs).
#[tokio::test]
async fn a_token_that_expires_mid_connection_starts_no_more_streams() {
    let fake = slow_upstream().await;
    let mut config = auth_config(&fake);
    config.auth.leeway_secs = 0;
    let gw = start(config).await;
    let exp = now() + 2;
    let token = hs256(json!({"sub": "gina", "iss": ISSUER, "exp": exp}));
    let mut c = SioClient::connect(gw.addr, json!({"token": token}))
        .await
        .expect("valid for two more seconds");
    let ack = c.emit_ack("ai:stream", json!({"prompt": "p"})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = c.emit_ack("ai:stream", json!({"prompt": "p"})).await;
    assert_eq!(ack["error"]["code"], "unauthorized", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{ack}"
    );
    c.emit("ai:heartbeat", json!({})).await;
    next_named(&mut c, "ai:heartbeat:ack").await;
    gw.shutdown().await.unwrap();
}

/// An IDE that asks for a completion on every keystroke and cancels the
/// previous one, typing ten characters a second, under the default limits.
#[tokio::test]
async fn an_ide_typing_fast_never_sees_a_limit_with_the_defaults() {
    let fake = FakeOllama::start(|_| Script::tokens(50, 20)).await;
    let mut config = config_for(&fake.base_url());
    config.limits = streamgate::config::RateLimitConfig::default();
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let mut previous: Option<String> = None;
    let mut events = Vec::new();
    for key in 0..30 {
        if let Some(id) = previous.take() {
            c.emit("ai:cancel", json!({"streamId": id})).await;
        }
        let id = format!("k{key}");
        let ack = c
            .emit_ack(
                "ai:stream",
                json!({"prompt": format!("complete {key}"), "streamId": id}),
            )
            .await;
        assert_eq!(ack["ok"], true, "keystroke {key}: {ack}");
        if key % 10 == 0 {
            c.emit("ai:heartbeat", json!({})).await;
        }
        previous = Some(id);
        // The next key comes 100 ms later; read what arrives meanwhile.
        let next_key = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(next_key, c.next_event()).await {
            events.push(ev);
        }
    }
    let limited: Vec<_> = events
        .iter()
        .filter(|(n, p)| n == "ai:error" && p["code"] != "unknown_stream")
        .collect();
    assert!(limited.is_empty(), "{limited:?}");
    gw.shutdown().await.unwrap();
}

/// Starting more streams than a client may run at once is
/// `too_many_streams`, whatever the per-user budget has left, and the
/// refused request spends none of it.
#[tokio::test]
async fn the_eleventh_stream_is_too_many_streams_not_rate_limited() {
    let fake = slow_upstream().await;
    let mut config = config_for(&fake.base_url());
    // Ten at once, and nothing refills while the test runs.
    config.limits.streams_per_minute = 1;
    config.limits.streams_burst = 10;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    for i in 0..10 {
        let ack = c
            .emit_ack("ai:stream", json!({"prompt": format!("slow-{i}")}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = c.emit_ack("ai:stream", json!({"prompt": "slow-10"})).await;
    assert_eq!(ack["error"]["code"], "too_many_streams", "{ack}");
    assert_eq!(ack["error"]["details"]["limit"], 10, "{ack}");
    gw.shutdown().await.unwrap();
}
