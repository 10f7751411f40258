//! A flood of bare Engine.IO handshakes against a streamgate binary, and
//! the binary's resident memory before, right after, and once the
//! sessions' lifetime is over: the measurement behind README's
//! "Connection flood" figures.
//!
//! It starts the binary itself (`--bin`, default `target/release/streamgate`)
//! on a free loopback port with the given `KEY=VALUE` environment, waits
//! for it to listen, sends `--sessions` `GET /socket.io/?EIO=4&transport=polling`
//! requests (`--concurrency` at a time, none of which ever joins `/ai`),
//! counts the answers by status, and reads `VmRSS` from
//! `/proc/<pid>/status` (and `connections.live` from `/stats`, when the
//! build has it) at each point. It stops the binary at the end.
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example connection_flood -- --sessions 60000
//! cargo run --release --example connection_flood -- --sessions 60000 \
//!     STREAMGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS=0 STREAMGATE_LIMITS__MAX_CONNECTIONS=0 \
//!     STREAMGATE_LIMITS__CONNECTIONS_PER_MINUTE=0
//! ```

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    bin: String,
    sessions: usize,
    concurrency: usize,
    settle: Duration,
    env: Vec<(String, String)>,
}

fn args() -> Args {
    let mut a = Args {
        bin: "target/release/streamgate".into(),
        sessions: 60_000,
        concurrency: 64,
        settle: Duration::from_secs(60),
        env: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--bin" => a.bin = value(),
            "--sessions" => a.sessions = value().parse().unwrap_or(a.sessions),
            "--concurrency" => a.concurrency = value().parse().unwrap_or(a.concurrency),
            "--settle-secs" => a.settle = Duration::from_secs(value().parse().unwrap_or(60)),
            kv => match kv.split_once('=') {
                Some((k, v)) => a.env.push((k.into(), v.into())),
                None => eprintln!("ignored argument {kv}"),
            },
        }
    }
    a
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

async fn live(base: &str) -> String {
    let stats = async {
        let v: serde_json::Value = reqwest::get(format!("{base}/stats"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(v["connections"]["live"].to_string())
    };
    stats.await.unwrap_or_else(|| "-".into())
}

/// Start the binary and wait for the line that names its address.
async fn spawn(a: &Args) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(3999);
    // Absolute: the child runs in another directory.
    let bin = std::fs::canonicalize(&a.bin).unwrap_or_else(|e| panic!("{}: {e}", a.bin));
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["--port", &port.to_string()])
        .env("STREAMGATE_SERVER__HOST", "127.0.0.1")
        .env("RUST_LOG", "warn,streamgate=info")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &a.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", a.bin));
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for stream in [
        out.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        err.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if line.contains("listening") {
            return (child, format!("http://127.0.0.1:{port}"));
        }
    }
    panic!("{} did not start listening", a.bin);
}

#[tokio::main]
async fn main() {
    let a = args();
    let (child, base) = spawn(&a).await;
    let pid = child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "idle: RSS {} KiB, connections.live {}",
        rss_kib(pid),
        live(&base).await
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .unwrap_or_default();
    let url = format!("{base}/socket.io/?EIO=4&transport=polling");
    let started = Instant::now();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let per_task = a.sessions.div_ceil(a.concurrency);
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                for _ in 0..per_task {
                    let status = match client.get(&url).send().await {
                        Ok(r) => {
                            let s = r.status().as_u16().to_string();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => "error".into(),
                    };
                    *seen.entry(status).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    for t in tasks {
        for (k, v) in t.await.unwrap_or_default() {
            *statuses.entry(k).or_default() += v;
        }
    }
    println!(
        "flood: {} handshakes in {:.1} s, answers by status {statuses:?}",
        per_task * a.concurrency,
        started.elapsed().as_secs_f64()
    );
    println!(
        "after the flood: RSS {} KiB, connections.live {}",
        rss_kib(pid),
        live(&base).await
    );
    let step = Duration::from_secs(10);
    let mut waited = Duration::ZERO;
    while waited < a.settle {
        tokio::time::sleep(step).await;
        waited += step;
        println!(
            "{} s later: RSS {} KiB, connections.live {}",
            waited.as_secs(),
            rss_kib(pid),
            live(&base).await
        );
    }
    drop(child);
}
