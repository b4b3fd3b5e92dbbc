//! Runs the real-client scripts: npm-based ones in `tests/js/` and python-socketio ones in
//! `tests/py/` (both installed by the README's test command, scripts/test.sh).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::Reaped;

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

/// A `tests/js/` script the test talks to while it runs: it reads the script's stdout line by
/// line, and ends it by closing its stdin. Killed if the test ends first.
pub(crate) struct LiveScript {
    child: Reaped,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl LiveScript {
    /// Starts `node tests/js/<script> <args...>`.
    pub(crate) fn start(script: &str, args: &[&str]) -> LiveScript {
        let dir = tests_dir("js");
        assert!(
            dir.join("node_modules/socket.io-client").exists(),
            "tests/js/node_modules is missing: run the README's test command (scripts/test.sh)"
        );
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {script}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LiveScript {
            stdin: child.stdin.take(),
            child: Reaped(child),
            lines,
        }
    }

    /// Reads lines until one equals `want`; fails the test on a line starting with any of
    /// `bad`, or when `want` does not come within `limit`.
    pub(crate) fn expect_line(&mut self, want: &str, bad: &[&str], limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(line) => assert!(
                    !bad.iter().any(|b| line.starts_with(b)),
                    "the script said {line:?} while the test waited for {want:?}"
                ),
                Err(_) => panic!("the script did not say {want:?} within {limit:?}"),
            }
        }
    }

    /// Closes the script's stdin and waits for it to exit 0.
    pub(crate) fn finish(mut self, limit: Duration) {
        drop(self.stdin.take());
        let status = super::wait_child(&mut self.child.0, limit).expect("the script exits");
        assert!(status.success(), "the script exited with {status}");
    }
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
