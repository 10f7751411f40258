//! The official OpenAI SDKs pointed at the gateway by base URL only: the
//! Python SDK (tests/py/openai_sdk.py: streaming and whole completions,
//! usage, `NotFoundError` for an unknown model, `AuthenticationError` for a
//! bad JWT) and the npm package (tests/js/openai.test.mjs: one streamed
//! completion). Both installed on demand (tests/common/python.rs, node.rs).

mod common;

use common::fake_ollama::{FakeOllama, Script};
use common::*;
use std::path::Path;

const SECRET: &str = "an-HS256-secret-of-at-least-32-bytes!";

#[tokio::test]
async fn the_official_openai_sdks_work_by_base_url() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = common::python::python_venv();
    common::node::ensure_npm(&root.join("tests/js"));
    let fake = FakeOllama::start(|_| Script::tokens(12, 2)).await;
    let expected = Script::tokens(12, 2).text();
    let open = start(config_for(&fake.base_url())).await;
    let mut config = config_for(&fake.base_url());
    config.auth.jwt_secret = SECRET.into();
    let authed = start(config).await;
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("GATEWAY_URL", format!("http://{}", open.addr))
            .env("AUTH_GATEWAY_URL", format!("http://{}", authed.addr))
            .env("EXPECTED_TEXT", &expected)
            .env("JWT", common::jwt::hs256(SECRET, "alice"));
    };
    let mut py = tokio::process::Command::new(&python);
    py.arg(root.join("tests/py/openai_sdk.py"));
    env(&mut py);
    let out = py.output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("all passed"),
        "python SDK checks"
    );
    let mut node = tokio::process::Command::new("node");
    node.args(["--test", "--test-reporter=spec"])
        .arg(root.join("tests/js/openai.test.mjs"));
    env(&mut node);
    let out = node.output().await.expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("pass 1"),
        "npm SDK check"
    );
    open.shutdown().await.unwrap();
    authed.shutdown().await.unwrap();
}
