//! The load generator against a real server: shardio's gateway on 4 shards, on a port the
//! server picks. Tiny runs must deliver everything exactly once and report non-zero rates in
//! their JSON. (Speed is measured by `benches/compare.sh`, never asserted here.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::TestServer;

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

fn gateway() -> TestServer {
    let config = <shardio::Config as clap::Parser>::parse_from(["shardio"]);
    TestServer::start(4, shardio::apps::default_endpoints(&config))
}

fn json_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "shardio-bench-test-{name}-{}.json",
        std::process::id()
    ))
}

#[test]
fn fanout_against_shardio_loses_nothing() {
    let server = gateway();
    let json = json_path("fanout");
    let pid = std::process::id().to_string();
    let r = run_bench(
        &[
            "fanout",
            "--url",
            &server.url(),
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

#[test]
fn connect_and_idle_against_shardio_report_rates_and_memory() {
    let server = gateway();
    let pid = std::process::id().to_string();
    let json = json_path("connect");
    let r = run_bench(
        &[
            "connect",
            "--url",
            &server.url(),
            "--server-pid",
            &pid,
            "--count",
            "200",
            "--threads",
            "1",
        ],
        &json,
        Duration::from_secs(60),
    );
    let num = |r: &serde_json::Value, path: &str| {
        r.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing from {r:#}"))
    };
    assert!(num(&r, "/handshakes_per_s") > 0.0, "{r:#}");
    server.wait_until("the generator's connections to close", |m| {
        m.sessions_open() == 0
    });
    let json = json_path("idle");
    let r = run_bench(
        &[
            "idle",
            "--url",
            &server.url(),
            "--server-pid",
            &pid,
            "--count",
            "200",
            "--settle",
            "1",
            "--duration",
            "1",
            "--threads",
            "1",
        ],
        &json,
        Duration::from_secs(60),
    );
    assert_eq!(num(&r, "/connected"), 200.0, "{r:#}");
}
