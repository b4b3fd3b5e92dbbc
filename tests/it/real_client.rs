//! The official npm socket.io-client and the python-socketio client against shardio.

use crate::common;

use std::time::Duration;

use common::node::{run_python, run_script};
use common::TestServer;

/// The conformance apps with a heartbeat of 2 s + 2 s instead of the suites' 300 + 200 ms:
/// dozens of polling clients in one Node event loop, on a shared 2-core machine, cannot all
/// answer a ping within 200 ms, and the clients themselves close when a ping is 500 ms late.
/// The suites' timings over polling are tested with plain HTTP in tests/it/polling.rs.
fn conformance_for_many_polling_clients() -> TestServer {
    TestServer::conformance_with(|e| {
        e.ping_interval = Duration::from_secs(2);
        e.ping_timeout = Duration::from_secs(2);
    })
}

#[test]
fn socketio_client_over_websocket_on_four_shards() {
    let server = TestServer::conformance();
    let out = run_script(
        "websocket_client.mjs",
        &[&server.url(), "16"],
        Duration::from_secs(30),
    );
    assert_eq!(out.trim(), "ok");
    assert!(
        server.shards_used() >= 2,
        "16 clients should have landed on several shards"
    );
}

fn gateway_clients(clients: usize, transports: &str) {
    let config = <shardio::Config as clap::Parser>::parse_from(["shardio"]);
    let server = TestServer::start(4, shardio::gateway::endpoints(&config, None));
    let out = run_script(
        "gateway_client.mjs",
        &[&server.url(), &clients.to_string(), transports],
        Duration::from_secs(30),
    );
    assert_eq!(out.trim(), "ok");
    assert!(
        server.shards_used() >= 2,
        "{clients} clients should have landed on several shards"
    );
}

#[test]
fn socketio_clients_join_publish_and_receive_through_the_gateway() {
    gateway_clients(12, "websocket");
}

#[test]
fn default_socketio_clients_poll_upgrade_join_and_publish_through_the_gateway() {
    gateway_clients(50, "polling,websocket");
}

#[test]
fn polling_only_socketio_clients_join_and_publish_through_the_gateway() {
    gateway_clients(20, "polling");
}

/// Runs `clients` npm clients in `mode` (see tests/js/transports_client.mjs) on 4 shards and
/// checks the hand-overs they caused. The npm client sends each polling request (and its
/// upgrade) on a new connection (no keep-alive agent), which lands on any shard: without the
/// hand-over to the owning shard these clients would get "Session ID unknown". After a session's
/// opening request, about three requests in four land on another shard, and each client makes
/// dozens: none at all would mean the test ran on one shard and proves nothing.
fn polling_clients(clients: usize, mode: &str) {
    let server = conformance_for_many_polling_clients();
    let count = clients.to_string();
    let out = run_script(
        "transports_client.mjs",
        &[&server.url(), &count, mode],
        Duration::from_secs(45),
    );
    assert_eq!(out.trim(), "ok");
    server.assert_handoffs_arrived(&format!("{clients} clients ({mode})"));
}

#[test]
fn socketio_clients_with_default_options_poll_then_upgrade_on_four_shards() {
    polling_clients(50, "default");
}

#[test]
fn socketio_clients_on_polling_only_on_four_shards() {
    polling_clients(20, "polling");
}

#[test]
fn python_socketio_client_with_default_transports() {
    let server = TestServer::conformance();
    let out = run_python("client.py", &[&server.url()], Duration::from_secs(30));
    assert_eq!(out.trim(), "ok");
}
