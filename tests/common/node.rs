//! Running Node test files from `cargo test`: the npm packages of a test
//! directory, installed by the test that needs them, so that `cargo test`
//! passes on a fresh clone with no step of its own, and `node --test` with
//! the gateway's address.
//!
//! [`ensure_npm`] runs `npm ci` in a directory whose `node_modules` is
//! missing or older than its `package-lock.json` (npm writes
//! `node_modules/.package-lock.json` at the end of every install, so that
//! file's presence and age tell whether an install finished, and for which
//! lockfile). An exclusive lock on a file in the directory keeps two test
//! processes (cargo runs test binaries one by one, cargo-nextest in
//! parallel) from installing into it at once; the second waits and then
//! finds the packages there. A failing `npm ci` fails the test with npm's
//! own output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Make sure `dir` (a directory with `package.json` and
/// `package-lock.json`) has its locked packages installed.
pub fn ensure_npm(dir: &Path) {
    let lock_path = dir.join("node_modules.install-lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if installed(dir) {
        return;
    }
    let shown = format!("npm ci --prefix {}", dir.display());
    eprintln!(
        "{}: packages missing or stale; running `{shown}`",
        dir.display()
    );
    let out = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{shown}`: {e}. The Node tests need Node.js 20+ and npm on PATH")
        });
    assert!(
        out.status.success(),
        "`{shown}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        installed(dir),
        "`{shown}` succeeded but left no node_modules/.package-lock.json"
    );
}

/// Did an install for the current lockfile finish?
fn installed(dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&dir.join("node_modules/.package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        (Some(done), Some(wanted)) => done >= wanted,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
