//! Connection state recovery (`--recovery-window`) with the npm socket.io-client against the
//! gateway: a transport cut abruptly while messages flow to the client's room, and the client
//! back on the same shard or on another one (tests/js/recovery_client.mjs).

use std::time::Duration;

use serde_json::{json, Value};
use shardio::engineio::EngineConfig;
use shardio::metrics::{Metrics, RecoveryEvent};
use shardio::socketio::{SocketIo, SocketIoConfig};
use shardio::{Config, Endpoint};

use crate::common::node::run_script;
use crate::common::redis::RedisServer;
use crate::common::{TestServer, WsClient};

const LIMIT: Duration = Duration::from_secs(45);

/// Events of `event`'s kind, summed over the shards.
fn recovery(metrics: &Metrics, event: RecoveryEvent) -> u64 {
    metrics
        .shards()
        .iter()
        .map(|s| s.recovery_events(event))
        .sum()
}

/// Runs recovery_client.mjs in `mode` with `receivers` against `server`; returns its output.
fn run(server: &TestServer, mode: &str, receivers: usize, delay_ms: u64) -> String {
    run_with_publisher_on(server, server, mode, receivers, delay_ms)
}

/// [`run`], the publisher on `publisher` (another server sharing Redis, or the same).
fn run_with_publisher_on(
    server: &TestServer,
    publisher: &TestServer,
    mode: &str,
    receivers: usize,
    delay_ms: u64,
) -> String {
    let receivers = receivers.to_string();
    let delay = delay_ms.to_string();
    let out = run_script(
        "recovery_client.mjs",
        &[&server.url(), mode, &receivers, &delay, &publisher.url()],
        LIMIT,
    );
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    out
}

/// `(same, cross)` from the `recover` mode's report.
fn shards_of_return(out: &str) -> (usize, usize) {
    let line = out
        .lines()
        .find(|l| l.starts_with("same="))
        .unwrap_or_else(|| panic!("no report in {out:?}"));
    let mut counts = line
        .split(' ')
        .map(|kv| kv.split_once('=').and_then(|(_, v)| v.parse().ok()));
    let same = counts.next().flatten().expect("same=<n>");
    let cross = counts.next().flatten().expect("cross=<n>");
    (same, cross)
}

#[test]
fn a_client_cut_for_two_seconds_comes_back_recovered_on_the_same_shard() {
    let server = TestServer::gateway(1, &["--recovery-window", "30000"]);
    let out = run(&server, "recover", 4, 2000);
    assert_eq!(shards_of_return(&out), (4, 0), "one shard: {out}");
    assert_eq!(
        recovery(&server.metrics, RecoveryEvent::Kept),
        8,
        "two cuts each"
    );
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 8);
}

#[test]
fn clients_cut_for_two_seconds_come_back_recovered_on_other_shards() {
    let server = TestServer::gateway(4, &["--recovery-window", "30000"]);
    // 16 clients that come back through the kernel's choice of 4 shards: the chance that none
    // lands on another shard than its session's is 4^-16. Each is cut twice: the second time,
    // those that moved are kept by the shard they moved to, not the one their pid names.
    let out = run(&server, "recover", 16, 2000);
    let (same, cross) = shards_of_return(&out);
    assert_eq!(same + cross, 16);
    assert!(cross > 0, "no client came back on another shard: {out}");
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 32);
}

#[test]
fn a_client_alone_in_its_room_on_its_shard_gets_what_was_published_while_it_was_away() {
    // Interest routing sends a broadcast only to the shards that hold its room: the kept
    // session must hold its rooms on its shard, or the messages published while the client is
    // away never reach the shard that keeps it. 8 receivers, each alone in its room on the
    // shard the publisher is not on, cut twice: the chance that none of the 16 returns lands
    // on the same shard, or none on the other, is 2^-16.
    let server = TestServer::gateway(2, &["--recovery-window", "30000"]);
    let out = run(&server, "alone", 8, 1500);
    let (same, cross) = shards_of_return(&out);
    assert_eq!(same + cross, 16, "{out}");
    assert!(same > 0 && cross > 0, "returns to both shards: {out}");
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 16);
}

/// The `alone` run with the publisher on machine B and the receivers on A (2 shards), through
/// Redis with `--redis-subscribe` `subscribe`.
fn alone_across_machines(subscribe: &str) {
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = [
        "--recovery-window",
        "30000",
        "--redis",
        &url,
        "--redis-subscribe",
        subscribe,
    ];
    let a = TestServer::gateway(2, &flags);
    let b = TestServer::gateway(1, &["--redis", &url]);
    for server in [&a, &b] {
        server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
    }
    let out = run_with_publisher_on(&a, &b, "alone", 8, 1500);
    let (same, cross) = shards_of_return(&out);
    assert_eq!(same + cross, 16, "{out}");
    assert!(same > 0 && cross > 0, "returns to both shards: {out}");
    assert_eq!(recovery(&a.metrics, RecoveryEvent::Recovered), 16);
}

#[test]
fn a_client_alone_in_its_room_on_its_machine_gets_what_another_machine_published_meanwhile() {
    // The bridge routes a broadcast from Redis to the shards that hold its room: the shard
    // that keeps the session must be among them.
    alone_across_machines("pattern");
}

#[test]
fn with_per_room_subscriptions_a_kept_session_keeps_its_room_subscribed() {
    // --redis-subscribe rooms: the machine SUBSCRIBEs only rooms held here; a room whose only
    // member dropped is held by its kept session, so what B publishes meanwhile still comes.
    alone_across_machines("rooms");
}

#[test]
fn after_the_window_a_client_gets_a_fresh_session() {
    let server = TestServer::gateway(4, &["--recovery-window", "1000"]);
    run(&server, "fresh", 4, 2500);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 0);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Kept), 4);
    server.wait_until("the kept sessions to expire", |m| {
        recovery(m, RecoveryEvent::Expired) == 4
    });
}

/// Runs 4 receivers cut for 2 s with `flag` set to `bytes`; checks that none was recovered and
/// returns the evictions counted.
fn evictions_with(flag: &str, bytes: &str) -> u64 {
    let server = TestServer::gateway(4, &["--recovery-window", "30000", flag, bytes]);
    run(&server, "fresh", 4, 2000);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 0);
    recovery(&server.metrics, RecoveryEvent::Evicted)
}

#[test]
fn a_session_that_missed_more_than_its_bound_gets_a_fresh_session() {
    // About 2 s of messages at 100 a second, some 180 bytes each, is far over 4 KB.
    assert_eq!(evictions_with("--recovery-session-bytes", "4000"), 4);
}

#[test]
fn the_process_bound_evicts_the_oldest_packets_and_sessions() {
    // 40 KB for the process, 10 KB a shard: a shard holds some 35 messages, a third of a
    // second; each session is evicted, or its offset's packet is.
    assert!(evictions_with("--recovery-process-bytes", "40000") >= 4);
}

#[test]
fn a_clean_disconnect_is_not_recoverable() {
    let server = TestServer::gateway(4, &["--recovery-window", "30000"]);
    run(&server, "clean", 4, 2000);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Kept), 0);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 0);
}

#[test]
fn a_forged_or_unknown_pid_gets_a_normal_new_session() {
    let server = TestServer::gateway(4, &["--recovery-window", "30000"]);
    run(&server, "forged", 0, 2000);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 0);
}

#[test]
fn broadcasts_from_another_machine_are_recovered_too() {
    // The publisher is on machine B; the receivers on A get B's broadcasts through Redis, with
    // offsets A's bridge issues, and get those they missed back.
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestServer::gateway(4, &["--recovery-window", "30000", "--redis", &url]);
    let b = TestServer::gateway(2, &["--redis", &url]);
    for server in [&a, &b] {
        server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
    }
    let out = run_with_publisher_on(&a, &b, "recover", 8, 2000);
    let (same, cross) = shards_of_return(&out);
    assert_eq!(same + cross, 8);
    assert_eq!(recovery(&a.metrics, RecoveryEvent::Recovered), 16);
}

#[test]
fn a_client_back_before_the_server_noticed_its_loss_takes_its_socket_over() {
    let server = TestServer::gateway(4, &["--recovery-window", "30000"]);
    run(&server, "takeover", 1, 2000);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 1);
}

#[test]
fn a_client_cut_before_its_first_message_gets_everything_since_it_connected() {
    // socket.io-client sends its pid without an offset then; Node would start it afresh.
    let server = TestServer::gateway(4, &["--recovery-window", "30000"]);
    run(&server, "silent", 8, 2000);
    assert_eq!(recovery(&server.metrics, RecoveryEvent::Recovered), 8);
}

#[test]
fn a_kept_session_keeps_its_room_subscribed_until_it_expires() {
    // --redis-subscribe rooms, one shard: a socket alone in room "solo" drops; its kept session
    // holds the room (the machine stays SUBSCRIBEd) until the window ends, then lets it go
    // with nothing else happening on the server.
    let redis = RedisServer::start();
    let url = redis.url();
    let flags = [
        "--recovery-window",
        "1000",
        "--redis",
        &url,
        "--redis-subscribe",
        "rooms",
    ];
    let server = TestServer::gateway(1, &flags);
    server.wait_until("the bridge", |m| m.bridge().connected() == 1);
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    connect(&mut c, "");
    // The socket's own room is subscribed too, a moment after the CONNECT reply: the baseline
    // is taken once it is (sampled earlier, it raced with that subscription).
    server.wait_until("the socket's own room to be subscribed", |m| {
        m.bridge().room_channels() == 1
    });
    c.send_text(r#"421["join",["solo"]]"#);
    assert!(c.recv_text().starts_with("431"), "the join's ack");
    let held = server.metrics.bridge().room_channels();
    assert_eq!(held, 2, "the room is subscribed once joined");
    drop(c); // the connection ends without a close frame: a transport close
    server.wait_until("the session to be kept", |m| {
        recovery(m, RecoveryEvent::Kept) == 1
    });
    // The subject: nothing is unsubscribed while the session is kept (its window is 1 s).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.metrics.bridge().room_channels(), held);
    server.wait_until("the session to expire and its rooms to go", |m| {
        recovery(m, RecoveryEvent::Expired) == 1 && m.bridge().room_channels() == 0
    });
}

/// An app with recovery whose sockets tell, on connect, whether they were recovered, and their
/// rooms and data; `setup` joins room "r" and sets the data.
fn state_app() -> Vec<Endpoint> {
    let mut io = SocketIo::new(SocketIoConfig {
        recovery_window: Some(Duration::from_secs(30)),
        ..SocketIoConfig::default()
    });
    io.namespace("/")
        .on_connect(|socket| {
            let rooms = socket.rooms();
            let state =
                json!({"recovered": socket.recovered(), "rooms": rooms, "data": socket.data()});
            let _ = socket.emit("state", state);
        })
        .on("setup", |socket, _data, ack| {
            socket.join("r");
            socket.set_data(json!({"n": 7}));
            if let Some(ack) = ack {
                let _ = ack.send(json!("ok"));
            }
        });
    let config = Config::default();
    vec![Endpoint::socketio(
        "/socket.io/",
        EngineConfig::from_config(&config),
        io,
    )]
}

/// Sends a CONNECT with `auth` and returns the reply's `{sid, pid}`.
fn connect(c: &mut WsClient, auth: &str) -> Value {
    c.send_text(&format!("40{auth}"));
    let reply = c.recv_text();
    let body = reply.strip_prefix("40").expect("a CONNECT reply");
    serde_json::from_str(body).expect("its JSON")
}

/// The next event's arguments, as a JSON array (`["name", args..., offset]`).
fn event(c: &mut WsClient) -> Vec<Value> {
    let text = c.recv_text();
    let body = text.strip_prefix("42").expect("an EVENT");
    serde_json::from_str(body).expect("its JSON")
}

#[test]
fn a_recovered_socket_has_its_id_rooms_and_data_and_knows_it() {
    let server = TestServer::start(1, state_app());
    let (mut first, _) = WsClient::open(server.addr, "/socket.io/");
    let reply = connect(&mut first, "");
    let (sid, pid) = (reply["sid"].clone(), reply["pid"].clone());
    assert!(pid.is_string(), "the CONNECT reply carries a pid: {reply}");
    let state = event(&mut first);
    assert_eq!(state[1]["recovered"], false);
    let offset = state.last().cloned().expect("the offset, last");
    assert!(
        offset.is_string(),
        "a socket's own emit carries its offset: {state:?}"
    );
    first.send_text(r#"421["setup"]"#);
    assert_eq!(first.recv_text(), r#"431["ok"]"#);
    drop(first); // the connection ends without a close frame: a transport close
    server.wait_until("the session to be kept", |m| {
        recovery(m, RecoveryEvent::Kept) == 1
    });

    let (mut back, _) = WsClient::open(server.addr, "/socket.io/");
    let auth = json!({"pid": pid, "offset": offset}).to_string();
    let reply = connect(&mut back, &auth);
    assert_eq!((&reply["sid"], &reply["pid"]), (&sid, &pid));
    let state = event(&mut back);
    assert_eq!(state[1]["recovered"], true);
    assert_eq!(state[1]["data"], json!({"n": 7}));
    assert_eq!(state[1]["rooms"].as_array().map(Vec::len), Some(2));
    assert!(state[1]["rooms"]
        .as_array()
        .is_some_and(|r| r.contains(&json!("r")) && r.contains(&sid)));
}
