//! The load generator against a real server: shardio's gateway on 4 shards, on a port the
//! server picks. Tiny runs must deliver everything exactly once and report non-zero rates in
//! their JSON. (Speed is measured by `benches/compare.sh`, never asserted here.)

use crate::common;

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
    let status = common::wait_child(&mut child, deadline)
        .unwrap_or_else(|| panic!("shardio-bench ran past {deadline:?}"));
    assert!(status.success(), "shardio-bench failed: {status}");
    let text = std::fs::read_to_string(json).expect("reading the JSON report");
    let _ = std::fs::remove_file(json);
    serde_json::from_str(&text).expect("the JSON report parses")
}

/// A number of the JSON report, by JSON pointer (`/losses/lost`).
fn num(r: &serde_json::Value, path: &str) -> f64 {
    r.pointer(path)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing from {r:#}"))
}

fn gateway() -> TestServer {
    let config = <shardio::Config as clap::Parser>::parse_from(["shardio"]);
    TestServer::start(4, shardio::gateway::endpoints(&config, None))
}

/// Runs `scenario` with `args` against `server`, with this process as the `--server-pid` (the
/// test server runs in it) and one generator thread.
fn run_against(server: &TestServer, scenario: &str, args: &[&str]) -> serde_json::Value {
    let url = server.url();
    let pid = std::process::id().to_string();
    let mut all = vec![
        scenario,
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--threads",
        "1",
    ];
    all.extend_from_slice(args);
    run_bench(&all, &json_path(scenario), Duration::from_secs(60))
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
    let started = Instant::now();
    let r = run_against(
        &server,
        "fanout",
        &[
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
        ],
    );
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(num(&r, "/subscribers_joined"), 20.0, "{r:#}");
    assert_eq!(num(&r, "/publishers_connected"), 2.0, "{r:#}");
    assert!(
        num(&r, "/losses/expected") > 0.0,
        "nothing was expected: {r:#}"
    );
    assert_eq!(
        num(&r, "/losses/received"),
        num(&r, "/losses/expected"),
        "{r:#}"
    );
    for counter in ["lost", "duplicates", "reordered", "unexpected", "unparsed"] {
        assert_eq!(
            num(&r, &format!("/losses/{counter}")),
            0.0,
            "{counter}: {r:#}"
        );
    }
    assert_eq!(
        num(&r, "/publishes_sent"),
        num(&r, "/publishes_acked"),
        "{r:#}"
    );
    assert!(num(&r, "/publishes_per_s") > 0.0, "{r:#}");
    assert!(num(&r, "/deliveries_per_s") > 0.0, "{r:#}");
    assert!(num(&r, "/latency/p99_us") > 0.0, "{r:#}");
    // The server is this process (--server-pid; tests running beside this one count too):
    // between the generator's two samples it served the whole fanout, so it used CPU time, and
    // at most what the cores it may run on could give in the time the generator ran (the
    // samples are taken inside that time).
    assert_eq!(
        r["server"]["pids"],
        serde_json::json!([std::process::id()]),
        "{r:#}"
    );
    let cpu = num(&r, "/server/cpu_seconds");
    let cores = core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1) as f64;
    assert!(
        cpu > 0.0 && cpu <= wall * cores,
        "server CPU {cpu} s outside (0, {wall:.2} s x {cores} cores]: {r:#}"
    );
    assert!(num(&r, "/server/rss_after_bytes") > 0.0, "{r:#}");
}

#[test]
fn connect_and_idle_against_shardio_report_rates_and_memory() {
    let server = gateway();
    let r = run_against(&server, "connect", &["--count", "200"]);
    assert!(num(&r, "/handshakes_per_s") > 0.0, "{r:#}");
    server.wait_until("the generator's connections to close", |m| {
        m.sessions_open() == 0
    });
    let r = run_against(
        &server,
        "idle",
        &["--count", "200", "--settle", "1", "--duration", "1"],
    );
    assert_eq!(num(&r, "/connected"), 200.0, "{r:#}");
}

/// `connect` over TLS (`--tls-insecure`, the test's self-signed certificate): every handshake
/// is a TLS one; an https:// URL without the flag is refused.
#[test]
fn connect_over_tls_with_tls_insecure() {
    let certs = common::tls::CertFiles::new();
    let args = certs.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::gateway(2, &args);
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let json = json_path("connect-tls");
    let r = run_bench(
        &[
            "connect",
            "--url",
            &url,
            "--tls-insecure",
            "--count",
            "100",
            "--threads",
            "1",
        ],
        &json,
        Duration::from_secs(60),
    );
    assert_eq!(num(&r, "/connected"), 100.0, "{r:#}");
    let shards = server.metrics.shards();
    let handshakes: u64 = shards.iter().map(|s| s.tls_handshakes()).sum();
    assert_eq!(handshakes, 100);

    let status = Command::new(env!("CARGO_BIN_EXE_shardio-bench"))
        .args(["connect", "--url", &url, "--count", "1"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("shardio-bench runs");
    assert!(
        !status.success(),
        "https:// without --tls-insecure is refused"
    );
}

#[test]
fn floor_reads_every_byte_written() {
    let json = json_path("floor");
    let core = core_affinity::get_core_ids()
        .and_then(|ids| ids.first().map(|c| c.id))
        .unwrap_or(0)
        .to_string();
    let r = run_bench(
        &[
            "floor",
            "--count",
            "50",
            "--rate",
            "20",
            "--duration",
            "1",
            "--writer-cpu",
            &core,
        ],
        &json,
        Duration::from_secs(60),
    );
    assert_eq!(num(&r, "/passes"), 20.0, "{r:#}");
    assert_eq!(num(&r, "/bytes_expected"), 20.0 * 50.0 * 80.0, "{r:#}");
    assert_eq!(
        num(&r, "/bytes_received"),
        num(&r, "/bytes_expected"),
        "{r:#}"
    );
    assert!(num(&r, "/pass/p99_us") > 0.0, "{r:#}");
}

#[test]
fn api_emits_reach_every_subscriber_and_are_counted() {
    const KEY: &str = "bench-api-key-0123456789";
    let server = TestServer::gateway(4, &["--api-key", KEY]);
    let r = run_against(
        &server,
        "api",
        &[
            "--api-key",
            KEY,
            "--batch",
            "3",
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
        ],
    );
    assert_eq!(r["scenario"], "api", "{r:#}");
    assert_eq!(num(&r, "/subscribers_joined"), 20.0, "{r:#}");
    assert!(num(&r, "/publishes_sent") > 0.0, "{r:#}");
    assert_eq!(
        num(&r, "/publishes_acked"),
        num(&r, "/publishes_sent"),
        "{r:#}"
    );
    assert_eq!(num(&r, "/publish_errors"), 0.0, "{r:#}");
    assert!(num(&r, "/losses/expected") > 0.0, "{r:#}");
    assert_eq!(
        num(&r, "/losses/received"),
        num(&r, "/losses/expected"),
        "{r:#}"
    );
    assert_eq!(num(&r, "/losses/lost"), 0.0, "{r:#}");
    // A wrong key: the first request is refused (and the connection closed: its body was not
    // read), nothing is acknowledged, and the run accounts for every emit.
    let refused = run_against(
        &server,
        "api",
        &[
            "--api-key",
            "not-the-key-000000000",
            "--subscribers",
            "2",
            "--rooms",
            "1",
            "--publishers",
            "1",
            "--duration",
            "1",
            "--drain",
            "1",
        ],
    );
    assert_eq!(num(&refused, "/publishes_acked"), 0.0, "{refused:#}");
    assert!(num(&refused, "/publish_errors") >= 1.0, "{refused:#}");
    assert_eq!(
        num(&refused, "/publish_errors") + num(&refused, "/publishes_unacked"),
        num(&refused, "/publishes_sent"),
        "{refused:#}"
    );
}

#[test]
fn cluster_sim_spreads_rooms_over_bridged_servers_and_loses_nothing() {
    let redis = common::redis::RedisServer::start();
    let url = redis.url();
    let config = <shardio::Config as clap::Parser>::parse_from([
        "shardio",
        "--redis",
        &url,
        "--redis-subscribe",
        "rooms",
    ]);
    let servers: Vec<TestServer> = (0..3)
        .map(|_| {
            let s = TestServer::start_with_redis(
                2,
                shardio::gateway::endpoints(&config, None),
                Some(config.redis.clone()),
            );
            s.wait_until("the bridge", |m| m.bridge().connected() == 1);
            s
        })
        .collect();
    let urls: Vec<String> = servers.iter().map(TestServer::url).collect();
    let urls = urls.join(",");
    // 6 rooms, each with one subscriber on 2 of the 3 servers; 3 publishers, one per server.
    let args = [
        "cluster-sim",
        "--urls",
        &urls,
        "--copies",
        "2",
        "--rooms",
        "6",
        "--subscribers",
        "12",
        "--publishers",
        "3",
        "--rate",
        "50",
        "--duration",
        "1",
        "--drain",
        "5",
        "--threads",
        "1",
    ];
    let r = run_bench(&args, &json_path("cluster-sim"), Duration::from_secs(60));
    assert_eq!(r["scenario"], "cluster-sim", "{r:#}");
    assert_eq!(num(&r, "/subscribers_joined"), 12.0, "{r:#}");
    assert!(num(&r, "/losses/expected") > 0.0, "{r:#}");
    assert_eq!(
        num(&r, "/losses/received"),
        num(&r, "/losses/expected"),
        "{r:#}"
    );
    for s in &servers {
        // Each server holds 4 of the 6 rooms: some of its deliveries came through Redis. The
        // generator has closed its connections: every room channel is given up.
        assert!(s.metrics.bridge().received() > 0);
        s.wait_until("no room channel", |m| m.bridge().room_channels() == 0);
    }
}
