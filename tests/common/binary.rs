//! The `streamgate` binary as a child process, configured by its
//! command line and environment only (as a deployer runs it).
//!
//! [`Binary::spawn`] starts it on port 0 of loopback, reads both of its
//! output streams into one log (ANSI colour stripped, each line tagged
//! with the stream it came from) and waits for the line that announces
//! the address. `TEST_STREAMGATE_BIN` names another build to run instead
//! (for instance an older checkout's, to show a test failing there).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    lines: Lines,
}

/// One line the binary printed.
#[derive(Debug, Clone)]
pub struct Line {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The text, ANSI colour codes removed.
    pub text: String,
    /// Whether it carried ANSI colour codes.
    pub coloured: bool,
}

type Lines = Arc<Mutex<Vec<Line>>>;

/// The binary under test: `TEST_STREAMGATE_BIN`, or this build's.
pub fn path() -> std::ffi::OsString {
    std::env::var_os("TEST_STREAMGATE_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_streamgate").into())
}

/// A command for the binary with a clean config environment: loopback,
/// port 0, no JWT key from the caller's environment, and a working
/// directory without a `config/default.toml` (so the built-in defaults
/// apply, whichever build runs).
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(path());
    cmd.args(["--port", "0"])
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("STREAMGATE_SERVER__HOST", "127.0.0.1")
        .env("RUST_LOG", "info")
        .env_remove("STREAMGATE_JWT_SECRET")
        .env_remove("STREAMGATE_JWT_PUBLIC_KEY")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Binary {
    /// Start it and wait (20 s at most) for its address.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = command(args, env).spawn().expect("the binary starts");
        let lines = Lines::default();
        collect(
            child.stdout.take().expect("stdout"),
            "stdout",
            lines.clone(),
        );
        collect(
            child.stderr.take().expect("stderr"),
            "stderr",
            lines.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let addr = lines.lock().expect("log").iter().find_map(announced);
            if let Some(addr) = addr {
                return Self { child, addr, lines };
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no listening line in:\n{}", render(&lines));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().expect("log").clone()
    }

    /// Everything printed so far, as `stdout| …` / `stderr| …` lines.
    pub fn log(&self) -> String {
        render(&self.lines)
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn render(lines: &Lines) -> String {
    let lines = lines.lock().expect("log");
    lines
        .iter()
        .map(|l| format!("{}| {}\n", l.stream, l.text))
        .collect()
}

/// The address in the "listening" line, in text (`addr=…`) or JSON
/// (`"addr":"…"`) form.
fn announced(line: &Line) -> Option<SocketAddr> {
    if !line.text.contains("listening") {
        return None;
    }
    let rest = line.text.split("addr").nth(1)?;
    let rest = rest.trim_start_matches(['=', '"', ':', ' ']);
    rest.split(['"', ' ', ',']).next()?.parse().ok()
}

/// Read `stream` line by line into `lines` until it closes.
fn collect(stream: impl AsyncRead + Unpin + Send + 'static, tag: &'static str, lines: Lines) {
    tokio::spawn(async move {
        let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").expect("regex");
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().expect("log").push(Line {
                stream: tag,
                coloured: ansi.is_match(&line),
                text: ansi.replace_all(&line, "").into_owned(),
            });
        }
    });
}
