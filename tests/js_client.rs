//! Runs the Node end-to-end tests (tests/js, the official socket.io-client)
//! against a live gateway and a fake Ollama started here, so they are part
//! of `cargo test` (the npm packages are installed here when missing).
//! The fake answers a prompt starting with `recall` with the earlier
//! messages of its request (sessions.test.mjs reads them back).

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::node::ensure_npm;
use common::*;
use serde_json::Value;
use std::path::Path;

/// "heard: " and the messages before the prompt, as `role=content; ...`.
fn recall(body: &Value) -> Script {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let earlier: Vec<String> = messages[..messages.len().saturating_sub(1)]
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["role"].as_str().unwrap_or("?"),
                m["content"].as_str().unwrap_or("")
            )
        })
        .collect();
    let heard = if earlier.is_empty() {
        "nothing".to_string()
    } else {
        earlier.join("; ")
    };
    Script {
        tokens: vec!["heard: ".into(), heard],
        ..Script::tokens(0, 2)
    }
}

#[tokio::test]
async fn socket_io_client_end_to_end() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    ensure_npm(&js);
    let fake = FakeOllama::start_with(|body| {
        let prompt = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("");
        match prompt {
            "short" => Script::tokens(10, 5),
            "long" => Script::tokens(400, 20),
            p if p.starts_with("resume-") => Script::tokens(200, 5),
            p if p.starts_with("recall") => recall(body),
            _ => Script::tokens(40, 2),
        }
    })
    .await;
    let mut config = config_for(&fake.base_url());
    config.session.reconnect_window_ms = 10_000;
    let gw = start(config).await;
    let out = tokio::process::Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(js.join("relay.test.mjs"))
        .arg(js.join("resume.test.mjs"))
        .arg(js.join("sessions.test.mjs"))
        .env("GATEWAY_URL", format!("http://{}", gw.addr))
        .env("FAKE_OLLAMA_URL", fake.base_url())
        .output()
        .await
        .expect("node runs (the Node tests need Node.js 20+ on PATH)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node tests failed");
    assert!(stdout.contains("pass 4"), "expected 4 passing node tests");
    gw.shutdown().await.unwrap();
}
