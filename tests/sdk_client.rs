//! Runs the TypeScript SDK's tests (clients/typescript/test, node's test
//! runner, the official socket.io-client) against two live gateways started
//! here, one with auth on, and a fake Ollama whose script each prompt picks.
//! The unit tests in the same directory need no server and run too.

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::node::{ensure_npm, node_test, repo};
use common::*;

const SECRET: &str = "test-only-hs256-secret-for-the-sdk-tests";

/// The scripts of tests/browser and clients/typescript/test/e2e.test.mjs.
fn script(prompt: &str) -> Script {
    match prompt {
        "two-a" => Script::tokens(150, 3),
        "two-b" => Script::tokens(90, 4),
        "cut-a" | "cut-b" => Script::tokens(300, 3),
        "cancel-me" => Script::tokens(1000, 5),
        "break-me" => Script::tokens(500, 5),
        "slow-reader" => Script {
            one_write: true,
            ..Script::tokens(400, 0)
        },
        "auth" => Script::tokens(20, 1),
        "unavailable" => Script {
            status: 503,
            ..Script::tokens(0, 0)
        },
        _ => Script::tokens(40, 2),
    }
}

#[tokio::test]
async fn typescript_sdk_against_the_gateway() {
    let sdk = repo().join("clients/typescript");
    ensure_npm(&sdk);
    let fake = FakeOllama::start(script).await;
    let mut config = config_for(&fake.base_url());
    config.session.reconnect_window_ms = 10_000;
    let gw = start(config.clone()).await;
    config.auth.jwt_secret = SECRET.into();
    let authed = start(config).await;

    let tests = sdk.join("test");
    let mut files: Vec<_> = std::fs::read_dir(&tests)
        .expect("clients/typescript/test")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    let run = node_test(
        &files,
        &[
            ("GATEWAY_URL", format!("http://{}", gw.addr)),
            ("FAKE_OLLAMA_URL", fake.base_url()),
            ("AUTH_GATEWAY_URL", format!("http://{}", authed.addr)),
            ("AUTH_SECRET", SECRET.to_string()),
        ],
    )
    .await;
    assert!(run.success, "SDK tests failed");
    assert_eq!(run.failed, 0);
    assert!(
        !run.output.contains("ℹ skipped 1") && !run.output.contains("# SKIP"),
        "no SDK test may be skipped here"
    );
    // unit 11 + sessions 2 + build 3 + e2e 7.
    assert_eq!(run.passed, 23, "expected 23 passing SDK tests");
    authed.shutdown().await.expect("shutdown");
    gw.shutdown().await.expect("shutdown");
}
