//! Agents' streams end to end (PROTOCOL.md part 2, "Agents' tools,
//! reasoning, images, usage"): a live gateway on a port, a raw Socket.IO
//! client, and fake upstreams that are real HTTP servers speaking each
//! provider's exact streaming format (tests/upstream_fakes/agent_wire.rs),
//! cut into HTTP chunks that fall inside events.
//!
//! What is checked: every `ai:reasoning` / `ai:token` / `ai:tool_call`
//! event and its position, the assembled `ai:done.toolCalls`, the finish
//! reason, reasoning data and usage; the request each provider received
//! (tools, tool choice, reasoning, the previous turn's calls, results and
//! signed thinking in the provider's own form, images); a tool loop kept
//! by a session; resume cut inside a tool call's arguments; estimated
//! usage on cancel; refusals before any upstream call.

mod common;
mod upstream_fakes;

use common::sio::SioClient;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use streamgate::config::ProviderKind;
use upstream_fakes::agent_wire::*;
use upstream_fakes::{Fake, Reply, init, provider_config};

const READ_FILE_ARGS: &[&str] = &["{\"pa", "th\":", " \"src/", "main.rs\"", "}"];
const GREP_ARGS: &[&str] = &["{\"pattern\"", ": \"fn ", "main\"}"];

fn tools() -> Value {
    json!([
        {"name": "read_file", "description": "Read a file of the workspace",
         "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
        {"name": "grep", "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}}}}
    ])
}

/// A gateway whose provider `name` (of `kind`) is the fake.
async fn gateway_on(kind: ProviderKind, name: &str, fake: &Fake) -> streamgate::Running {
    init();
    let mut config = config_for("http://127.0.0.1:9");
    config
        .providers
        .insert(name.into(), provider_config(kind, &fake.base));
    config.routing.default_provider = name.into();
    config.session.reconnect_window_ms = 5_000;
    start(config).await
}

/// What one stream delivered, checked against the protocol as it is read.
#[derive(Debug, Default)]
struct Turn {
    /// Event kinds in order, consecutive repeats folded.
    kinds: Vec<String>,
    reasoning: String,
    text: String,
    /// By index: (id, name, argument text).
    calls: BTreeMap<u64, (String, String, String)>,
    position: u64,
    end: Option<(String, Value)>,
}

impl Turn {
    /// Take one event: positions must follow each other exactly (a
    /// merged event says how many pieces it carries).
    fn absorb(&mut self, name: &str, p: &Value) {
        assert!(self.end.is_none(), "{name} after the end: {p}");
        if self.kinds.last().map(String::as_str) != Some(name) {
            self.kinds.push(name.to_string());
        }
        match name {
            "ai:reasoning" | "ai:token" | "ai:tool_call" => {
                let n = p["tokenCount"].as_u64().expect("tokenCount");
                let merged = p["metadata"]["coalesced"].as_u64().unwrap_or(1);
                assert_eq!(n - merged, self.position, "gap or repeat: {p}");
                self.position = n;
            }
            _ => {}
        }
        match name {
            "ai:reasoning" => self.reasoning.push_str(p["data"].as_str().unwrap()),
            "ai:token" => self.text.push_str(p["data"].as_str().unwrap()),
            "ai:tool_call" => {
                let index = p["index"].as_u64().expect("index");
                let (id, name) = (p["id"].as_str().unwrap(), p["name"].as_str().unwrap());
                let call = self
                    .calls
                    .entry(index)
                    .or_insert_with(|| (id.into(), name.into(), String::new()));
                assert_eq!(
                    (call.0.as_str(), call.1.as_str()),
                    (id, name),
                    "every piece repeats id and name"
                );
                call.2.push_str(p["argumentsDelta"].as_str().unwrap());
            }
            n if is_terminal(n) => self.end = Some((name.to_string(), p.clone())),
            _ => {}
        }
    }

    fn done(&self) -> &Value {
        match &self.end {
            Some((n, p)) if n == "ai:done" => p,
            other => panic!("not done: {other:?}"),
        }
    }
}

/// Start a stream and read it to its end.
async fn run(c: &mut SioClient, payload: Value) -> Turn {
    let ack = c.emit_ack("ai:stream", payload.clone()).await;
    assert_eq!(ack["ok"], true, "{payload}: {ack}");
    let id = ack["streamId"].as_str().unwrap().to_string();
    let mut turn = Turn::default();
    for (name, p) in c
        .events_until(|n, p| is_terminal(n) && p["streamId"] == id.as_str())
        .await
    {
        if p["streamId"] == id.as_str() {
            turn.absorb(&name, &p);
        }
    }
    turn
}

/// A refused `ai:stream`: its `ai:error` (the ack says no too).
async fn refusal(c: &mut SioClient, payload: Value) -> Value {
    let ack = c.emit_ack("ai:stream", payload.clone()).await;
    assert_eq!(ack["ok"], false, "{payload}: {ack}");
    let (name, error) = c.next_event().await.unwrap();
    assert_eq!(name, "ai:error", "{payload}");
    assert_eq!(error["code"], ack["error"]["code"]);
    error
}

fn calls_of(turn: &Turn) -> Vec<Value> {
    turn.calls
        .values()
        .map(|(id, name, args)| json!({"id": id, "name": name, "arguments": args}))
        .collect()
}

#[tokio::test]
async fn openai_tool_loop_streams_reasoning_and_two_parallel_calls() {
    let fake = Fake::scripted(|body| {
        let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
        let parts = if last.is_some_and(|m| m["role"] == "tool") {
            openai_text(&["Both ", "look ", "fine."])
        } else {
            openai_tool_calls(
                &["The user ", "wants main."],
                &[
                    ("call_a", "read_file", READ_FILE_ARGS),
                    ("call_b", "grep", GREP_ARGS),
                ],
            )
        };
        Reply::Sse {
            parts: rechunk(&parts, 23),
            hold: false,
        }
    })
    .await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;

    let first = run(
        &mut c,
        json!({"prompt": "Where is main?", "tools": tools(),
        "toolChoice": "auto", "reasoning": {"effort": "low"}, "streamId": "t1"}),
    )
    .await;
    assert_eq!(
        first.kinds,
        [
            "ai:stream:start",
            "ai:reasoning",
            "ai:tool_call",
            "ai:stream:complete",
            "ai:done"
        ]
    );
    assert_eq!(first.reasoning, "The user wants main.");
    let want = json!([
        {"id": "call_a", "name": "read_file", "arguments": "{\"path\": \"src/main.rs\"}"},
        {"id": "call_b", "name": "grep", "arguments": "{\"pattern\": \"fn main\"}"}
    ]);
    assert_eq!(json!(calls_of(&first)), want, "pieces as they streamed");
    let done = first.done();
    assert_eq!(done["toolCalls"], want, "assembled in ai:done");
    assert_eq!(done["finishReason"], "tool_calls");
    assert_eq!(done["totalTokens"], 2 + 5 + 3);
    assert_eq!(
        first.position, 10,
        "one position over reasoning and argument pieces"
    );
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 20, "completionTokens": 9,
        "reasoningTokens": 3, "cacheReadTokens": 4})
    );

    let sent = &fake.bodies()[0];
    assert_eq!(
        sent["tools"][0],
        json!({"type": "function", "function": {"name": "read_file",
        "description": "Read a file of the workspace", "parameters": tools()[0]["parameters"]}})
    );
    assert_eq!(sent["tools"][1]["function"]["name"], "grep");
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["reasoning_effort"], "low");
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));

    // The frontend runs the tools and continues with their results; no prompt.
    let second = run(
        &mut c,
        json!({"tools": tools(), "streamId": "t2", "messages": [
            {"role": "user", "content": "Where is main?"},
            {"role": "assistant", "content": "", "toolCalls": done["toolCalls"]},
            {"role": "tool", "toolCallId": "call_a", "content": "fn main() {}"},
            {"role": "tool", "toolCallId": "call_b", "content": "src/main.rs:1"}
        ]}),
    )
    .await;
    assert_eq!(second.text, "Both look fine.");
    assert_eq!(second.done()["finishReason"], "stop");
    assert!(
        second.done().get("toolCalls").is_none_or(Value::is_null),
        "{:?}",
        second.done()
    );
    let sent = &fake.bodies()[1];
    let msgs: Vec<&Value> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .collect();
    assert_eq!(msgs.len(), 4, "{sent}");
    assert_eq!(
        *msgs[1],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\": \"src/main.rs\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "grep", "arguments": "{\"pattern\": \"fn main\"}"}}
        ]})
    );
    assert_eq!(
        *msgs[2],
        json!({"role": "tool", "content": "fn main() {}", "tool_call_id": "call_a"})
    );
    assert_eq!(
        *msgs[3],
        json!({"role": "tool", "content": "src/main.rs:1", "tool_call_id": "call_b"})
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn anthropic_thinking_signature_and_cache_usage_round_trip() {
    let fake = Fake::scripted(|body| {
        let last = &body["messages"].as_array().unwrap().last().unwrap()["content"];
        let parts = if last[0]["type"] == "tool_result" {
            anthropic_answer(&[], &["It prints."], &[])
        } else {
            anthropic_answer(
                &["I should ", "read it."],
                &["Reading."],
                &[("toolu_1", "read_file", READ_FILE_ARGS)],
            )
        };
        Reply::Sse {
            parts: rechunk(&parts, 31),
            hold: false,
        }
    })
    .await;
    let gw = gateway_on(ProviderKind::Anthropic, "anthropic", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let first = run(
        &mut c,
        json!({"prompt": "Explain this code", "tools": tools(),
        "toolChoice": {"name": "read_file"}, "reasoning": {"budgetTokens": 2048},
        "agentContext": {"language": "rust"}}),
    )
    .await;
    assert_eq!(
        first.kinds,
        [
            "ai:stream:start",
            "ai:reasoning",
            "ai:token",
            "ai:tool_call",
            "ai:stream:complete",
            "ai:done"
        ]
    );
    assert_eq!(
        (first.reasoning.as_str(), first.text.as_str()),
        ("I should read it.", "Reading.")
    );
    let done = first.done();
    let call =
        json!({"id": "toolu_1", "name": "read_file", "arguments": "{\"path\": \"src/main.rs\"}"});
    assert_eq!(done["toolCalls"], json!([call]));
    assert_eq!(json!(calls_of(&first)), json!([call]));
    assert_eq!(done["finishReason"], "tool_calls");
    assert_eq!(done["reasoning"], json!({"signature": "EqQBCgIYAhIM"}));
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 30, "completionTokens": 12,
        "cacheReadTokens": 5, "cacheWriteTokens": 2})
    );
    let sent = &fake.bodies()[0];
    assert!(
        sent["system"].as_str().is_some_and(|s| !s.is_empty()),
        "system prompt as `system`: {sent}"
    );
    assert!(
        sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["role"] != "system")
    );
    assert_eq!(
        sent["tools"][0],
        json!({"name": "read_file", "description": "Read a file of the workspace",
        "input_schema": tools()[0]["parameters"]})
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "read_file"})
    );
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );

    // Next turn: the signed thinking goes back with the calls, as Anthropic
    // requires within a tool loop.
    let second = run(
        &mut c,
        json!({"tools": tools(), "messages": [
            {"role": "user", "content": "Explain this code"},
            {"role": "assistant", "content": "Reading.", "toolCalls": done["toolCalls"],
             "reasoning": {"text": first.reasoning, "signature": done["reasoning"]["signature"]}},
            {"role": "tool", "toolCallId": "toolu_1", "content": "fn main() { println!(\"hi\") }"}
        ]}),
    )
    .await;
    assert_eq!(second.text, "It prints.");
    assert_eq!(
        second.done()["finishReason"],
        "stop",
        "end_turn as the protocol names it"
    );
    let msgs = fake.bodies()[1]["messages"].clone();
    assert_eq!(
        msgs[1],
        json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "src/main.rs"}}
        ]})
    );
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [{"type": "tool_result",
        "tool_use_id": "toolu_1", "content": "fn main() { println!(\"hi\") }"}]})
    );
    gw.shutdown().await.unwrap();
}

/// A 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

#[tokio::test]
async fn ollama_whole_calls_get_ids_and_images_go_as_base64() {
    let fake = Fake::scripted(|_| {
        Reply::Ndjson(ollama_answer(
            &["Look ", "closer."],
            &[],
            &[
                ("read_file", json!({"path": "a.rs"})),
                ("grep", json!({"pattern": "fn"})),
            ],
        ))
    })
    .await;
    let gw = gateway_on(ProviderKind::Ollama, "ollama", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let turn = run(
        &mut c,
        json!({"prompt": "What is in this screenshot?", "tools": tools(),
        "reasoning": {"effort": "high"},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Here it is"},
            {"type": "image", "mediaType": "image/png", "data": PNG}]}]}),
    )
    .await;
    assert_eq!(turn.reasoning, "Look closer.");
    let done = turn.done();
    assert_eq!(
        done["finishReason"], "tool_calls",
        "Ollama says stop; the model stopped to call tools"
    );
    let calls = done["toolCalls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0]["name"].as_str(), calls[0]["arguments"].as_str()),
        (Some("read_file"), Some("{\"path\":\"a.rs\"}"))
    );
    assert_eq!(
        (calls[1]["name"].as_str(), calls[1]["arguments"].as_str()),
        (Some("grep"), Some("{\"pattern\":\"fn\"}"))
    );
    let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(
        ids.iter().all(|id| id.starts_with("call_")) && ids[0] != ids[1],
        "{ids:?}"
    );
    assert_eq!(
        json!(calls_of(&turn)),
        done["toolCalls"],
        "events carry the same generated ids"
    );
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 9, "completionTokens": 4})
    );
    let sent = &fake.bodies()[0];
    let user = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["images"].is_array())
        .expect("a message with images");
    assert_eq!(user["images"], json!([PNG]));
    assert_eq!(user["content"], "Here it is");
    assert_eq!(sent["tools"][0]["function"]["name"], "read_file");
    assert_eq!(sent["think"], "high");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_keeps_the_tool_loop() {
    let fake = Fake::scripted(|body| {
        let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
        let parts = if last.is_some_and(|m| m["role"] == "tool") {
            openai_text(&["Done."])
        } else {
            openai_tool_calls(&[], &[("call_a", "read_file", READ_FILE_ARGS)])
        };
        Reply::Sse { parts, hold: false }
    })
    .await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let first = run(
        &mut c,
        json!({"sessionId": "agent-1", "prompt": "Open main", "tools": tools()}),
    )
    .await;
    assert_eq!(first.done()["turn"], 1);
    // With a session, `messages` carries only this turn's tool results.
    let refused = refusal(
        &mut c,
        json!({"sessionId": "agent-1", "messages": [
            {"role": "user", "content": "sneaky history"}]}),
    )
    .await;
    assert_eq!(refused["details"]["field"], "messages", "{refused}");
    let second = run(
        &mut c,
        json!({"sessionId": "agent-1", "tools": tools(), "messages": [
        {"role": "tool", "toolCallId": "call_a", "content": "fn main() {}"}]}),
    )
    .await;
    assert_eq!(
        (second.text.as_str(), &second.done()["turn"]),
        ("Done.", &json!(2))
    );

    let sent: Vec<Value> = fake.bodies()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .cloned()
        .collect();
    assert_eq!(
        sent,
        vec![
            json!({"role": "user", "content": "Open main"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_a", "type": "function",
            "function": {"name": "read_file", "arguments": "{\"path\": \"src/main.rs\"}"}}]}),
            json!({"role": "tool", "content": "fn main() {}", "tool_call_id": "call_a"}),
        ]
    );
    let (status, session) = get_json(gw.addr, "/api/chat/sessions/agent-1").await;
    assert_eq!(status, 200);
    let stored: Vec<Value> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            json!({"role": m["role"], "content": m["content"], "toolCalls": m.get("toolCalls"),
            "toolCallId": m.get("toolCallId")})
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            json!({"role": "user", "content": "Open main", "toolCalls": null, "toolCallId": null}),
            json!({"role": "assistant", "content": "", "toolCallId": null, "toolCalls": [
            {"id": "call_a", "name": "read_file", "arguments": "{\"path\": \"src/main.rs\"}"}]}),
            json!({"role": "tool", "content": "fn main() {}", "toolCalls": null, "toolCallId": "call_a"}),
            json!({"role": "assistant", "content": "Done.", "toolCalls": null, "toolCallId": null}),
        ]
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn resume_cut_inside_tool_arguments_delivers_each_piece_once() {
    let pieces: Vec<String> = (0..80).map(|i| format!("{{\"k{i}\":{i}}}")).collect();
    let mut args: Vec<String> = vec!["[".into()];
    args.extend(
        pieces
            .iter()
            .enumerate()
            .map(|(i, p)| if i == 0 { p.clone() } else { format!(",{p}") }),
    );
    args.push("]".into());
    let whole = args.concat();
    let script_args = args.clone();
    let fake = Fake::scripted(move |_| {
        let refs: Vec<&str> = script_args.iter().map(String::as_str).collect();
        Reply::Sse {
            parts: openai_tool_calls(&["hm"], &[("call_z", "apply", &refs)]),
            hold: false,
        }
    })
    .await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let (client_id, token) = (
        c.connected["clientId"].clone(),
        c.connected["resumeToken"].clone(),
    );
    let ack = c
        .emit_ack("ai:stream", json!({"prompt": "patch it", "streamId": "r1"}))
        .await;
    assert_eq!(ack["ok"], true);
    let mut turn = Turn::default();
    let mut pieces_seen = 0;
    while pieces_seen < 20 {
        let (name, p) = c.next_event().await.unwrap();
        if name == "ai:tool_call" {
            pieces_seen += 1;
            c.ack_token(&p).await;
        }
        turn.absorb(&name, &p);
    }
    assert!(
        turn.calls[&0].2.len() < whole.len(),
        "cut before the arguments ended"
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut c = SioClient::connect_ok(gw.addr).await;
    c.emit(
        "ai:reconnect",
        json!({"previousClientId": client_id, "resumeToken": token,
        "streams": [{"streamId": "r1", "lastTokenCount": turn.position}]}),
    )
    .await;
    let events = c
        .events_until(|n, p| is_terminal(n) && p["streamId"] == "r1")
        .await;
    assert!(
        events.iter().any(|(n, _)| n == "ai:reconnect:success"),
        "{events:?}"
    );
    for (name, p) in events.iter().filter(|(_, p)| p["streamId"] == "r1") {
        turn.absorb(name, p);
    }
    assert_eq!(
        turn.calls[&0].2, whole,
        "arguments whole, no piece lost or repeated"
    );
    assert_eq!(turn.done()["toolCalls"][0]["arguments"], whole.as_str());
    assert_eq!(turn.position, 1 + args.len() as u64);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_stream_reports_estimated_usage_and_closes_the_upstream() {
    let mut fake = Fake::start(Reply::Sse {
        parts: vec![
            openai_chunk_text("one "),
            openai_chunk_text("two "),
            openai_chunk_text("three "),
        ],
        hold: true,
    })
    .await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let prompt = "Count to a hundred, slowly please";
    let ack = c
        .emit_ack(
            "ai:stream",
            json!({"prompt": prompt, "streamId": "k", "useOrchestrator": false}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    c.events_until(|n, p| n == "ai:token" && p["tokenCount"] == 3)
        .await;
    c.emit("ai:cancel", json!({"streamId": "k"})).await;
    let events = c.events_until(|n, _| n == "ai:stream:cancelled").await;
    let usage = &events.last().unwrap().1["usage"];
    assert_eq!(usage["completionTokens"], 3);
    assert_eq!(usage["estimated"], true);
    let chars: usize = fake.bodies()[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").len())
        .sum();
    assert_eq!(
        usage["promptTokens"],
        chars.div_ceil(4) as u64,
        "about four characters a token"
    );
    tokio::time::timeout(Duration::from_secs(5), fake.closed.recv())
        .await
        .expect("the upstream request closed");
    gw.shutdown().await.unwrap();
}

fn openai_chunk_text(t: &str) -> String {
    upstream_fakes::openai_chunk(json!({"content": t}), Value::Null)
}

#[tokio::test]
async fn providers_that_cannot_take_tools_or_images_refuse_before_calling() {
    let fake = Fake::start(Reply::Ndjson(ollama_answer(&[], &["x"], &[]))).await;
    init();
    let mut config = config_for(&fake.base);
    config.providers.get_mut("ollama").unwrap().accepts_images = Some(false);
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let image = json!([{"role": "user", "content": [{"type": "image", "mediaType": "image/png", "data": PNG}]}]);
    let cases = [
        (
            json!({"prompt": "x", "provider": "simulated", "tools": tools()}),
            "tools",
            "simulated",
        ),
        (
            json!({"prompt": "x", "provider": "ollama", "messages": image}),
            "messages",
            "images",
        ),
    ];
    for (payload, field, word) in cases {
        let refused = refusal(&mut c, payload).await;
        assert_eq!(refused["code"], "invalid_request");
        assert_eq!(refused["details"]["field"], field, "{refused}");
        let msg = refused["error"].as_str().unwrap();
        assert!(msg.contains(word), "{msg:?} names {word}");
    }
    assert_eq!(fake.count(), 0, "no upstream call");
    // The same provider still serves what it can take.
    let turn = run(&mut c, json!({"prompt": "hello", "provider": "ollama"})).await;
    assert_eq!(turn.text, "x");
    gw.shutdown().await.unwrap();
}

/// The OpenAI fake of the tool-call turn, cut inside events.
async fn tool_turn_fake() -> Fake {
    Fake::scripted(|_| Reply::Sse {
        parts: rechunk(
            &openai_tool_calls(
                &["The user ", "wants main."],
                &[
                    ("call_a", "read_file", READ_FILE_ARGS),
                    ("call_b", "grep", GREP_ARGS),
                ],
            ),
            17,
        ),
        hold: false,
    })
    .await
}

#[tokio::test]
async fn server_sent_events_carry_reasoning_and_tool_calls() {
    let fake = tool_turn_fake().await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/chat/stream", gw.addr))
        .json(
            &json!({"message": "Where is main?", "tools": tools(), "tool_choice": "required",
            "reasoning": {"budget_tokens": 1024}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = common::sse::SseReader::new(r).all().await;
    let named = |name: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e.event.as_deref() == Some(name))
            .map(|e| &e.json)
            .collect()
    };
    let reasoning: String = named("reasoning")
        .iter()
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(reasoning, "The user wants main.");
    let mut args: BTreeMap<u64, String> = BTreeMap::new();
    for e in named("tool_call") {
        let (index, id) = (e["index"].as_u64().unwrap(), e["id"].as_str().unwrap());
        assert_eq!(id, ["call_a", "call_b"][index as usize], "{e}");
        args.entry(index)
            .or_default()
            .push_str(e["arguments_delta"].as_str().unwrap());
    }
    assert_eq!(args[&0], READ_FILE_ARGS.concat());
    assert_eq!(args[&1], GREP_ARGS.concat());
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| e.id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(
        ids,
        (1..=10).collect::<Vec<u64>>(),
        "one position over every kind, as `id:`"
    );
    let done = &events.last().unwrap().json;
    assert_eq!(done["done"], true);
    assert_eq!(done["finish_reason"], "tool_calls");
    assert_eq!(
        done["tool_calls"][1],
        json!({"id": "call_b", "name": "grep", "arguments": GREP_ARGS.concat()})
    );
    assert_eq!(fake.bodies()[0]["tool_choice"], "required");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_openai_compatible_endpoint_streams_tool_calls_as_openai_does() {
    let fake = tool_turn_fake().await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let url = format!("http://{}/v1/chat/completions", gw.addr);
    let body = json!({"model": "openai/test-model", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Where is main?"}],
        "tools": [{"type": "function", "function": tools()[0]}, {"type": "function", "function": tools()[1]}]});
    let r = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = common::sse::SseReader::new(r).all().await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<&Value> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| &e.json)
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut reasoning = String::new();
    let mut calls: BTreeMap<u64, Value> = BTreeMap::new();
    for c in &chunks {
        let delta = &c["choices"][0]["delta"];
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        for piece in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = piece["index"].as_u64().unwrap();
            match calls.get_mut(&index) {
                None => {
                    assert_eq!(
                        piece["type"], "function",
                        "id, type and name on the first piece: {piece}"
                    );
                    assert!(piece["id"].is_string() && piece["function"]["name"].is_string());
                    calls.insert(index, piece.clone());
                }
                Some(call) => {
                    assert!(
                        piece.get("id").is_none() && piece["function"].get("name").is_none(),
                        "{piece}"
                    );
                    let more = piece["function"]["arguments"].as_str().unwrap();
                    let whole =
                        format!("{}{more}", call["function"]["arguments"].as_str().unwrap());
                    call["function"]["arguments"] = json!(whole);
                }
            }
        }
    }
    assert_eq!(reasoning, "The user wants main.");
    assert_eq!(
        calls[&0],
        json!({"index": 0, "id": "call_a", "type": "function",
        "function": {"name": "read_file", "arguments": READ_FILE_ARGS.concat()}})
    );
    assert_eq!(calls[&1]["function"]["arguments"], GREP_ARGS.concat());
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("tool_calls")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 3);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(
        fake.bodies()[0]["tools"][0]["function"]["name"],
        "read_file"
    );

    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let r: Value = reqwest::Client::new()
        .post(&url)
        .json(&whole)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["reasoning_content"],
        "The user wants main."
    );
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([
            {"id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": READ_FILE_ARGS.concat()}},
            {"id": "call_b", "type": "function", "function": {"name": "grep", "arguments": GREP_ARGS.concat()}}
        ])
    );
    assert_eq!(
        r["usage"]["completion_tokens_details"]["reasoning_tokens"],
        3
    );
    gw.shutdown().await.unwrap();
}

/// The agent fake the official clients drive: the two tool calls (after
/// reasoning) until the request ends with tool results, then an answer
/// that quotes those results.
fn agent_turns(body: &Value) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let results: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or("?").to_string())
        .collect();
    let parts = if results.is_empty() {
        openai_tool_calls(
            &["The user ", "wants main."],
            &[
                ("call_a", "read_file", READ_FILE_ARGS),
                ("call_b", "grep", GREP_ARGS),
            ],
        )
    } else {
        let quoted: Vec<String> = results.into_iter().rev().collect();
        openai_text(&["Tools said: ", &quoted.join(" | ")])
    };
    Reply::Sse {
        parts: rechunk(&parts, 29),
        hold: false,
    }
}

#[tokio::test]
async fn the_agent_loop_with_the_official_socket_io_client_and_openai_python_sdk() {
    let root = common::node::repo();
    common::node::ensure_npm(&root.join("tests/js"));
    let python = common::python::python_venv();
    let fake = Fake::scripted(agent_turns).await;
    let gw = gateway_on(ProviderKind::Openai, "openai", &fake).await;
    let url = format!("http://{}", gw.addr);

    let node = common::node::node_test(
        &[root.join("tests/js/agent.test.mjs")],
        &[("GATEWAY_URL", url.clone())],
    )
    .await;
    assert!(node.success && node.failed == 0, "node agent test failed");
    assert_eq!(node.passed, 1, "expected 1 passing node test");

    let out = tokio::process::Command::new(&python)
        .arg(root.join("tests/py/openai_tools.py"))
        .env("GATEWAY_URL", &url)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("all passed"),
        "python SDK tool loop"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_agents_own_tools_are_merged_with_the_requests() {
    let dir = std::env::temp_dir().join(format!("sg-agent-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        r#"default_agent = "tester"
[[agents]]
name = "tester"
intents = ["test"]
system_prompt = "You write tests."
[[agents.tools]]
name = "run_tests"
description = "Run the test suite"
parameters = { type = "object", properties = { filter = { type = "string" } } }
[[agents.tools]]
name = "read_file"
description = "the agent's own read_file"
[[intents]]
name = "test"
rules = [{ pattern = 'test', weight = 1.0 }]
"#,
    )
    .unwrap();
    let fake = Fake::scripted(|_| Reply::Sse {
        parts: openai_text(&["ok"]),
        hold: false,
    })
    .await;
    init();
    let mut config = config_for("http://127.0.0.1:9");
    config.providers.insert(
        "openai".into(),
        provider_config(ProviderKind::Openai, &fake.base),
    );
    config.routing.default_provider = "openai".into();
    config.routing.agents_file = file.to_string_lossy().into_owned();
    let gw = start(config).await;
    let mut c = SioClient::connect_ok(gw.addr).await;
    let turn = run(&mut c, json!({"prompt": "write a test", "tools": tools()})).await;
    assert_eq!(turn.text, "ok");
    let names: Vec<(String, String)> = fake.bodies()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = &t["function"];
            (
                f["name"].as_str().unwrap().into(),
                f["description"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("run_tests".to_string(), "Run the test suite".to_string()),
            ("read_file".into(), "Read a file of the workspace".into()),
            ("grep".into(), String::new()),
        ],
        "the agent's tools first; the request's own read_file wins"
    );
    // Without tools of its own, a request to that agent still offers the agent's.
    run(&mut c, json!({"prompt": "another test"})).await;
    assert_eq!(
        fake.bodies()[1]["tools"][0]["function"]["name"],
        "run_tests"
    );
    gw.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
