//! Runs the Node end-to-end tests (tests/js, the official socket.io-client)
//! against a live gateway and a fake Ollama started here, so they are part
//! of `cargo test`. The npm packages are installed here when missing.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::npm::ensure_npm;
use common::*;
use std::path::Path;

#[tokio::test]
async fn socket_io_client_end_to_end() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    ensure_npm(&js);
    let fake = FakeOllama::start(|prompt| match prompt {
        "short" => Script::tokens(10, 5),
        "long" => Script::tokens(400, 20),
        p if p.starts_with("resume-") => Script::tokens(200, 5),
        _ => Script::tokens(40, 2),
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
        .env("GATEWAY_URL", format!("http://{}", gw.addr))
        .env("FAKE_OLLAMA_URL", fake.base_url())
        .output()
        .await
        .expect("node runs (the Node tests need Node.js 20+ on PATH)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node tests failed");
    assert!(stdout.contains("pass 3"), "expected 3 passing node tests");
    gw.shutdown().await.unwrap();
}
