//! Connection state recovery across machines in `--redis-mode streams`: sessions kept in Redis
//! as `@socket.io/redis-streams-adapter` 0.3.1 keeps them, so that a client cut on one server
//! comes back recovered on another, shardio and Node mixed (tests/js/recovery_moves.mjs, with
//! a real `redis-server` per test). Each mixed run has its Node-only twin: the same script
//! against two Node servers, which shows the script's checks are what Node does.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use rmpv::Value;
use shardio::metrics::{Metrics, RecoveryEvent, RestoreResult};

use crate::common::node::run_script;
use crate::common::redis::RedisServer;
use crate::common::TestServer;
use crate::redis_streams::streams_gateway_with;

const LIMIT: Duration = Duration::from_secs(45);

/// The window of every server, shardio's and Node's, in milliseconds.
const WINDOW_MS: u64 = 30_000;

/// Receivers of a `move` run, and how long each stays away at each cut.
const RECEIVERS: usize = 8;
const AWAY_MS: u64 = 1500;

/// A gateway of 2 shards in streams mode on `redis`, recovery on with `window_ms`.
fn streams_gateway(redis: &RedisServer, window_ms: u64) -> TestServer {
    streams_gateway_with(redis, &["--recovery-window", &window_ms.to_string()])
}

/// Machines A and B: [`streams_gateway`]s on `redis`.
fn two_gateways(redis: &RedisServer, window_ms: u64) -> (TestServer, TestServer) {
    (
        streams_gateway(redis, window_ms),
        streams_gateway(redis, window_ms),
    )
}

/// Clients that came back recovered on `server`, summed over its shards (and as many restores
/// counted recovered by its bridge).
fn recovered(server: &TestServer) -> u64 {
    let metrics: &Metrics = &server.metrics;
    let shards = metrics
        .shards()
        .iter()
        .map(|s| s.recovery_events(RecoveryEvent::Recovered))
        .sum();
    let bridge = metrics.bridge().restores(RestoreResult::Recovered);
    assert_eq!(
        bridge, shards,
        "the bridge's restores and the shards' recoveries"
    );
    shards
}

/// Runs recovery_moves.mjs in `mode` with the receivers starting on `x`, moved to `y`, the
/// publisher on `p` (each a shardio URL or `node:<name>`); fails the test unless it says "ok".
fn run(redis: &RedisServer, mode: &str, [x, y, p]: [&str; 3], away_ms: u64, window_ms: u64) {
    let (receivers, away, window) = (
        RECEIVERS.to_string(),
        away_ms.to_string(),
        window_ms.to_string(),
    );
    let args = [&redis.url(), mode, x, y, p, &receivers, &away, &window];
    let out = run_script("recovery_moves.mjs", &args, LIMIT);
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
}

/// [`run`] of the `move` mode: cut on `x`, back on `y`, cut again, back on `x`.
fn moves(redis: &RedisServer, servers: [&str; 3]) {
    run(redis, "move", servers, AWAY_MS, WINDOW_MS);
}

#[test]
fn a_client_moved_between_two_node_servers_recovers_on_each_the_reference() {
    let redis = RedisServer::start();
    moves(&redis, ["node:x", "node:y", "node:p"]);
}

#[test]
fn a_client_moved_between_two_shardio_machines_recovers_on_each() {
    let redis = RedisServer::start();
    let (a, b) = two_gateways(&redis, WINDOW_MS);
    // The publisher on A, where the receivers start.
    moves(&redis, [&a.url(), &b.url(), &a.url()]);
    let n = RECEIVERS as u64;
    assert_eq!(recovered(&b), n, "each receiver recovered on B");
    assert_eq!(recovered(&a), n, "and back on A");
    assert_eq!(
        redis.command_calls("xrange"),
        0,
        "what they missed came from the bridges' recent packets, not from reading the stream"
    );
}

#[test]
fn a_client_moved_between_shardio_machines_recovers_when_what_it_missed_is_read_from_redis() {
    // --recovery-process-bytes 1: the bridges keep no recent packets, so every restore checks
    // the client's offset and reads what it missed from the stream, as after a long absence.
    let redis = RedisServer::start();
    let window = WINDOW_MS.to_string();
    let flags = [
        "--recovery-window",
        &window,
        "--recovery-process-bytes",
        "1",
    ];
    let (a, b) = (
        streams_gateway_with(&redis, &flags),
        streams_gateway_with(&redis, &flags),
    );
    moves(&redis, [&a.url(), &b.url(), &a.url()]);
    let n = RECEIVERS as u64;
    assert_eq!((recovered(&b), recovered(&a)), (n, n));
    assert!(
        redis.command_calls("xrange") >= 2 * n,
        "an offset check per restore at least"
    );
}

#[test]
fn a_client_moved_from_node_to_shardio_and_back_recovers_on_each() {
    let redis = RedisServer::start();
    let a = streams_gateway(&redis, WINDOW_MS);
    // The publisher on shardio, where the receivers come to.
    moves(&redis, ["node:x", &a.url(), &a.url()]);
    assert_eq!(recovered(&a), RECEIVERS as u64, "sessions Node stored");
}

#[test]
fn a_client_moved_from_shardio_to_node_and_back_recovers_on_each() {
    let redis = RedisServer::start();
    let (a, b) = two_gateways(&redis, WINDOW_MS);
    // The publisher on a third server, shardio B.
    moves(&redis, [&a.url(), "node:y", &b.url()]);
    assert_eq!(recovered(&a), RECEIVERS as u64, "sessions Node stored");
    assert_eq!(recovered(&b), 0, "no client came to B");
}

/// The window of the `fresh` runs, and how long their receivers stay away: past it.
const SHORT_WINDOW_MS: u64 = 1000;
const PAST_WINDOW_MS: u64 = 2500;

#[test]
fn after_the_window_a_client_moved_between_node_servers_is_fresh_the_reference() {
    let redis = RedisServer::start();
    let servers = ["node:x", "node:y", "node:x"];
    run(&redis, "fresh", servers, PAST_WINDOW_MS, SHORT_WINDOW_MS);
}

#[test]
fn after_the_window_a_client_moved_between_shardio_machines_is_fresh() {
    let redis = RedisServer::start();
    let (a, b) = two_gateways(&redis, SHORT_WINDOW_MS);
    let servers = [a.url(), b.url(), a.url()];
    run(
        &redis,
        "fresh",
        servers.each_ref().map(String::as_str),
        PAST_WINDOW_MS,
        SHORT_WINDOW_MS,
    );
    assert_eq!(recovered(&a) + recovered(&b), 0);
    let gone = b.metrics.bridge().restores(RestoreResult::NoSession);
    assert_eq!(gone, RECEIVERS as u64, "each restore on B found no session");
}

/// Parks a client of `server` (cut in room "r", not coming back) with the script; returns
/// the `(sid, pid)` it printed once the server had stored its session.
fn park(redis: &RedisServer, server: &str) -> (String, String) {
    let args = [&redis.url(), "park", server, server, server];
    let out = run_script("recovery_moves.mjs", &args, LIMIT);
    let line = out
        .lines()
        .find(|l| l.starts_with("sid="))
        .unwrap_or_else(|| panic!("no sid=<sid> pid=<pid> in {out:?}"));
    let field = |name: &str| {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_owned()
    };
    (field("sid="), field("pid="))
}

/// Checks what is stored at `sio:session:<pid>` as the streams adapter reads it: base64 of a
/// msgpack map of exactly sid, pid, rooms (the socket's own and "r") and data (`{}`: nothing
/// set), expiring within `window_ms`.
fn assert_stored_session(redis: &RedisServer, (sid, pid): (String, String), window_ms: u64) {
    let mut con = redis.connection();
    let key = format!("sio:session:{pid}");
    let (stored, ttl): (Option<String>, i64) = redis::pipe()
        .get(&key)
        .pttl(&key)
        .query(&mut con)
        .expect("GET and PTTL");
    let stored = stored.unwrap_or_else(|| panic!("{key} is gone"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&stored)
        .unwrap_or_else(|e| panic!("{key} is not base64 ({e}): {stored:?}"));
    let session = rmpv::decode::read_value(&mut bytes.as_slice())
        .unwrap_or_else(|e| panic!("{key} is not msgpack ({e}): {bytes:?}"));
    let Value::Map(fields) = &session else {
        panic!("{key} is not a map: {session}");
    };
    let keys: BTreeSet<&str> = fields.iter().filter_map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), fields.len(), "string keys only: {session}");
    assert_eq!(
        keys,
        BTreeSet::from(["sid", "pid", "rooms", "data"]),
        "{session}"
    );
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
            .expect("the key is there")
    };
    assert_eq!(get("sid").as_str(), Some(sid.as_str()), "{session}");
    assert_eq!(get("pid").as_str(), Some(pid.as_str()), "{session}");
    let rooms: Option<BTreeSet<&str>> = get("rooms")
        .as_array()
        .map(|rooms| rooms.iter().filter_map(Value::as_str).collect());
    assert_eq!(
        rooms,
        Some(BTreeSet::from([sid.as_str(), "r"])),
        "{session}"
    );
    assert_eq!(get("data"), &Value::Map(Vec::new()), "{session}");
    let window = i64::try_from(window_ms).expect("a small window");
    assert!(
        0 < ttl && ttl <= window,
        "{key} expires in {ttl} ms: it should within the window ({window} ms)"
    );
}

#[test]
fn the_node_streams_adapter_stores_a_dropped_session_the_reference() {
    let redis = RedisServer::start();
    let parked = park(&redis, "node:x");
    assert_stored_session(&redis, parked, WINDOW_MS);
}

#[test]
fn shardio_stores_a_dropped_session_as_the_streams_adapter_does() {
    let redis = RedisServer::start();
    let a = streams_gateway(&redis, WINDOW_MS);
    let parked = park(&redis, &a.url());
    assert_stored_session(&redis, parked, WINDOW_MS);
}
