//! Running Node test files from `cargo test`: the npm packages of a test
//! directory (installed with `npm ci` when missing, so a clean checkout
//! needs no step of its own) and `node --test` with the gateway's address.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Make sure `dir` has its locked npm packages (`marker`, a package it
/// depends on, is how we tell); runs `npm ci` when they are missing and
/// fails the test, naming the command, when that fails.
pub fn ensure_npm_packages(dir: &Path, marker: &str) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules").join(marker).exists() {
        return;
    }
    let shown = format!("npm ci --prefix {}", dir.display());
    eprintln!(
        "{} is missing: running `{shown}`",
        dir.join("node_modules").display()
    );
    let status = std::process::Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(dir)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `{shown}` (is npm installed? .ci/run installs it): {e}")
        });
    assert!(status.success(), "`{shown}` failed ({status})");
    assert!(
        dir.join("node_modules").join(marker).exists(),
        "`{shown}` ran but {marker} is still missing"
    );
}

/// What `node --test` printed and how it ended.
pub struct NodeRun {
    pub success: bool,
    pub passed: usize,
    pub failed: usize,
    pub output: String,
}

/// Run `node --test` on `files` with `env`, print its report, and count
/// its results (the spec reporter's closing `ℹ pass N` / `ℹ fail N`).
pub async fn node_test(files: &[PathBuf], env: &[(&str, String)]) -> NodeRun {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--test").arg("--test-reporter=spec").args(files);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .expect("node runs (is Node.js installed? .ci/run installs it)");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}");
    let count = |label: &str| {
        output
            .lines()
            .filter_map(|l| l.trim().strip_prefix(label))
            .filter_map(|n| n.trim().parse::<usize>().ok())
            .next_back()
            .unwrap_or(0)
    };
    NodeRun {
        success: out.status.success(),
        passed: count("ℹ pass"),
        failed: count("ℹ fail"),
        output,
    }
}
