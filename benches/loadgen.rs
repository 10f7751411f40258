//! The load generator: `cargo bench --bench loadgen -- [options]`.
//!
//! It runs each scenario (throughput, latency, idle, cancel, slow-clients,
//! resume over Socket.IO; http, http-cancel over HTTP streaming) against
//! each target that has its door (streamgate's release binary, the Node and
//! Python peers under benches/peers/, and the raw-WebSocket ceiling; opt-in:
//! two streamgate nodes on one Redis as `streamgate-cluster`, LiteLLM's
//! proxy, another streamgate build as `streamgate-before`), each run with a
//! fresh fake Ollama upstream in this process and freshly started target
//! processes. Runs are interleaved (run 1 of every scenario and target,
//! then run 2, …) so that machine noise spreads evenly. Each run prints one
//! result row (JSON + table); the end prints medians and ratios as markdown
//! and writes every row to `<target dir>/bench-results/`. Exit status is
//! non-zero if any run failed, which is what `--smoke` (tiny scale, CI)
//! relies on. `--serve-ceiling` is the ceiling server's own entry point.
//!
//! Modules: `upstream` (fake Ollama), `client` (Engine.IO client),
//! `http_client` (SSE client), `targets` (processes, /proc), `ceiling`,
//! `scenarios`, `report`.

#[path = "loadgen/ceiling.rs"]
mod ceiling;
#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/http_client.rs"]
mod http_client;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/scenarios.rs"]
mod scenarios;
#[path = "loadgen/targets.rs"]
mod targets;
#[path = "loadgen/upstream.rs"]
mod upstream;

use clap::Parser;
use scenarios::{Scale, Scenario};
use std::process::ExitCode;
use std::time::Duration;
use targets::Target;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "streamgate load generator: scenarios x targets, side by side"
)]
struct Args {
    /// Every scenario at tiny scale against streamgate and the ceiling (a few
    /// seconds); exits non-zero if any fails.
    #[arg(long)]
    smoke: bool,
    /// Scenarios to run (default: all).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Targets to run (default: streamgate, node, python, ceiling; with
    /// --smoke: streamgate, ceiling, and streamgate-cluster when
    /// redis-server is on PATH). Opt-in: litellm (HTTP scenarios only),
    /// streamgate-before (LOADGEN_BEFORE_BIN, run in LOADGEN_BEFORE_DIR) and
    /// streamgate-cluster (two nodes on one redis-server).
    #[arg(long = "target", value_enum)]
    targets: Vec<Target>,
    /// Runs of each (scenario, target); tables show medians.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// idle: connected clients (full default 10,000).
    #[arg(long)]
    idle_clients: Option<usize>,
    /// throughput: clients (each runs --tp-streams streams).
    #[arg(long)]
    tp_clients: Option<usize>,
    #[arg(long)]
    tp_streams: Option<usize>,
    /// throughput: tokens per stream.
    #[arg(long)]
    tp_tokens: Option<u32>,
    /// Bytes per token (throughput, latency, cancel).
    #[arg(long)]
    token_size: Option<usize>,
    /// latency: clients (each runs --lat-streams streams at --lat-rate).
    #[arg(long)]
    lat_clients: Option<usize>,
    #[arg(long)]
    lat_streams: Option<usize>,
    #[arg(long)]
    lat_tokens: Option<u32>,
    #[arg(long)]
    lat_rate: Option<f64>,
    /// cancel: clients (each runs --cancel-streams streams).
    #[arg(long)]
    cancel_clients: Option<usize>,
    #[arg(long)]
    cancel_streams: Option<usize>,
    /// slow-clients: clients in all (10% of them slow).
    #[arg(long)]
    slow_clients: Option<usize>,
    #[arg(long)]
    slow_tokens: Option<u32>,
    #[arg(long)]
    slow_rate: Option<f64>,
    #[arg(long)]
    slow_size: Option<usize>,
    /// http, http-cancel: streams (http-cancel uses the cancel counts).
    #[arg(long)]
    http_streams: Option<usize>,
    #[arg(long)]
    http_tokens: Option<u32>,
    #[arg(long)]
    http_rate: Option<f64>,
    /// streamgate's HTTP door: openai (/v1/chat/completions) or sse
    /// (/api/chat/stream).
    #[arg(long, value_enum)]
    http_api: Option<http_client::Api>,
    /// resume: clients (one stream each, cut and resumed on the next node).
    #[arg(long)]
    resume_clients: Option<usize>,
    #[arg(long)]
    resume_tokens: Option<u32>,
    #[arg(long)]
    resume_rate: Option<f64>,
    /// Bound on one scenario run, seconds.
    #[arg(long)]
    limit_s: Option<u64>,
    /// Internal: serve as the ceiling on --port relaying --upstream.
    #[arg(long, hide = true)]
    serve_ceiling: bool,
    #[arg(long, hide = true)]
    port: Option<u16>,
    #[arg(long, hide = true)]
    upstream: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.serve_ceiling {
        let (Some(port), Some(up)) = (args.port, args.upstream.clone()) else {
            eprintln!("loadgen: --serve-ceiling needs --port and --upstream");
            return ExitCode::from(2);
        };
        return match rt.block_on(ceiling::serve(port, up)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ceiling: {e}");
                ExitCode::FAILURE
            }
        };
    }
    rt.block_on(bench(args))
}

fn scale_of(a: &Args) -> Scale {
    let mut s = if a.smoke {
        Scale::smoke()
    } else {
        Scale::full()
    };
    macro_rules! over {
        ($($f:ident => $g:ident),*) => { $( if let Some(v) = a.$f { s.$g = v; } )* };
    }
    over!(idle_clients => idle_clients, tp_clients => tp_clients, tp_streams => tp_streams,
        tp_tokens => tp_tokens, token_size => token_size, lat_clients => lat_clients,
        lat_streams => lat_streams, lat_tokens => lat_tokens, lat_rate => lat_rate,
        cancel_clients => cancel_clients, cancel_streams => cancel_streams,
        slow_clients => slow_clients, slow_tokens => slow_tokens, slow_rate => slow_rate,
        slow_size => slow_size, http_streams => http_streams, http_tokens => http_tokens,
        http_rate => http_rate, http_api => http_api, resume_clients => resume_clients,
        resume_tokens => resume_tokens, resume_rate => resume_rate);
    if let Some(l) = a.limit_s {
        s.limit = Duration::from_secs(l);
    }
    s
}

async fn bench(args: Args) -> ExitCode {
    let scale = scale_of(&args);
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let targets = if !args.targets.is_empty() {
        args.targets.clone()
    } else if args.smoke {
        let mut t = vec![Target::Streamgate, Target::Ceiling];
        if targets::redis_server().is_some() {
            t.push(Target::StreamgateCluster);
        } else {
            println!("loadgen: no redis-server on PATH: streamgate-cluster left out");
        }
        t
    } else {
        Target::ALL.to_vec()
    };
    let runs = if args.smoke { 1 } else { args.runs.max(1) };
    for t in &targets {
        if let Err(e) = targets::install(*t) {
            eprintln!("loadgen: cannot install {}: {e}", t.name());
            return ExitCode::FAILURE;
        }
    }
    println!("loadgen: scale {scale:?}");
    let mut rows = Vec::new();
    for run in 1..=runs {
        for sc in &scenarios {
            for t in targets.iter().filter(|t| sc.runs_on(**t)) {
                let row = scenarios::run(*sc, *t, run, &scale).await;
                row.print();
                rows.push(row);
                // Let sockets in TIME_WAIT and the target's exit settle.
                tokio::time::sleep(Duration::from_millis(if args.smoke { 50 } else { 300 })).await;
            }
        }
    }
    let md = report::summary_markdown(&rows);
    println!("\n## Medians of {runs} run(s)\n{md}");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| targets::repo_root().join("target"))
        .join("bench-results");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("loadgen-{stamp}.json"));
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, serde_json::to_vec_pretty(&rows).unwrap_or_default()));
    match saved {
        Ok(()) => println!("loadgen: rows written to {}", path.display()),
        Err(e) => eprintln!("loadgen: cannot write {}: {e}", path.display()),
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        eprintln!("loadgen: {failed} of {} runs FAILED", rows.len());
        ExitCode::FAILURE
    } else {
        println!("loadgen: all {} runs passed", rows.len());
        ExitCode::SUCCESS
    }
}
