//! The servers under test and how to run them: streamgate's release
//! binary, the Node and Python peers, and the raw-WebSocket ceiling (this
//! same executable in `--serve-ceiling` mode).
//!
//! [`Target::start`] installs what a peer needs on first use (`npm ci` in
//! benches/peers/node, a venv under the cargo target dir for Python), picks
//! a free loopback port, starts the server as a child process with its env
//! pointing at the fake upstream, and waits until it accepts connections.
//! [`Proc`] reads the child's CPU time and RSS from /proc, which is how
//! every scenario measures cost; dropping a [`Running`] kills the child.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Streamgate,
    Node,
    Python,
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
            Target::Node => "node",
            Target::Python => "python",
            Target::Ceiling => "ceiling",
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

pub struct Running {
    pub port: u16,
    pub proc: Proc,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        Target::Python => {
            let venv = python_venv();
            let req = repo_root().join("benches/peers/python/requirements.txt");
            let stamp = venv.join("installed-requirements.txt");
            let wanted =
                std::fs::read_to_string(&req).map_err(|e| format!("{}: {e}", req.display()))?;
            if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
                eprintln!("loadgen: creating venv {}", venv.display());
                run_ok(
                    Command::new("python3").arg("-m").arg("venv").arg(&venv),
                    "python3 -m venv",
                )?;
                run_ok(
                    Command::new(venv.join("bin/pip"))
                        .args(["install", "-q", "-r"])
                        .arg(&req),
                    "pip install",
                )?;
                std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
            }
        }
        Target::Streamgate | Target::Ceiling => {}
    }
    Ok(())
}

fn python_venv() -> PathBuf {
    target_dir().join("bench-peers/pyvenv")
}

impl Target {
    /// Start this target against the upstream at `upstream_url`.
    pub async fn start(self, upstream_url: &str) -> Result<Running, String> {
        install(self)?;
        let port = free_port()?;
        let root = repo_root();
        let mut cmd = match self {
            Target::Streamgate => {
                // LOADGEN_STREAMGATE_BIN measures another build (e.g. a branch's);
                // not STREAMGATE_*, which streamgate reads as config.
                let bin = std::env::var_os("LOADGEN_STREAMGATE_BIN")
                    .unwrap_or_else(|| env!("CARGO_BIN_EXE_streamgate").into());
                let mut c = Command::new(bin);
                c.args(["--port", &port.to_string()])
                    .current_dir(&root)
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
                    // ... and the caps sized for one node's real traffic
                    // (the idle scenario holds 10,000 clients from one
                    // address).
                    .env("STREAMGATE_LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "0")
                    .env("STREAMGATE_LIMITS__MAX_CONNECTIONS", "0")
                    .env("STREAMGATE_LIMITS__MAX_CLIENTS", "0")
                    .env("STREAMGATE_LIMITS__MAX_LIVE_STREAMS", "0")
                    .env("STREAMGATE_LIMITS__MAX_REPLAY_BYTES", "0")
                    // Like the peers, log nothing per stream.
                    .env("RUST_LOG", "warn");
                c
            }
            Target::Node => {
                let mut c = Command::new("node");
                c.arg("server.js")
                    .current_dir(root.join("benches/peers/node"));
                c
            }
            Target::Python => {
                let mut c = Command::new(python_venv().join("bin/python"));
                c.arg("server.py")
                    .current_dir(root.join("benches/peers/python"));
                c
            }
            Target::Ceiling => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut c = Command::new(exe);
                c.args([
                    "--serve-ceiling",
                    "--port",
                    &port.to_string(),
                    "--upstream",
                    upstream_url,
                ]);
                c
            }
        };
        cmd.env("PORT", port.to_string())
            .env("OLLAMA_BASE_URL", upstream_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.name()))?;
        let proc = Proc::new(child.id());
        let mut running = Running { port, proc, child };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(format!("{} exited at start: {status}", self.name()));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {port} within 20 s",
                    self.name()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let it finish starting up (interpreters warm up lazily).
        tokio::time::sleep(Duration::from_millis(300)).await;
        running.proc.baseline_rss = running.proc.rss_kib();
        Ok(running)
    }
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
