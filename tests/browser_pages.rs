//! Runs the browser tests (tests/browser, playwright-core driving Debian's
//! headless Chromium) against two live gateways started here, one with auth
//! on, and a fake Ollama whose script each prompt picks. Screenshots go to
//! target/screenshots/ (CI keeps them as artifacts).

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::node::{ensure_npm, node_test, repo};
use common::*;

const SECRET: &str = "test-only-hs256-secret-for-the-browser-tests";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The scripts of tests/browser/pages.test.mjs, by prompt.
fn script(prompt: &str) -> Script {
    match prompt {
        "pane-a" => Script::tokens(400, 10),
        "pane-b" | "ops-load" => Script::tokens(300, 10),
        "auth-pane" => Script::tokens(30, 2),
        _ => Script::tokens(40, 2),
    }
}

#[tokio::test]
async fn playground_and_ops_pages_in_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does)"
    );
    let dir = repo().join("tests/browser");
    ensure_npm(&dir);
    let fake = FakeOllama::start(script).await;
    let mut config = config_for(&fake.base_url());
    config.session.reconnect_window_ms = 10_000;
    let gw = start(config.clone()).await;
    config.auth.jwt_secret = SECRET.into();
    let authed = start(config).await;

    let shots = repo().join("target/screenshots");
    let run = node_test(
        &[dir.join("pages.test.mjs")],
        &[
            ("GATEWAY_URL", format!("http://{}", gw.addr)),
            ("AUTH_GATEWAY_URL", format!("http://{}", authed.addr)),
            ("AUTH_SECRET", SECRET.to_string()),
            ("FAKE_OLLAMA_URL", fake.base_url()),
            ("SCREENSHOTS", shots.display().to_string()),
            ("CHROMIUM", CHROMIUM.to_string()),
        ],
    )
    .await;
    assert!(run.success, "browser tests failed");
    assert_eq!(
        (run.passed, run.failed),
        (3, 0),
        "expected 3 passing browser tests"
    );
    for shot in ["playground.png", "ops.png"] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
    authed.shutdown().await.expect("shutdown");
    gw.shutdown().await.expect("shutdown");
}
