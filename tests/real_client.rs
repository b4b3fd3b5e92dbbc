//! The official npm socket.io-client against shardio.

mod common;

use std::time::Duration;

use common::node::run_script;
use common::TestServer;

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
        server
            .metrics
            .shards()
            .iter()
            .filter(|s| s.sessions_total() > 0)
            .count()
            >= 2,
        "16 clients should have landed on several shards"
    );
}

#[test]
fn socketio_clients_join_publish_and_receive_through_the_gateway() {
    let config = <shardio::Config as clap::Parser>::parse_from(["shardio"]);
    let server = TestServer::start(4, shardio::apps::default_endpoints(&config));
    let out = run_script(
        "gateway_client.mjs",
        &[&server.url(), "12"],
        Duration::from_secs(30),
    );
    assert_eq!(out.trim(), "ok");
    assert!(
        server
            .metrics
            .shards()
            .iter()
            .filter(|s| s.sessions_total() > 0)
            .count()
            >= 2,
        "12 clients should have landed on several shards"
    );
}
