//! The servers under test and how to run them: streamgate's release
//! binary (and, for a before/after table in one run, another build of it),
//! two nodes of that binary on one `redis-server` (`streamgate-cluster`),
//! the Node and Python Socket.IO peers, LiteLLM's proxy (an HTTP peer), and
//! the raw-WebSocket ceiling (this same executable in `--serve-ceiling`
//! mode).
//!
//! [`Target::start`] installs what a peer needs on first use (`npm ci` in
//! benches/peers/node, venvs under the cargo target dir for Python and
//! LiteLLM), picks free loopback ports, starts the server (its nodes, and
//! what they need, such as Redis) as child processes with their env
//! pointing at the fake upstream, and waits until they accept connections.
//! [`Proc`] reads a child's CPU time and RSS from /proc, which is how every
//! scenario measures cost: a [`Running`]'s cost is the sum over its nodes,
//! plus its helpers' CPU (Redis's), which is also reported apart. Clients
//! spread over the nodes ([`Running::port`]). Dropping a [`Running`] kills
//! its children.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Streamgate,
    /// Two nodes of the same streamgate binary on one `redis-server`
    /// (`LOADGEN_REDIS_SERVER`, else `redis-server` on PATH), clients
    /// alternating between them.
    StreamgateCluster,
    /// Another streamgate build (`LOADGEN_BEFORE_BIN`, run in
    /// `LOADGEN_BEFORE_DIR` when set): the "before" of a before/after.
    StreamgateBefore,
    Node,
    Python,
    /// LiteLLM's proxy (OpenAI-compatible HTTP only), opt-in.
    Litellm,
    Ceiling,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::Streamgate,
        Target::Node,
        Target::Python,
        Target::Ceiling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Streamgate => "streamgate",
            Target::StreamgateCluster => "streamgate-cluster",
            Target::StreamgateBefore => "streamgate-before",
            Target::Node => "node",
            Target::Python => "python",
            Target::Litellm => "litellm",
            Target::Ceiling => "ceiling",
        }
    }

    /// Serves Socket.IO `/ai` (every scenario but the HTTP ones).
    pub fn speaks_socketio(self) -> bool {
        !matches!(self, Target::Litellm)
    }

    /// Serves OpenAI-compatible streaming over HTTP, and the model name to
    /// ask for.
    pub fn http_model(self) -> Option<&'static str> {
        match self {
            Target::Streamgate | Target::StreamgateCluster | Target::StreamgateBefore => {
                Some("ollama/bench")
            }
            Target::Litellm => Some("bench"),
            Target::Node | Target::Python | Target::Ceiling => None,
        }
    }

    /// Answers `ai:reconnect` (streamgate's builds; the peers and the
    /// ceiling have no resume).
    pub fn resumes(self) -> bool {
        matches!(
            self,
            Target::Streamgate | Target::StreamgateCluster | Target::StreamgateBefore
        )
    }
}

/// The `redis-server` the cluster target starts: `LOADGEN_REDIS_SERVER`,
/// else the first `redis-server` on PATH.
pub fn redis_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LOADGEN_REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// A started target: its nodes (one, or two for the cluster) and the
/// processes they need (Redis).
pub struct Running {
    /// One port per node; [`Running::port`] spreads clients over them.
    pub ports: Vec<u16>,
    /// The gateway's processes, one per node: RSS is their sum.
    pub nodes: Vec<Proc>,
    /// Other processes the target needs (`redis-server`), by name: their
    /// CPU counts in the target's cost and is reported apart too.
    pub helpers: Vec<(&'static str, Proc)>,
    /// Every child, in the order started (killed in reverse).
    children: Vec<Child>,
}

/// CPU seconds so far of a [`Running`]: everything, and per helper.
#[derive(Debug, Clone)]
pub struct Cpu {
    pub total: f64,
    pub helpers: Vec<(&'static str, f64)>,
}

impl Cpu {
    /// What was spent since `before`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            total: self.total - before.total,
            helpers: self
                .helpers
                .iter()
                .zip(&before.helpers)
                .map(|((n, a), (_, b))| (*n, a - b))
                .collect(),
        }
    }
}

impl Running {
    fn empty() -> Self {
        Self {
            ports: Vec::new(),
            nodes: Vec::new(),
            helpers: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The port of the node client `i` uses: clients alternate over nodes.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i % self.ports.len()]
    }

    /// CPU seconds of the nodes and helpers together, and of each helper.
    pub fn cpu(&self) -> Cpu {
        let helpers: Vec<(&'static str, f64)> = self
            .helpers
            .iter()
            .map(|(n, p)| (*n, p.cpu_secs()))
            .collect();
        let nodes: f64 = self.nodes.iter().map(Proc::cpu_secs).sum();
        Cpu {
            total: nodes + helpers.iter().map(|(_, c)| c).sum::<f64>(),
            helpers,
        }
    }

    /// The nodes' RSS summed, KiB (helpers not included).
    pub fn rss_kib(&self) -> u64 {
        self.nodes.iter().map(Proc::rss_kib).sum()
    }

    /// Spawn `cmd` as `name`, listening on `port`, and wait until it
    /// accepts connections (or exits, or `startup` passes).
    async fn spawn(
        &mut self,
        name: &str,
        mut cmd: Command,
        port: u16,
        startup: Duration,
    ) -> Result<Proc, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().map_err(|e| format!("start {name}: {e}"))?;
        let proc = Proc::new(child.id());
        self.children.push(child);
        let deadline = tokio::time::Instant::now() + startup;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(proc);
            }
            if let Some(Ok(Some(status))) = self.children.last_mut().map(Child::try_wait) {
                return Err(format!("{name} exited at start: {status}"));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{name} did not listen on {port} within {} s",
                    startup.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Nodes first, then what they depend on.
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Install the peers' dependencies unless already there.
pub fn install(target: Target) -> Result<(), String> {
    match target {
        Target::Node => {
            let dir = repo_root().join("benches/peers/node");
            if !dir.join("node_modules/socket.io").exists() {
                eprintln!("loadgen: npm ci in {}", dir.display());
                run_ok(
                    Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund"])
                        .current_dir(&dir),
                    "npm ci",
                )?;
            }
        }
        Target::Python => pip_venv(&python_venv(), "benches/peers/python/requirements.txt")?,
        Target::Litellm => pip_venv(&litellm_venv(), "benches/peers/litellm/requirements.txt")?,
        Target::StreamgateCluster => {
            redis_server()
                .ok_or("streamgate-cluster needs redis-server on PATH (or LOADGEN_REDIS_SERVER)")?;
        }
        Target::Streamgate | Target::StreamgateBefore | Target::Ceiling => {}
    }
    Ok(())
}

fn python_venv() -> PathBuf {
    target_dir().join("bench-peers/pyvenv")
}

fn litellm_venv() -> PathBuf {
    target_dir().join("bench-peers/litellm-venv")
}

/// A venv at `venv` with the pinned requirements `req` (repo-relative),
/// made again when the file changed.
fn pip_venv(venv: &Path, req: &str) -> Result<(), String> {
    let req = repo_root().join(req);
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&req).map_err(|e| format!("{}: {e}", req.display()))?;
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!("loadgen: creating venv {}", venv.display());
    run_ok(
        Command::new("python3").arg("-m").arg("venv").arg(venv),
        "python3 -m venv",
    )?;
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(&req),
        "pip install",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())
}

/// streamgate's binary `bin` run in `dir`, on `port`, against the upstream.
/// `caps`: the build knows the process-wide caps (`limits.max_*`), which
/// are lifted for the benchmark; an older build (streamgate-before) would
/// refuse the unknown keys.
fn streamgate_cmd(
    bin: std::ffi::OsString,
    dir: PathBuf,
    port: u16,
    upstream_url: &str,
    caps: bool,
) -> Command {
    let mut c = Command::new(bin);
    c.args(["--port", &port.to_string()])
        .current_dir(dir)
        .env("OLLAMA_BASE_URL", upstream_url)
        .env("STREAMGATE_PROVIDERS__OLLAMA__FALLBACK", "[]")
        .env("STREAMGATE_SERVER__HOST", "127.0.0.1")
        // Thousands of clients from one address, far faster
        // than a person: the abuse limits (which the peers do
        // not have) would answer instead of the relay.
        .env("STREAMGATE_LIMITS__EVENTS_PER_MINUTE", "0")
        .env("STREAMGATE_LIMITS__ACKS_PER_MINUTE", "0")
        .env("STREAMGATE_LIMITS__STREAMS_PER_MINUTE", "0")
        .env("STREAMGATE_LIMITS__CONNECTIONS_PER_MINUTE", "0")
        // Like the peers, log nothing per stream.
        .env("RUST_LOG", "warn");
    if caps {
        // ... and the caps sized for one node's real traffic lifted (the
        // idle scenario holds 10,000 clients from one address).
        for key in [
            "MAX_CONNECTIONS_PER_ADDRESS",
            "MAX_CONNECTIONS",
            "MAX_CLIENTS",
            "MAX_LIVE_STREAMS",
            "MAX_REPLAY_BYTES",
        ] {
            c.env(format!("STREAMGATE_LIMITS__{key}"), "0");
        }
    }
    c
}

/// The key LiteLLM's proxy is started with (it refuses to start without
/// one); the HTTP client sends it as its bearer token.
pub const LITELLM_KEY: &str = "sk-5f2b8c1e9a7d4f6b3c0e8a1d7f4b2c9e6a3d0f8b5c2e9a7d4f1b8c5e2a9d6f3b";

/// uvicorn's logging for LiteLLM: warnings only, so that, like the other
/// peers, it logs nothing per request.
const LITELLM_LOGGING: &str = "version: 1
disable_existing_loggers: false
formatters: {plain: {format: '%(levelname)s %(name)s %(message)s'}}
handlers: {err: {class: logging.StreamHandler, formatter: plain, stream: 'ext://sys.stderr'}}
loggers:
  uvicorn: {level: WARNING, handlers: [err], propagate: false}
  uvicorn.error: {level: WARNING, handlers: [err], propagate: false}
  uvicorn.access: {level: WARNING, handlers: [err], propagate: false}
";

/// LiteLLM's proxy with one model, `bench`, on the fake Ollama upstream.
fn litellm_cmd(port: u16, upstream_url: &str) -> Result<Command, String> {
    let dir = std::env::temp_dir();
    let cfg = dir.join(format!("loadgen-litellm-{port}.yaml"));
    let yaml = format!(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: ollama_chat/bench\n      api_base: {upstream_url}\nlitellm_settings:\n  telemetry: false\n  drop_params: true\n"
    );
    let logging = dir.join("loadgen-litellm-logging.yaml");
    for (path, text) in [(&cfg, yaml.as_str()), (&logging, LITELLM_LOGGING)] {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut c = Command::new(litellm_venv().join("bin/litellm"));
    c.arg("--config")
        .arg(&cfg)
        .arg("--log_config")
        .arg(&logging)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1"])
        .env("LITELLM_MASTER_KEY", LITELLM_KEY)
        // No network here: the bundled model-cost map, no telemetry.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env("LITELLM_LOG", "ERROR");
    Ok(c)
}

impl Target {
    /// Start this target against the upstream at `upstream_url`.
    pub async fn start(self, upstream_url: &str) -> Result<Running, String> {
        install(self)?;
        let root = repo_root();
        let mut running = Running::empty();
        // LiteLLM imports for many seconds before it listens.
        let startup = Duration::from_secs(if self == Target::Litellm { 90 } else { 20 });
        // (name, command, port) of each node.
        let mut nodes: Vec<(String, Command, u16)> = Vec::new();
        match self {
            Target::Streamgate => {
                let port = free_port()?;
                let cmd = streamgate_cmd(streamgate_bin(), root.clone(), port, upstream_url, true);
                nodes.push((self.name().into(), cmd, port));
            }
            Target::StreamgateCluster => {
                let redis_bin = redis_server().ok_or("redis-server not found")?;
                let redis_port = free_port()?;
                let mut redis = Command::new(redis_bin);
                redis
                    .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--loglevel", "warning"]);
                let proc = running
                    .spawn("redis-server", redis, redis_port, startup)
                    .await?;
                running.helpers.push(("redis", proc));
                let url = format!("redis://127.0.0.1:{redis_port}/0");
                for id in ["a", "b"] {
                    let port = free_port()?;
                    let mut cmd =
                        streamgate_cmd(streamgate_bin(), root.clone(), port, upstream_url, true);
                    cmd.env("REDIS_URL", &url)
                        .env("STREAMGATE_REDIS__NODE_ID", id);
                    nodes.push((format!("{} node {id}", self.name()), cmd, port));
                }
            }
            Target::StreamgateBefore => {
                let bin = std::env::var_os("LOADGEN_BEFORE_BIN")
                    .ok_or("streamgate-before needs LOADGEN_BEFORE_BIN (a streamgate binary)")?;
                let dir = std::env::var_os("LOADGEN_BEFORE_DIR")
                    .map_or_else(|| root.clone(), PathBuf::from);
                let port = free_port()?;
                let cmd = streamgate_cmd(bin, dir, port, upstream_url, false);
                nodes.push((self.name().into(), cmd, port));
            }
            Target::Litellm => {
                let port = free_port()?;
                nodes.push((self.name().into(), litellm_cmd(port, upstream_url)?, port));
            }
            Target::Node => {
                let mut c = Command::new("node");
                c.arg("server.js")
                    .current_dir(root.join("benches/peers/node"));
                nodes.push((self.name().into(), c, free_port()?));
            }
            Target::Python => {
                let mut c = Command::new(python_venv().join("bin/python"));
                c.arg("server.py")
                    .current_dir(root.join("benches/peers/python"));
                nodes.push((self.name().into(), c, free_port()?));
            }
            Target::Ceiling => {
                let port = free_port()?;
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut c = Command::new(exe);
                c.args([
                    "--serve-ceiling",
                    "--port",
                    &port.to_string(),
                    "--upstream",
                    upstream_url,
                ]);
                nodes.push((self.name().into(), c, port));
            }
        }
        for (name, mut cmd, port) in nodes {
            cmd.env("PORT", port.to_string())
                .env("OLLAMA_BASE_URL", upstream_url);
            let proc = running.spawn(&name, cmd, port, startup).await?;
            running.nodes.push(proc);
            running.ports.push(port);
        }
        // Let it finish starting up (interpreters warm up lazily).
        tokio::time::sleep(Duration::from_millis(300)).await;
        for p in &mut running.nodes {
            p.baseline_rss = p.rss_kib();
        }
        Ok(running)
    }
}

/// The streamgate binary of the `streamgate` and `streamgate-cluster`
/// targets: LOADGEN_STREAMGATE_BIN measures another build (e.g. a
/// branch's); not STREAMGATE_*, which streamgate reads as config.
fn streamgate_bin() -> std::ffi::OsString {
    std::env::var_os("LOADGEN_STREAMGATE_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_streamgate").into())
}

/// A process's cost, read from /proc.
pub struct Proc {
    pub pid: u32,
    pub baseline_rss: u64,
    ticks_per_sec: f64,
}

impl Proc {
    pub fn new(pid: u32) -> Self {
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        Self {
            pid,
            baseline_rss: 0,
            ticks_per_sec: ticks,
        }
    }

    /// User + system CPU seconds so far.
    pub fn cpu_secs(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return 0.0;
        };
        // Fields after the `(comm)`; utime and stime are fields 14 and 15.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return 0.0;
        };
        let f: Vec<&str> = after.split(' ').collect();
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (get(11) + get(12)) / self.ticks_per_sec
    }

    /// Resident set size, KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        read_status_field(Path::new(&format!("/proc/{}/status", self.pid)), "VmRSS:")
    }
}

fn read_status_field(path: &Path, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The soft open-files limit of this process (children inherit it).
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}
