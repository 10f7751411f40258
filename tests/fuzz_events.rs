//! Fuzzing every client event.
//!
//! 1. Property tests (proptest) over decoding and validation of each
//!    payload type, with arbitrary JSON and with objects built from the
//!    real field names holding values of every type: never a panic, always
//!    a typed request or an error naming a field and a rule.
//! 2. A live socket fed thousands of random frames: every shape of JSON
//!    text (wrong types, huge numbers, nesting past serde_json's depth
//!    limit of 128, lone UTF-16 surrogates, control characters), missing
//!    and extra arguments, unknown events. After each frame a sentinel
//!    event proves the gateway is still answering, and everything that
//!    came back in between is checked: well-formed `ai:error`s, and every
//!    frame answered unless it was a valid `ai:ack` (which has no answer).
//!    The number of inputs tried is printed.
//!
//! Event *names* are always plain strings: a frame whose event name is
//! not a string socketioxide can read is not a Socket.IO event at all, and
//! socketioxide closes that connection as the reference server does.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::sio::SioClient;
use common::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};
use streamgate::protocol::{
    AckRequest, CancelRequest, HeartbeatRequest, ReconnectRequest, RequestBounds, StreamRequest,
    check_stream_sizes, parse_payload,
};
use validator::Validate;

const FIELDS: &[&str] = &[
    "prompt",
    "messages",
    "model",
    "provider",
    "temperature",
    "maxTokens",
    "useOrchestrator",
    "agentContext",
    "streamId",
    "tokenCount",
    "previousClientId",
    "resumeToken",
    "streams",
    "lastTokenCount",
    "role",
    "content",
];

fn limits() -> RequestBounds {
    RequestBounds {
        max_prompt_chars: 64,
        max_tokens_limit: 100,
        max_messages: 4,
        max_messages_bytes: 256,
        max_agent_context_bytes: 128,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[A-Za-z0-9_.:-]{0,70}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FIELDS).prop_map(str::to_string),
        ".{0,12}",
    ]
}

/// Objects made of the real field names, each with any value: the shapes
/// most likely to get past the first checks.
fn near_valid() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..10).prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

fn payloads() -> impl Strategy<Value = Value> {
    prop_oneof![any_json(), near_valid()]
}

/// Decoding `v` as `T` gives a request or errors that each name a field
/// and a rule.
fn decodes_or_names<T: DeserializeOwned + Validate>(v: Value) -> Result<Option<T>, TestCaseError> {
    match parse_payload::<T>(v) {
        Ok(t) => Ok(Some(t)),
        Err(invalid) => {
            prop_assert!(!invalid.0.is_empty());
            for f in &invalid.0 {
                prop_assert!(!f.field.is_empty(), "unnamed field: {f:?}");
                prop_assert!(!f.rule.is_empty(), "no rule: {f:?}");
            }
            Ok(None)
        }
    }
}

proptest! {
    // 2500 cases per payload type keeps CI short; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_500),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stream_request(v in payloads()) {
        let sizes = check_stream_sizes(&v, &limits());
        if let Err(f) = &sizes {
            prop_assert!(["prompt", "messages", "agentContext"].contains(&f.field.as_str()), "{f:?}");
        }
        if let Some(req) = decodes_or_names::<StreamRequest>(v)? {
            match req.check_bounds(&limits()) {
                Ok(()) => prop_assert!(sizes.is_ok(), "raw size check refused what the typed one passed"),
                Err(f) => prop_assert!(!f.field.is_empty() && !f.rule.is_empty()),
            }
        }
    }

    #[test]
    fn cancel_request(v in payloads()) {
        decodes_or_names::<CancelRequest>(v)?;
    }

    #[test]
    fn ack_request(v in payloads()) {
        decodes_or_names::<AckRequest>(v)?;
    }

    #[test]
    fn reconnect_request(v in payloads()) {
        decodes_or_names::<ReconnectRequest>(v)?;
    }

    #[test]
    fn heartbeat_request(v in payloads()) {
        decodes_or_names::<HeartbeatRequest>(v)?;
    }
}

// ---------------------------------------------------------------------------
// Live socket

const EVENTS: &[&str] = &[
    "ai:stream",
    "ai:cancel",
    "ai:ack",
    "ai:heartbeat",
    "ai:reconnect",
];

/// Random JSON *text* (not a `Value`): it can hold what no `Value` can,
/// such as lone surrogates, numbers out of range and nesting past 128.
fn json_text(rng: &mut StdRng, depth: u32) -> String {
    let pick = if depth > 4 {
        rng.random_range(0..7)
    } else {
        rng.random_range(0..11)
    };
    match pick {
        0 => "null".into(),
        1 => ["true", "false"][rng.random_range(0..2)].into(),
        2 => [
            "0",
            "-0",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "1.5",
            "-7",
            "4294967296",
            "1e-400",
        ][rng.random_range(0..11)]
        .into(),
        3 => rng.random_range(-1_000_000i64..1_000_000).to_string(),
        4..=6 => string_text(rng),
        7 => {
            let n = rng.random_range(0..5);
            let items: Vec<String> = (0..n).map(|_| json_text(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        8 | 9 => object_text(rng, depth),
        _ => {
            // Deep nesting, under and over serde_json's limit of 128.
            let d = rng.random_range(100..400);
            if rng.random_bool(0.5) {
                format!("{}1{}", "[".repeat(d), "]".repeat(d))
            } else {
                format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))
            }
        }
    }
}

fn object_text(rng: &mut StdRng, depth: u32) -> String {
    let n = rng.random_range(0..6);
    let fields: Vec<String> = (0..n)
        .map(|_| {
            let key = if rng.random_bool(0.8) {
                format!("\"{}\"", FIELDS[rng.random_range(0..FIELDS.len())])
            } else {
                string_text(rng)
            };
            format!("{key}:{}", json_text(rng, depth + 1))
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn string_text(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "x",
        "Explain this",
        " ",
        "é",
        "😀",
        "\\n",
        "\\\"",
        "\\\\",
        "\\u0000",
        "\\ud800",
        "\\udc00",
        "\\ud83d\\ude00",
        "\\uDFFF\\uD800",
        "\\u00e9",
        "s_1",
        ":",
        "-",
        "</script>",
        "%s%n",
        "\\t",
    ];
    let n = rng.random_range(0..8);
    let mut s = String::from("\"");
    for _ in 0..n {
        s.push_str(PIECES[rng.random_range(0..PIECES.len())]);
    }
    if rng.random_bool(0.02) {
        s.push_str(&"z".repeat(70_000));
    }
    s.push('"');
    s
}

/// A valid payload of `event`, as (key, JSON text) pairs.
fn template(rng: &mut StdRng, event: &str) -> Vec<(&'static str, String)> {
    let id = format!("\"f{}\"", rng.random_range(0..20));
    match event {
        "ai:stream" => vec![
            ("prompt", "\"Explain this code\"".into()),
            ("temperature", "0.5".into()),
            ("maxTokens", "2".into()),
            ("streamId", id),
            ("messages", r#"[{"role":"user","content":"hi"}]"#.into()),
            (
                "agentContext",
                r#"{"activeFile":"a.js","selection":"x"}"#.into(),
            ),
            (
                "useOrchestrator",
                ["true", "false"][rng.random_range(0..2)].into(),
            ),
        ],
        "ai:cancel" => vec![("streamId", id)],
        "ai:ack" => vec![
            ("streamId", id),
            ("tokenCount", rng.random_range(0..5u64).to_string()),
        ],
        "ai:reconnect" => vec![
            ("previousClientId", "\"c_0123\"".into()),
            ("resumeToken", "\"t0k3n\"".into()),
            (
                "streams",
                r#"[{"streamId":"f1","lastTokenCount":1}]"#.into(),
            ),
        ],
        _ => vec![],
    }
}

/// A valid payload with, half of the time, one value replaced by random
/// JSON text and, sometimes, a field dropped or an unknown one added: the
/// inputs that reach the deepest code (routing, live streams, resume).
fn mutated_template(rng: &mut StdRng, event: &str) -> String {
    let mut fields = template(rng, event);
    if !fields.is_empty() && rng.random_bool(0.5) {
        let i = rng.random_range(0..fields.len());
        if rng.random_bool(0.2) {
            fields.remove(i);
        } else {
            fields[i].1 = json_text(rng, 1);
        }
    }
    let mut parts: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    if rng.random_bool(0.1) {
        parts.push(format!("\"extra\":{}", json_text(rng, 1)));
    }
    format!("{{{}}}", parts.join(","))
}

/// One frame: an event name and 0..=2 arguments.
fn frame(rng: &mut StdRng) -> (String, String, Option<String>) {
    let event = if rng.random_bool(0.85) {
        EVENTS[rng.random_range(0..EVENTS.len())].to_string()
    } else {
        [
            "ai:launch",
            "",
            "ai:stream:start",
            "ai:error",
            "😀",
            "ai:Stream",
            "x".repeat(300).as_str(),
        ][rng.random_range(0..7)]
        .to_string()
    };
    let payload = match rng.random_range(0..10) {
        0 => None,
        1..=3 => Some(object_text(rng, 0)),
        4..=5 => Some(json_text(rng, 0)),
        _ => Some(mutated_template(rng, &event)),
    };
    let mut args = vec![format!("\"{event}\"")];
    args.extend(payload.clone());
    if rng.random_bool(0.05) {
        args.push(json_text(rng, 0));
    }
    (event, format!("42/ai,[{}]", args.join(",")), payload)
}

/// Would the gateway accept this `ai:ack` quietly (no answer at all)?
fn is_valid_ack(event: &str, payload: &Option<String>) -> bool {
    if event != "ai:ack" {
        return false;
    }
    let v = match payload {
        None => Value::Null,
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    parse_payload::<AckRequest>(v).is_ok()
}

const CODES: &[&str] = &[
    "invalid_request",
    "rate_limited",
    "too_many_streams",
    "duplicate_stream_id",
    "unknown_stream",
    "model_not_allowed",
    "upstream_unavailable",
    "upstream_error",
    "timeout",
    "internal",
];

/// Would the gateway start a stream for this `ai:stream` (answered later
/// by the stream's own events, or by a live-stream error)?
fn is_valid_stream(event: &str, payload: &Option<String>) -> bool {
    event == "ai:stream"
        && payload
            .as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .is_some_and(|v| parse_payload::<StreamRequest>(v).is_ok())
}

fn is_stream_event(name: &str) -> bool {
    matches!(
        name,
        "ai:stream:start"
            | "ai:token"
            | "ai:stream:complete"
            | "ai:done"
            | "ai:stream:cancelled"
            | "ai:stream:error"
            | "ai:backpressure"
    )
}

/// What came back, for the report and the end-of-run checks.
#[derive(Default)]
struct Tally {
    replies: std::collections::BTreeMap<String, usize>,
    codes: std::collections::BTreeMap<String, usize>,
    started: usize,
    ended: usize,
    /// Last `tokenCount` seen per stream id, to ack at the end.
    tokens: std::collections::BTreeMap<String, Value>,
    /// Stream events, shown when a stream never ends.
    log: Vec<String>,
}

impl Tally {
    /// Check one event; true for an answer to a frame (not stream traffic).
    fn absorb(&mut self, name: &str, p: &Value) -> bool {
        if is_stream_event(name) {
            self.log.push(format!("{name} {}", p));
        }
        *self.replies.entry(name.to_string()).or_default() += 1;
        match name {
            "ai:error" => {
                let code = p["code"].as_str().unwrap_or_default();
                assert!(CODES.contains(&code), "bad code: {p}");
                assert!(p["error"].as_str().is_some_and(|e| !e.is_empty()), "{p}");
                assert!(p["details"].is_object(), "{p}");
                *self.codes.entry(code.to_string()).or_default() += 1;
                true
            }
            "ai:stream:start" => {
                self.started += 1;
                false
            }
            "ai:token" => {
                let id = p["streamId"].as_str().unwrap_or("").to_string();
                self.tokens.insert(id, p.clone());
                false
            }
            "ai:done" | "ai:stream:cancelled" | "ai:stream:error" => {
                self.ended += 1;
                false
            }
            n => !is_stream_event(n),
        }
    }
}

#[tokio::test]
async fn thousands_of_random_frames_over_a_live_socket() {
    let fake = FakeOllama::start(|_| Script::tokens(2, 0)).await;
    let mut config = config_for(&fake.base_url());
    config.routing.default_provider = "simulated".into();
    let sim = config.providers.get_mut("simulated").unwrap();
    sim.tokens_per_second = 0.0;
    sim.reply_tokens = 2;
    config.streams.max_concurrent_streams = 10_000;
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;

    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let inputs: usize = std::env::var("FUZZ_INPUTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut tally = Tally::default();
    let (mut quiet, mut bytes) = (0usize, 0usize);
    for i in 0..inputs {
        let (event, text, payload) = frame(&mut rng);
        bytes += text.len();
        c.send_raw(text.clone()).await;
        let sentinel = format!("sentinel-{i}");
        c.emit("ai:cancel", json!({ "streamId": sentinel })).await;
        let mut answers = 0;
        loop {
            let (name, p) = tokio::time::timeout(Duration::from_secs(5), c.next_event())
                .await
                .unwrap_or_else(|_| {
                    panic!("no answer to the sentinel after frame {i}: {text:.300}")
                })
                .unwrap_or_else(|e| panic!("connection lost after frame {i} ({e}): {text:.300}"));
            if name == "ai:error" && p["details"]["streamId"] == sentinel.as_str() {
                break;
            }
            answers += usize::from(tally.absorb(&name, &p));
        }
        if answers > 0 {
            continue;
        }
        if is_valid_ack(&event, &payload) || is_valid_stream(&event, &payload) {
            quiet += 1;
            continue;
        }
        // Handlers run as separate tasks: the answer may follow the sentinel.
        loop {
            let (name, p) = c
                .next_event_within(Duration::from_secs(2))
                .await
                .unwrap_or_else(|| panic!("frame {i} got no answer: {text:.300}"));
            if tally.absorb(&name, &p) {
                break;
            }
        }
    }
    // Every stream the fuzzer started has ended. The fuzzed valid acks
    // made the gateway count credits for this client, so it holds tokens
    // past the ack window until they are acked: ack what arrived, as a
    // real client would.
    for p in std::mem::take(&mut tally.tokens).values() {
        c.ack_token(p).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.ended < tally.started && Instant::now() < deadline {
        if let Some((name, p)) = c.next_event_within(Duration::from_millis(500)).await {
            tally.absorb(&name, &p);
            if name == "ai:token" {
                c.ack_token(&p).await;
            }
        }
    }
    if tally.ended != tally.started {
        for l in tally.log.iter().rev().take(40).rev() {
            eprintln!("{l:.200}");
        }
    }
    assert_eq!(tally.ended, tally.started, "a started stream never ended");
    assert!(!c.disconnected);
    assert!(
        c.still_open(Duration::from_millis(200)).await,
        "disconnected"
    );
    println!(
        "fuzzed {inputs} frames ({} KiB, seed {seed:#x}) in {:?}: no panic, no disconnect; \
         {quiet} answered only by design's silence (valid ai:ack) or by their stream; \
         {} streams started and ended\nreplies: {:?}\nerror codes: {:?}",
        bytes / 1024,
        started.elapsed(),
        tally.started,
        tally.replies,
        tally.codes
    );
    gw.shutdown().await.unwrap();
}
