//! The load generator against a real server: the Node socket.io peer in single mode
//! (`benches/peers/node/server.js`), on a port the server picks. A tiny fanout must deliver
//! everything exactly once and report non-zero rates in its JSON.
//!
//! Needs `node` and `npm ci` run once in `benches/peers/node` (the test says so when it is not).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server under test, killed when dropped (also when an assertion fails).
struct ServerUnderTest {
    child: Child,
    url: String,
}

impl ServerUnderTest {
    /// `node server.js --mode single --port 0`; waits for its `ready ... port=N` line.
    fn start_node_single(root: &Path) -> ServerUnderTest {
        let dir = root.join("benches/peers/node");
        assert!(
            dir.join("node_modules/socket.io").is_dir(),
            "benches/peers/node/node_modules is missing: run `npm ci` in benches/peers/node first"
        );
        let mut child = Command::new("node")
            .args(["server.js", "--mode", "single", "--port", "0"])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting `node` (is Node.js installed?)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerUnderTest {
            child,
            url: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the Node peer did not print its ready line within 20 s");
        let port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("port="))
            .unwrap_or_else(|| panic!("no port in the ready line {line:?}"));
        server.url = format!("http://127.0.0.1:{port}");
        server
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the generator with a hard deadline; returns its parsed JSON report.
fn run_bench(args: &[&str], json: &Path, deadline: Duration) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardio-bench"))
        .args(args)
        .arg("--json")
        .arg(json)
        .spawn()
        .expect("starting shardio-bench");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for shardio-bench") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardio-bench ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "shardio-bench failed: {status}");
    let text = std::fs::read_to_string(json).expect("reading the JSON report");
    let _ = std::fs::remove_file(json);
    serde_json::from_str(&text).expect("the JSON report parses")
}

#[test]
fn fanout_against_node_peer_loses_nothing() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let server = ServerUnderTest::start_node_single(&root);
    let json = std::env::temp_dir().join(format!("shardio-bench-test-{}.json", std::process::id()));
    let pid = server.child.id().to_string();
    let r = run_bench(
        &[
            "fanout",
            "--url",
            &server.url,
            "--server-pid",
            &pid,
            "--subscribers",
            "20",
            "--rooms",
            "4",
            "--publishers",
            "2",
            "--duration",
            "2",
            "--drain",
            "5",
            "--threads",
            "1",
        ],
        &json,
        Duration::from_secs(60),
    );
    let num = |path: &str| {
        r.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing from {r:#}"))
    };
    assert_eq!(num("/subscribers_joined"), 20.0, "{r:#}");
    assert_eq!(num("/publishers_connected"), 2.0, "{r:#}");
    assert!(num("/losses/expected") > 0.0, "nothing was expected: {r:#}");
    assert_eq!(num("/losses/received"), num("/losses/expected"), "{r:#}");
    for counter in ["lost", "duplicates", "reordered", "unexpected", "unparsed"] {
        assert_eq!(num(&format!("/losses/{counter}")), 0.0, "{counter}: {r:#}");
    }
    assert_eq!(num("/publishes_sent"), num("/publishes_acked"), "{r:#}");
    assert!(num("/publishes_per_s") > 0.0, "{r:#}");
    assert!(num("/deliveries_per_s") > 0.0, "{r:#}");
    assert!(num("/latency/p99_us") > 0.0, "{r:#}");
    assert!(num("/server/cpu_seconds") >= 0.0, "{r:#}");
}
