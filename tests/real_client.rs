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
