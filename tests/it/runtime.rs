//! The sharded runtime: connections land on every shard, shutdown closes clients with 1001,
//! bind errors fail fast, and the binary logs, pins and stops on SIGTERM.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestServer, WsClient};
use shardio::Server;
use shardio::ServerError;

#[test]
fn connections_land_on_every_shard() {
    let server = TestServer::conformance();
    let clients: Vec<_> = (0..64)
        .map(|_| WsClient::socketio(server.addr, None))
        .collect();
    server.wait_until("64 open sessions", |m| m.sessions_open() == 64);
    let per_shard: Vec<u64> = server
        .metrics
        .shards()
        .iter()
        .map(|s| s.sessions_open())
        .collect();
    assert_eq!(per_shard.len(), 4);
    assert!(
        per_shard.iter().all(|n| *n > 0),
        "SO_REUSEPORT should spread 64 connections over 4 shards: {per_shard:?}"
    );
    drop(clients);
    server.wait_until("sessions to close", |m| m.sessions_open() == 0);
}

#[test]
fn session_ids_name_their_shard() {
    let server = TestServer::conformance();
    for _ in 0..16 {
        let (_c, open) = WsClient::open(server.addr, "/engine.io/");
        let sid = shardio::engineio::Sid::parse(open["sid"].as_str().unwrap()).unwrap();
        assert!(sid.shard() < 4);
        assert!(server.metrics.shards()[sid.shard()].sessions_open() >= 1);
    }
}

#[test]
fn shutdown_closes_every_client_with_1001() {
    let server = TestServer::conformance();
    let mut clients: Vec<_> = (0..12)
        .map(|_| WsClient::socketio(server.addr, None).0)
        .collect();
    server.wait_until("12 sessions", |m| m.sessions_open() == 12);
    let stopper = std::thread::spawn(move || server.shutdown());
    for c in &mut clients {
        assert_eq!(c.expect_closed(), Some(1001));
    }
    drop(clients);
    let result = stopper.join().expect("shutdown thread");
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn a_taken_port_fails_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut runtime = common::runtime(2);
    runtime.listen = taken.local_addr().unwrap();
    match Server::bind(&runtime) {
        Err(ServerError::Bind { addr, .. }) => assert_eq!(addr, runtime.listen),
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("bind on a taken port must fail"),
    }
}

#[test]
fn binary_exits_nonzero_when_it_cannot_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shardio"))
        .args([
            "--listen",
            &taken.local_addr().unwrap().to_string(),
            "--shards",
            "2",
        ])
        .output()
        .expect("run shardio");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]
fn binary_logs_startup_pins_more_shards_than_cores_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardio"))
        .args(["--listen", "127.0.0.1:0", "--shards", "4"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardio");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let startup = lines.next().expect("a startup line").expect("utf-8 log");
    assert!(startup.contains("shardio listening"), "{startup}");
    assert!(
        startup.contains("shards=4") && startup.contains("pinning=\"on\""),
        "{startup}"
    );
    let address = startup
        .split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
        .expect("address in the startup line")
        .parse()
        .expect("a socket address");
    let (mut c, _) = WsClient::socketio(address, None);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(c.expect_closed(), Some(1001));
    drop(c);
    let status = common::wait_child(&mut child, Duration::from_secs(10))
        .expect("shardio exits after SIGTERM");
    assert!(status.success(), "shardio exited with {status}");
}
