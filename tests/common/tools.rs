//! The official clients the end-to-end tests drive, installed on demand,
//! so that `cargo test` passes on a fresh machine with only the toolchain
//! (and network access to the registries): npm packages from a test
//! folder's lockfile, and a Python venv for the openai SDK.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `npm ci` in `dir` unless its `node_modules` is there already.
pub fn ensure_npm(dir: &Path) {
    if dir.join("node_modules").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
        .arg(dir)
        .status()
        .expect("npm runs (install Node.js and npm)");
    assert!(status.success(), "`npm ci --prefix {}` failed", dir.display());
}

/// A venv under the target dir with tests/py/requirements.txt installed;
/// returns its python. Reinstalls when the requirements changed.
pub fn python_venv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/py/requirements.txt");
    let venv = root.join("target/py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/py/requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let run = |cmd: &mut Command, what: &str| {
        let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(status.success(), "{what} failed");
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv target/py-venv",
    );
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install -r tests/py/requirements.txt",
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    python
}
