//! The scenarios: six over Socket.IO (`resume` only on streamgate's
//! builds), two over HTTP streaming (`http`, `http-cancel`). Each one gets a fresh fake upstream and a freshly
//! started target, builds a [`ClientPlan`] per client, runs the clients
//! concurrently, reads the target's CPU and RSS from /proc around the run,
//! and turns what the clients and the upstream saw into one [`Row`].
//!
//! A row fails (and `--smoke` exits non-zero) on any lost, reordered or
//! duplicated token, any error event, any stream left unfinished, or a
//! cancel the upstream never saw.

use crate::client::{self, ClientPlan, ClientResult, ResumePlan, StreamPlan, Ws};
use crate::http_client::{self, Api};
use crate::report::{Row, quantile};
use crate::targets::{Cpu, Running, Target, open_files_limit};
use crate::upstream::Upstream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Throughput,
    Latency,
    Idle,
    Cancel,
    SlowClients,
    /// Streams over HTTP server-sent events: added latency, CPU per token.
    Http,
    /// Closing the HTTP connection → the upstream closed.
    HttpCancel,
    /// A stream cut mid-way and resumed with `ai:reconnect` on the next
    /// node (the same one when there is one): time to success and to the
    /// first replayed token, every position once.
    Resume,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Idle,
        Scenario::Cancel,
        Scenario::SlowClients,
        Scenario::Http,
        Scenario::HttpCancel,
        Scenario::Resume,
    ];

    /// Whether `target` has the door this scenario uses.
    pub fn runs_on(self, target: Target) -> bool {
        match self {
            Scenario::Http | Scenario::HttpCancel => target.http_model().is_some(),
            Scenario::Resume => target.resumes(),
            _ => target.speaks_socketio(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
            Scenario::Cancel => "cancel",
            Scenario::SlowClients => "slow-clients",
            Scenario::Http => "http",
            Scenario::HttpCancel => "http-cancel",
            Scenario::Resume => "resume",
        }
    }
}

/// Every size knob of every scenario.
#[derive(Debug, Clone)]
pub struct Scale {
    pub tp_clients: usize,
    pub tp_streams: usize,
    pub tp_tokens: u32,
    pub token_size: usize,
    pub lat_clients: usize,
    pub lat_streams: usize,
    pub lat_tokens: u32,
    pub lat_rate: f64,
    pub idle_clients: usize,
    pub idle_hold: Duration,
    pub cancel_clients: usize,
    pub cancel_streams: usize,
    pub cancel_rate: f64,
    pub cancel_after: u32,
    pub slow_clients: usize,
    pub slow_fraction: f64,
    pub slow_tokens: u32,
    pub slow_rate: f64,
    pub slow_size: usize,
    pub http_streams: usize,
    pub http_tokens: u32,
    pub http_rate: f64,
    /// The door of streamgate's HTTP streams (LiteLLM has only `openai`).
    pub http_api: Api,
    /// resume: clients (one stream each, starts spread over `spread`),
    /// tokens per stream and their rate, the cut after `resume_cut_after`
    /// tokens, and the pause before reconnecting.
    pub resume_clients: usize,
    pub resume_tokens: u32,
    pub resume_rate: f64,
    pub resume_cut_after: u32,
    pub resume_gap: Duration,
    /// Stream starts are spread over this (latency; half of it for cancel
    /// and slow-clients), as independent users' are.
    pub spread: Duration,
    /// Bound on any one scenario run.
    pub limit: Duration,
}

impl Scale {
    pub fn full() -> Self {
        Self {
            tp_clients: 100,
            tp_streams: 5,
            tp_tokens: 1000,
            token_size: 16,
            lat_clients: 100,
            lat_streams: 10,
            lat_tokens: 100,
            lat_rate: 20.0,
            idle_clients: 10_000,
            idle_hold: Duration::from_secs(3),
            cancel_clients: 50,
            cancel_streams: 4,
            cancel_rate: 50.0,
            cancel_after: 3,
            slow_clients: 100,
            slow_fraction: 0.1,
            slow_tokens: 1000,
            slow_rate: 200.0,
            slow_size: 1024,
            http_streams: 100,
            http_tokens: 100,
            http_rate: 10.0,
            http_api: Api::Openai,
            resume_clients: 100,
            resume_tokens: 100,
            resume_rate: 50.0,
            resume_cut_after: 20,
            resume_gap: Duration::from_millis(200),
            spread: Duration::from_secs(1),
            limit: Duration::from_secs(300),
        }
    }

    pub fn smoke() -> Self {
        Self {
            tp_clients: 4,
            tp_streams: 2,
            tp_tokens: 200,
            token_size: 16,
            lat_clients: 10,
            lat_streams: 2,
            lat_tokens: 20,
            lat_rate: 50.0,
            idle_clients: 50,
            idle_hold: Duration::from_millis(300),
            cancel_clients: 4,
            cancel_streams: 2,
            cancel_rate: 50.0,
            cancel_after: 3,
            slow_clients: 10,
            slow_fraction: 0.1,
            slow_tokens: 40,
            slow_rate: 100.0,
            slow_size: 64,
            http_streams: 8,
            http_tokens: 20,
            http_rate: 50.0,
            http_api: Api::Openai,
            resume_clients: 4,
            resume_tokens: 40,
            resume_rate: 100.0,
            resume_cut_after: 10,
            resume_gap: Duration::from_millis(100),
            spread: Duration::from_millis(100),
            limit: Duration::from_secs(30),
        }
    }
}

pub async fn run(sc: Scenario, target: Target, run: u32, scale: &Scale) -> Row {
    let mut row = Row::new(sc.name(), target.name(), run);
    let upstream = match Upstream::start().await {
        Ok(u) => u,
        Err(e) => {
            row.fail(format!("fake upstream: {e}"));
            return row;
        }
    };
    let server = match target.start(&upstream.url()).await {
        Ok(s) => s,
        Err(e) => {
            row.fail(e);
            return row;
        }
    };
    let body = async {
        match sc {
            Scenario::Throughput => throughput(&server, &mut row, scale).await,
            Scenario::Latency => latency(&server, &mut row, scale).await,
            Scenario::Idle => idle(&server, &mut row, scale).await,
            Scenario::Cancel => cancel(&server, &upstream, &mut row, scale).await,
            Scenario::SlowClients => slow_clients(&server, &mut row, scale).await,
            Scenario::Http => http(&server, target, &mut row, scale).await,
            Scenario::HttpCancel => http_cancel(&server, target, &upstream, &mut row, scale).await,
            Scenario::Resume => resume(&server, &mut row, scale).await,
        }
    };
    if tokio::time::timeout(scale.limit + Duration::from_secs(30), body)
        .await
        .is_err()
    {
        row.fail("scenario ran past its time limit");
    }
    // The machine is shared: say how busy it was (2 cores = 2.0 is full).
    if let Some(load) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split(' ').next().and_then(|v| v.parse::<f64>().ok()))
    {
        row.set("machine_loadavg_1m", load);
    }
    row
}

/// Connect `n` clients, spread over the target's nodes, at most 256
/// handshakes at a time.
async fn connect_all(server: &Running, n: usize) -> Result<Vec<Ws>, String> {
    let sem = Arc::new(Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let sem = sem.clone();
        let port = server.port(i);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            client::connect(port, Duration::from_secs(30)).await
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(ws)) => out.push(ws),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    match first_err {
        Some(e) => Err(format!(
            "{} of {n} clients failed to connect; first: {e}",
            n - out.len()
        )),
        None => Ok(out),
    }
}

async fn run_all(wss: Vec<Ws>, plans: Vec<ClientPlan>) -> Vec<ClientResult> {
    let mut set = tokio::task::JoinSet::new();
    for (ws, plan) in wss.into_iter().zip(plans) {
        set.spawn(client::run(ws, plan));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(res) => out.push(res),
            Err(e) => out.push(ClientResult {
                errors: vec![format!("client task: {e}")],
                ..Default::default()
            }),
        }
    }
    out
}

fn plan(streams: Vec<StreamPlan>, scale: &Scale) -> ClientPlan {
    ClientPlan {
        streams,
        read_delay: None,
        record_latency: true,
        linger: false,
        stop: CancellationToken::new(),
        deadline: Instant::now() + scale.limit,
    }
}

/// Move client errors into the row (the first few verbatim) and sum tokens.
fn collect(row: &mut Row, results: &[ClientResult]) -> u64 {
    let errors: usize = results.iter().map(|r| r.errors.len()).sum();
    if errors > 0 {
        row.fail(format!("{errors} client errors"));
        for e in results.iter().flat_map(|r| &r.errors).take(5) {
            row.errors.push(e.clone());
        }
    }
    results.iter().map(|r| r.tokens).sum()
}

/// Tokens per event that carried tokens (above 1 when tokens were merged).
fn per_event(row: &mut Row, results: &[ClientResult], tokens: u64) {
    let events: u64 = results.iter().map(|r| r.token_events).sum();
    row.set("tokens_per_event", tokens as f64 / events.max(1) as f64);
}

/// CPU per million tokens: the whole target's (every node and helper), and
/// each helper's share apart (`redis_cpu_s_per_mtok`).
fn cpu_per_mtok(row: &mut Row, cpu: &Cpu, tokens: u64) {
    let per = |secs: f64| secs / tokens.max(1) as f64 * 1e6;
    row.set("cpu_s_per_mtok", per(cpu.total));
    for (name, secs) in &cpu.helpers {
        row.set(&format!("{name}_cpu_s_per_mtok"), per(*secs));
    }
}

/// Added latency per token and TTFT overhead over every client's samples
/// (`p999`: a tail this run has samples enough for).
fn added_latency(row: &mut Row, results: &[ClientResult], p999: bool) {
    let mut lat: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let mut ttft: Vec<u32> = results
        .iter()
        .flat_map(|r| r.ttft_us.iter().map(|&v| v.min(u64::from(u32::MAX)) as u32))
        .collect();
    ttft.sort_unstable();
    row.set("added_p50_ms", ms(quantile(&lat, 0.50)));
    row.set("added_p99_ms", ms(quantile(&lat, 0.99)));
    if p999 {
        row.set("added_p999_ms", ms(quantile(&lat, 0.999)));
    }
    row.set("added_max_ms", ms(quantile(&lat, 1.0)));
    row.set("ttft_overhead_p50_ms", ms(quantile(&ttft, 0.50)));
    row.set("ttft_overhead_p99_ms", ms(quantile(&ttft, 0.99)));
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn throughput(server: &Running, row: &mut Row, scale: &Scale) {
    let wss = match connect_all(server, scale.tp_clients).await {
        Ok(w) => w,
        Err(e) => return row.fail(e),
    };
    let plans = (0..scale.tp_clients)
        .map(|c| {
            let streams = (0..scale.tp_streams)
                .map(|s| {
                    StreamPlan::new(format!("t{c}x{s}"), scale.tp_tokens, 0.0, scale.token_size)
                })
                .collect();
            ClientPlan {
                record_latency: false,
                ..plan(streams, scale)
            }
        })
        .collect();
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let results = run_all(wss, plans).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = server.cpu().since(&cpu0);
    let tokens = collect(row, &results);
    let want = (scale.tp_clients * scale.tp_streams) as u64 * u64::from(scale.tp_tokens);
    if tokens != want {
        row.fail(format!("{tokens} tokens delivered, {want} sent"));
    }
    row.set("tokens", tokens as f64);
    per_event(row, &results, tokens);
    row.set("wall_s", wall);
    row.set("tokens_per_s", tokens as f64 / wall);
    cpu_per_mtok(row, &cpu, tokens);
    row.set("cpu_util_pct", cpu.total / wall * 100.0);
    row.set("rss_end_mib", mib(server.rss_kib()));
    log_figures(server, row).await;
}

async fn latency(server: &Running, row: &mut Row, scale: &Scale) {
    let wss = match connect_all(server, scale.lat_clients).await {
        Ok(w) => w,
        Err(e) => return row.fail(e),
    };
    let total = (scale.lat_clients * scale.lat_streams).max(1);
    let plans = (0..scale.lat_clients)
        .map(|c| {
            let streams = (0..scale.lat_streams)
                .map(|s| {
                    let k = c * scale.lat_streams + s;
                    let mut p = StreamPlan::new(
                        format!("l{c}x{s}"),
                        scale.lat_tokens,
                        scale.lat_rate,
                        scale.token_size,
                    );
                    p.start_after = scale.spread.mul_f64(k as f64 / total as f64);
                    p
                })
                .collect();
            plan(streams, scale)
        })
        .collect();
    let cpu0 = server.cpu();
    let results = run_all(wss, plans).await;
    let cpu = server.cpu().since(&cpu0);
    let tokens = collect(row, &results);
    let want = total as u64 * u64::from(scale.lat_tokens);
    if tokens != want {
        row.fail(format!("{tokens} tokens delivered, {want} sent"));
    }
    row.set("streams", total as f64);
    row.set("tokens", tokens as f64);
    per_event(row, &results, tokens);
    added_latency(row, &results, true);
    cpu_per_mtok(row, &cpu, tokens);
    log_figures(server, row).await;
}

async fn idle(server: &Running, row: &mut Row, scale: &Scale) {
    let n = scale.idle_clients;
    // This process holds one socket per client and the target as many.
    let need = n as u64 + 256;
    let have = open_files_limit();
    if have < need {
        return row.fail(format!(
            "open-files limit {have} < {need} needed for {n} clients: run `ulimit -n {need}` first or pass a smaller --idle-clients"
        ));
    }
    let rss0 = server.rss_kib();
    let t0 = Instant::now();
    let wss = match connect_all(server, n).await {
        Ok(w) => w,
        Err(e) => return row.fail(e),
    };
    let connect_s = t0.elapsed().as_secs_f64();
    let stop = CancellationToken::new();
    let plans = (0..n)
        .map(|_| ClientPlan {
            linger: true,
            stop: stop.clone(),
            ..plan(Vec::new(), scale)
        })
        .collect();
    let clients = tokio::spawn(run_all(wss, plans));
    tokio::time::sleep(scale.idle_hold).await;
    let cpu0 = server.cpu().total;
    let window = scale
        .idle_hold
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::time::sleep(window).await;
    let idle_cpu = (server.cpu().total - cpu0) / window.as_secs_f64();
    let rss1 = server.rss_kib();
    stop.cancel();
    match clients.await {
        Ok(results) => {
            collect(row, &results);
        }
        Err(e) => row.fail(format!("clients: {e}")),
    }
    row.set("clients", n as f64);
    row.set("connect_s", connect_s);
    row.set("rss_base_mib", mib(rss0));
    row.set("rss_connected_mib", mib(rss1));
    row.set(
        "rss_per_client_kib",
        rss1.saturating_sub(rss0) as f64 / n.max(1) as f64,
    );
    row.set("idle_cpu_pct", idle_cpu * 100.0);
}

async fn cancel(server: &Running, upstream: &Upstream, row: &mut Row, scale: &Scale) {
    let wss = match connect_all(server, scale.cancel_clients).await {
        Ok(w) => w,
        Err(e) => return row.fail(e),
    };
    let total = (scale.cancel_clients * scale.cancel_streams).max(1);
    let plans = (0..scale.cancel_clients)
        .map(|c| {
            let streams = (0..scale.cancel_streams)
                .map(|s| {
                    let k = c * scale.cancel_streams + s;
                    // Long enough that only a cancel ends it.
                    let mut p = StreamPlan::new(
                        format!("k{c}x{s}"),
                        100_000,
                        scale.cancel_rate,
                        scale.token_size,
                    );
                    p.cancel_after = Some(scale.cancel_after);
                    p.start_after = scale.spread.mul_f64(k as f64 / total as f64 / 2.0);
                    p
                })
                .collect();
            plan(streams, scale)
        })
        .collect();
    let results = run_all(wss, plans).await;
    collect(row, &results);
    close_delays(upstream, &results, total, row).await;
}

/// Cancel sent → the upstream saw its connection close, for every stream
/// the clients cancelled, into the row.
async fn close_delays(upstream: &Upstream, results: &[ClientResult], total: usize, row: &mut Row) {
    let sent: Vec<(String, u64)> = results
        .iter()
        .flat_map(|r| r.cancel_sent.iter().cloned())
        .collect();
    // The clients are done once they hear `ai:stream:cancelled` (or closed
    // the connection); give the upstream a moment to see the last closes.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut delays: Vec<u32> = Vec::new();
    let mut missing = sent.len();
    while Instant::now() < deadline {
        if let Ok(m) = upstream.stats.close_times.lock() {
            delays = sent
                .iter()
                .filter_map(|(id, t)| {
                    m.get(id)
                        .map(|c| c.saturating_sub(*t).min(u64::from(u32::MAX)) as u32)
                })
                .collect();
            missing = sent.len() - delays.len();
        }
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if sent.len() != total {
        row.fail(format!("{} of {total} cancels sent", sent.len()));
    }
    if missing > 0 {
        row.fail(format!(
            "upstream never saw {missing} of {} cancelled streams close",
            sent.len()
        ));
    }
    delays.sort_unstable();
    row.set("streams", total as f64);
    row.set("cancel_to_close_p50_ms", ms(quantile(&delays, 0.50)));
    row.set("cancel_to_close_p99_ms", ms(quantile(&delays, 0.99)));
    row.set("cancel_to_close_max_ms", ms(quantile(&delays, 1.0)));
}

/// Run `plans` as HTTP streams against `server`'s door for `target`.
async fn run_http(
    server: &Running,
    target: Target,
    plans: Vec<StreamPlan>,
    record_latency: bool,
    scale: &Scale,
) -> Result<Vec<ClientResult>, String> {
    let model = target.http_model().ok_or("no HTTP door")?;
    // LiteLLM speaks only OpenAI's API.
    let api = if target == Target::Litellm {
        Api::Openai
    } else {
        scale.http_api
    };
    let http = http_client::http()?;
    // One door per node; streams alternate between them.
    let doors: Vec<Arc<http_client::Door>> = server
        .ports
        .iter()
        .map(|port| {
            Arc::new(http_client::Door {
                base: format!("http://127.0.0.1:{port}"),
                api,
                model,
                key: (target == Target::Litellm).then_some(crate::targets::LITELLM_KEY),
            })
        })
        .collect();
    let deadline = Instant::now() + scale.limit;
    let mut set = tokio::task::JoinSet::new();
    for (k, p) in plans.into_iter().enumerate() {
        set.spawn(http_client::run(
            http.clone(),
            doors[k % doors.len()].clone(),
            p,
            record_latency,
            deadline,
        ));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap_or_else(|e| ClientResult {
            errors: vec![format!("client task: {e}")],
            ..Default::default()
        }));
    }
    Ok(out)
}

/// `http_streams` streams over HTTP, paced, starts spread like `latency`'s.
async fn http(server: &Running, target: Target, row: &mut Row, scale: &Scale) {
    let n = scale.http_streams.max(1);
    let plans = (0..n)
        .map(|k| {
            let mut p = StreamPlan::new(
                format!("h{k}"),
                scale.http_tokens,
                scale.http_rate,
                scale.token_size,
            );
            p.start_after = scale.spread.mul_f64(k as f64 / n as f64);
            p
        })
        .collect();
    let cpu0 = server.cpu();
    let results = match run_http(server, target, plans, true, scale).await {
        Ok(r) => r,
        Err(e) => return row.fail(e),
    };
    let cpu = server.cpu().since(&cpu0);
    let tokens = collect(row, &results);
    let want = n as u64 * u64::from(scale.http_tokens);
    if tokens != want {
        row.fail(format!("{tokens} tokens delivered, {want} sent"));
    }
    row.set("streams", n as f64);
    row.set("tokens", tokens as f64);
    per_event(row, &results, tokens);
    added_latency(row, &results, false);
    cpu_per_mtok(row, &cpu, tokens);
    row.set("rss_end_mib", mib(server.rss_kib()));
}

/// Like `cancel`, over HTTP: each stream's connection is closed after its
/// `cancel_after`-th token; how soon the upstream sees its request closed.
async fn http_cancel(
    server: &Running,
    target: Target,
    upstream: &Upstream,
    row: &mut Row,
    scale: &Scale,
) {
    let total = (scale.cancel_clients * scale.cancel_streams).max(1);
    let plans = (0..total)
        .map(|k| {
            let mut p = StreamPlan::new(
                format!("hk{k}"),
                100_000,
                scale.cancel_rate,
                scale.token_size,
            );
            p.cancel_after = Some(scale.cancel_after);
            p.start_after = scale.spread.mul_f64(k as f64 / total as f64 / 2.0);
            p
        })
        .collect();
    let results = match run_http(server, target, plans, false, scale).await {
        Ok(r) => r,
        Err(e) => return row.fail(e),
    };
    collect(row, &results);
    close_delays(upstream, &results, total, row).await;
}

/// One phase of the slow-clients scenario: `fast` clients reading at once
/// and `slow` ones pausing between frames. Returns the fast clients'
/// sorted latencies, slow clients' tokens, and the RSS samples (KiB).
async fn slow_phase(
    server: &Running,
    row: &mut Row,
    scale: &Scale,
    fast: usize,
    slow: usize,
    tag: &str,
) -> Option<(Vec<u32>, u64, Vec<u64>)> {
    let wss = match connect_all(server, fast + slow).await {
        Ok(w) => w,
        Err(e) => {
            row.fail(e);
            return None;
        }
    };
    let stop = CancellationToken::new();
    let slow_delay = Duration::from_secs_f64(10.0 / scale.slow_rate.max(0.001));
    let mut plans: Vec<ClientPlan> = Vec::new();
    for c in 0..fast + slow {
        let mut p = StreamPlan::new(
            format!("{tag}{c}"),
            scale.slow_tokens,
            scale.slow_rate,
            scale.slow_size,
        );
        p.start_after = scale.spread.mul_f64(c as f64 / (fast + slow) as f64 / 2.0);
        let mut cp = plan(vec![p], scale);
        if c >= fast {
            cp.read_delay = Some(slow_delay);
            cp.stop = stop.clone();
        }
        plans.push(cp);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, (ws, plan)) in wss.into_iter().zip(plans).enumerate() {
        set.spawn(async move { (i, client::run(ws, plan).await) });
    }
    let mut samples = vec![server.rss_kib()];
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut fast_results = Vec::new();
    let mut slow_results = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => samples.push(server.rss_kib()),
            r = set.join_next() => match r {
                Some(Ok((i, res))) => {
                    if i < fast { fast_results.push(res) } else { slow_results.push(res) }
                    if fast_results.len() == fast {
                        // The fast clients are done: the slow ones are cut off.
                        stop.cancel();
                    }
                }
                Some(Err(e)) => row.fail(format!("client task: {e}")),
                None => break,
            }
        }
    }
    samples.push(server.rss_kib());
    collect(row, &fast_results);
    let slow_errors: usize = slow_results.iter().map(|r| r.errors.len()).sum();
    if slow_errors > 0 {
        row.fail(format!("{slow_errors} slow-client errors"));
        for e in slow_results.iter().flat_map(|r| &r.errors).take(3) {
            row.errors.push(format!("slow: {e}"));
        }
    }
    let mut lat: Vec<u32> = fast_results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let slow_tokens = slow_results.iter().map(|r| r.tokens).sum();
    Some((lat, slow_tokens, samples))
}

async fn slow_clients(server: &Running, row: &mut Row, scale: &Scale) {
    let n = scale.slow_clients.max(1);
    let slow = ((n as f64 * scale.slow_fraction).round() as usize).min(n);
    let fast = n - slow;
    // The phase that runs first meets a cold process: alternate the order
    // between runs so that the medians favour neither phase.
    let mixed_first = row.run.is_multiple_of(2);
    let mut alone = Vec::new();
    let mut mixed = None;
    for with_slow in [mixed_first, !mixed_first] {
        let (n_slow, tag) = if with_slow { (slow, "b") } else { (0, "a") };
        let Some(result) = slow_phase(server, row, scale, fast, n_slow, tag).await else {
            return;
        };
        if with_slow {
            mixed = Some(result);
        } else {
            alone = result.0;
        }
    }
    let Some((mixed, slow_tokens, samples)) = mixed else {
        return;
    };
    let rss_before = samples.first().copied().unwrap_or(0);
    let peak = samples.iter().copied().max().unwrap_or(0);
    let p99_alone = ms(quantile(&alone, 0.99));
    let p99_mixed = ms(quantile(&mixed, 0.99));
    row.set("fast_clients", fast as f64);
    row.set("slow_clients", slow as f64);
    row.set("fast_p50_ms_alone", ms(quantile(&alone, 0.50)));
    row.set("fast_p50_ms_with_slow", ms(quantile(&mixed, 0.50)));
    row.set("fast_p99_ms_alone", p99_alone);
    row.set("fast_p99_ms_with_slow", p99_mixed);
    row.set("fast_p99_with_slow_over_alone", p99_mixed / p99_alone);
    let slow_sent = slow as u64 * u64::from(scale.slow_tokens);
    row.set(
        "slow_tokens_read_pct",
        slow_tokens as f64 / slow_sent.max(1) as f64 * 100.0,
    );
    row.set("rss_before_mib", mib(rss_before));
    row.set("rss_peak_mib", mib(peak));
    row.set("rss_growth_mib", mib(peak.saturating_sub(rss_before)));
    let series: Vec<String> = samples.iter().map(|k| format!("{:.1}", mib(*k))).collect();
    println!(
        "  rss-over-time {} run {} (MiB every 250 ms): {}",
        row.target,
        row.run,
        series.join(" ")
    );
}

/// Each client starts one paced stream on node `c`, stops reading after
/// `resume_cut_after` tokens, cuts the transport half of `resume_gap`
/// later, and resumes on node `c + 1` (the same node when the target has
/// one) at the end of the gap, with the stream's `lastTokenCount`.
/// Reported: `ai:reconnect` sent → `ai:reconnect:success` and → the first
/// token after it (a replayed one: sent into the dead socket, never read),
/// p50/p99/max; every position checked once; the nodes' own resume counts.
async fn resume(server: &Running, row: &mut Row, scale: &Scale) {
    let n = scale.resume_clients.max(1);
    let deadline = Instant::now() + scale.limit;
    let mut set = tokio::task::JoinSet::new();
    for c in 0..n {
        let plan = ResumePlan {
            stream: StreamPlan::new(
                format!("r{c}"),
                scale.resume_tokens,
                scale.resume_rate,
                scale.token_size,
            ),
            cut_after: scale
                .resume_cut_after
                .min(scale.resume_tokens.saturating_sub(1)),
            gap: scale.resume_gap,
            first_port: server.port(c),
            resume_port: server.port(c + 1),
            deadline,
        };
        let delay = scale.spread.mul_f64(c as f64 / n as f64);
        set.spawn(async move {
            tokio::time::sleep(delay).await;
            client::resume(plan).await
        });
    }
    let mut results = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        match r {
            Ok(res) => results.push(res),
            Err(e) => row.fail(format!("client task: {e}")),
        }
    }
    let errors: usize = results.iter().map(|r| r.errors.len()).sum();
    if errors > 0 {
        row.fail(format!("{errors} client errors"));
        for e in results.iter().flat_map(|r| &r.errors).take(5) {
            row.errors.push(e.clone());
        }
    }
    let completed = results.iter().filter(|r| r.completed).count();
    if completed != n {
        row.fail(format!("{completed} of {n} resumed streams completed"));
    }
    let tokens: u64 = results.iter().map(|r| u64::from(r.tokens)).sum();
    let want = n as u64 * u64::from(scale.resume_tokens);
    if tokens != want {
        row.fail(format!("{tokens} positions received, {want} sent"));
    }
    let sorted = |f: fn(&client::ResumeResult) -> Option<u64>| {
        let mut v: Vec<u32> = results
            .iter()
            .filter_map(f)
            .map(|us| us.min(u64::from(u32::MAX)) as u32)
            .collect();
        v.sort_unstable();
        v
    };
    let success = sorted(|r| r.success_us);
    let first = sorted(|r| r.first_token_us);
    let before: u64 = results.iter().map(|r| u64::from(r.before_cut)).sum();
    row.set("nodes", server.ports.len() as f64);
    row.set("streams", n as f64);
    row.set("tokens", tokens as f64);
    row.set("tokens_after_cut", tokens.saturating_sub(before) as f64);
    row.set("reconnect_success_p50_ms", ms(quantile(&success, 0.50)));
    row.set("reconnect_success_p99_ms", ms(quantile(&success, 0.99)));
    row.set("reconnect_success_max_ms", ms(quantile(&success, 1.0)));
    row.set("first_replayed_p50_ms", ms(quantile(&first, 0.50)));
    row.set("first_replayed_p99_ms", ms(quantile(&first, 0.99)));
    row.set("first_replayed_max_ms", ms(quantile(&first, 1.0)));
    // What the nodes counted: resumes, tokens replayed, and the batches a
    // home wrote to Redis for a client attached to the other node (every
    // resume on a cluster goes that way).
    let figures = resume_figures(
        server,
        row,
        &["succeeded", "tokensReplayed", "remoteBatches"],
    )
    .await;
    row.set("stats_resumes", figures[0]);
    row.set("stats_tokens_replayed", figures[1]);
    row.set("stats_remote_batches", figures[2]);
    if server.ports.len() > 1 && figures[2] == 0.0 {
        row.fail("two nodes, yet no home wrote a batch for the other node");
    }
}

/// `keys` of `/stats`'s `resume` object, summed over the target's nodes.
async fn resume_figures(server: &Running, row: &mut Row, keys: &[&str]) -> Vec<f64> {
    let mut figures = vec![0.0; keys.len()];
    let http = match http_client::http() {
        Ok(http) => http,
        Err(e) => {
            row.fail(e);
            return figures;
        }
    };
    for port in &server.ports {
        let url = format!("http://127.0.0.1:{port}/stats");
        let stats = match http.get(&url).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.ok(),
            Err(e) => {
                row.fail(format!("GET {url}: {e}"));
                None
            }
        };
        for (f, k) in figures.iter_mut().zip(keys) {
            *f += stats
                .as_ref()
                .and_then(|s| s["resume"][*k].as_f64())
                .unwrap_or(0.0);
        }
    }
    figures
}

/// With several nodes, what their stream-log writers did (one Redis round
/// trip per batch; a stopped log is one that fell behind or was refused).
async fn log_figures(server: &Running, row: &mut Row) {
    if server.ports.len() < 2 {
        return;
    }
    let f = resume_figures(server, row, &["logBatches", "logEvents", "logsStopped"]).await;
    row.set("stats_log_batches", f[0]);
    row.set("stats_log_events", f[1]);
    row.set("stats_logs_stopped", f[2]);
}
