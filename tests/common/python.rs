//! The Python the end-to-end tests drive (the official openai SDK),
//! installed on demand in a venv, so that `cargo test` passes on a fresh
//! machine with only the toolchain and Python (and the registry). The npm
//! side is `node.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

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
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r tests/py/requirements.txt",
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    python
}
