//! Runs the npm-based client scripts of `tests/js/` (installed by the README's test command).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Runs `node tests/js/<script> <args...>` and returns its stdout; fails the test with the
/// script's output when it exits non-zero or takes longer than `limit`.
pub fn run_script(script: &str, args: &[&str], limit: Duration) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "tests/js/node_modules is missing: run the README's test command (scripts/test.sh), which runs `npm ci` in tests/js"
    );
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait for node").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("node output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "node {script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
