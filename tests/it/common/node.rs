//! Runs the real-client scripts: npm-based ones in `tests/js/` and python-socketio ones in
//! `tests/py/` (both installed by the README's test command, scripts/test.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tests_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

/// Runs `node tests/js/<script> <args...>` and returns its stdout; fails the test with the
/// script's output when it exits non-zero or takes longer than `limit`.
pub(crate) fn run_script(script: &str, args: &[&str], limit: Duration) -> String {
    let dir = tests_dir("js");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "tests/js/node_modules is missing: run the README's test command (scripts/test.sh), which runs `npm ci` in tests/js"
    );
    run(Path::new("node"), script, args, &dir, limit)
}

/// Runs `tests/py/<script> <args...>` with the virtualenv's python and returns its stdout;
/// fails like [`run_script`].
pub(crate) fn run_python(script: &str, args: &[&str], limit: Duration) -> String {
    let dir = tests_dir("py");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "tests/py/.venv is missing: run the README's test command (scripts/test.sh), which creates it and installs tests/py/requirements.txt"
    );
    run(&python, script, args, &dir, limit)
}

fn run(program: &Path, script: &str, args: &[&str], dir: &Path, limit: Duration) -> String {
    let mut child = Command::new(program)
        .arg(script)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let in_time = super::wait_child(&mut child, limit).is_some();
    let out = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {script} failed ({}{}):\n{stdout}\n{}",
        program.display(),
        out.status,
        if in_time {
            ""
        } else {
            ", killed: it ran past its limit"
        },
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
