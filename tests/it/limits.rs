//! The bounds on HTTP requests and on new connections (README, "Limits and failure
//! behaviour"): request heads (bytes, header lines, time) on the polling and the upgrade path,
//! the body deadline, request smuggling's framing, and the process's connection and handshake
//! limits. Each is counted in the shard metrics.

use crate::common;

use std::io::Write;
use std::time::Duration;

use common::polling::{HttpConn, PollingClient};
use common::{http_request, TestServer, WsClient};
use shardio::config::LimitsConfig;
use shardio::engineio::EngineConfig;
use shardio::metrics::{Metrics, ShardMetrics};

/// The conformance apps on `shards` shards, with a heartbeat slow enough that polling tests
/// need not answer pings, and the limits `tune` sets.
fn server(shards: usize, tune: impl FnOnce(&mut LimitsConfig)) -> TestServer {
    let mut limits = LimitsConfig::default();
    tune(&mut limits);
    let mut endpoints = shardio::conformance::endpoints();
    for ep in &mut endpoints {
        slow_heartbeat(&mut ep.engine);
    }
    TestServer::start_with(shards, endpoints, None, limits)
}

fn slow_heartbeat(engine: &mut EngineConfig) {
    engine.ping_interval = Duration::from_secs(20);
    engine.ping_timeout = Duration::from_secs(10);
}

/// A counter summed over the shards.
fn total(m: &Metrics, counter: fn(&ShardMetrics) -> u64) -> u64 {
    m.shards().iter().map(counter).sum()
}

#[test]
fn a_body_that_never_ends_gets_408_at_the_deadline_and_a_slow_megabyte_gets_through() {
    let server = server(2, |l| l.body_timeout = 3_000);
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");

    // A whole `max_payload` (1 MB) message, in 20 parts 40 ms apart: slow, but done well
    // within the deadline. The pauses are the subject: a body that takes its time.
    let message = format!("4{}", "a".repeat(999_999));
    let mut conn = c.raw_post(&format!("Content-Length: {}\r\n\r\n", message.len()));
    for part in message.as_bytes().chunks(50_000) {
        std::thread::sleep(Duration::from_millis(40));
        conn.send(part);
    }
    let r = conn.response();
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(
        c.get().body.len(),
        1_000_000,
        "the echo of the whole message"
    );

    // A chunked body that never ends: one byte every 100 ms of a 100,000-byte chunk.
    let mut conn = c.raw_post("Transfer-Encoding: chunked\r\n\r\n186A0\r\n");
    let mut writer = conn.writer();
    let trickle = std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(100));
            if writer.write_all(b"a").is_err() {
                return true;
            }
        }
        false
    });
    let r = conn.response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        conn.rest_until_closed().is_empty(),
        "nothing follows the 408"
    );
    assert!(
        trickle.join().expect("trickle thread"),
        "the server stopped reading"
    );
    server.wait_until("the body timeout to be counted", |m| {
        total(m, ShardMetrics::body_timeouts) == 1
    });
    // Its packets cannot be taken without the rest: the session ended.
    server.wait_until("the session to close", |m| m.sessions_open() == 0);
}

#[test]
fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let server = server(1, |_| {});
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // Request smuggling's shape (RFC 9112 6.1): a proxy that frames by Content-Length sees
    // one request here; a server that frames by chunks sees a second one, the GET.
    let target = c.target();
    let smuggled = format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\n4ab\r\n0\r\n\r\nGET {target} HTTP/1.1\r\nHost: t\r\n\r\n"
    );
    let mut conn = HttpConn::connect(server.addr);
    conn.send(smuggled.as_bytes());
    let r = conn.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        conn.rest_until_closed().is_empty(),
        "the pipelined request is not answered"
    );
    // On a path no endpoint serves, the same.
    let (status, head, _) = http_request(
        server.addr,
        "POST /elsewhere HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status, 400, "{head}");
    assert_eq!(total(&server.metrics, ShardMetrics::requests_malformed), 2);
    // The session was not touched.
    c.send("4still here");
    assert_eq!(c.recv(), "4still here");
}

/// A request head with exactly `lines` header lines: `base` (which ends with `\r\n`), then
/// `X-n` lines to make up the count, then `Connection: close`.
fn head_with_lines(base: &str, lines: usize) -> String {
    let given = base.matches("\r\n").count() - 1;
    let mut head = base.to_owned();
    for i in 0..lines - given - 1 {
        head.push_str(&format!("X-{i}: v\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

const POLLING_HANDSHAKE: &str = "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\n";
const UPGRADE_HANDSHAKE: &str = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\n\
    Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[test]
fn request_heads_are_bounded_in_lines_bytes_and_time_on_both_paths() {
    let server = server(2, |l| l.head_timeout = 1_000);
    // 100 header lines (the default limit) are fine, 101 are not, on either path. The
    // upgrade's own `Connection: Upgrade` wins over the added `Connection: close`.
    for (base, ok) in [(POLLING_HANDSHAKE, 200), (UPGRADE_HANDSHAKE, 101)] {
        let (status, _, _) = http_request(server.addr, &head_with_lines(base, 100));
        assert_eq!(status, ok, "100 header lines");
        let (status, _, _) = http_request(server.addr, &head_with_lines(base, 101));
        assert_eq!(status, 431, "101 header lines");
        // Over 16 KiB in few lines.
        let big = format!("{base}X-Big: {}\r\n", "b".repeat(16 * 1024));
        let (status, _, _) = http_request(server.addr, &head_with_lines(&big, 10));
        assert_eq!(status, 431, "a 16 KiB header");
    }
    // A head that does not arrive in full within the head timeout: 408, then closed.
    for base in [POLLING_HANDSHAKE, UPGRADE_HANDSHAKE] {
        let mut conn = HttpConn::connect(server.addr);
        conn.send(base.as_bytes());
        let r = conn.response();
        assert_eq!(r.status, 408);
        assert!(conn.rest_until_closed().is_empty());
    }
    let m = &server.metrics;
    assert_eq!(total(m, ShardMetrics::heads_too_large), 4);
    assert_eq!(total(m, ShardMetrics::head_timeouts), 2);
}

#[test]
fn handshakes_over_max_connections_get_503_and_existing_clients_are_untouched() {
    let server = server(2, |l| l.max_connections = 3);
    let mut clients: Vec<WsClient> = (0..2)
        .map(|_| WsClient::open(server.addr, "/engine.io/").0)
        .collect();
    let (polling, _) = PollingClient::open(server.addr, "/engine.io/");
    // Full: a WebSocket handshake and a polling one are refused, at once.
    let refused = WsClient::connect(server.addr, "/engine.io/?EIO=4&transport=websocket");
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        Err(other) => panic!("expected a 503, got {other}"),
        Ok(_) => panic!("expected a 503, got a WebSocket"),
    }
    let (status, _, _) = http_request(
        server.addr,
        &format!("{POLLING_HANDSHAKE}Connection: close\r\n\r\n"),
    );
    assert_eq!(status, 503);
    // The clients already connected go on.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_text(&format!("4hello {i}"));
        assert_eq!(c.recv_text(), format!("4hello {i}"));
    }
    polling.send("4polling");
    assert_eq!(polling.recv(), "4polling");
    // One leaves: there is room for one more.
    drop(clients.pop());
    server.wait_until("a session to close", |m| m.sessions_open() == 2);
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    c.send_text("4again");
    assert_eq!(c.recv_text(), "4again");
    assert_eq!(
        total(&server.metrics, ShardMetrics::over_max_connections),
        2
    );
}

#[test]
fn handshakes_over_the_rate_get_503_until_the_rate_allows_again() {
    let server = server(2, |l| {
        l.max_connections = 0;
        l.max_handshakes_per_second = 2;
    });
    let handshake = || {
        http_request(
            server.addr,
            &format!("{POLLING_HANDSHAKE}Connection: close\r\n\r\n"),
        )
        .0
    };
    // A burst of 2 is allowed, then one every 500 ms: handshakes in a row soon hit the limit.
    let statuses: Vec<u16> = (0..20).map(|_| handshake()).collect();
    let first_refusal = statuses
        .iter()
        .position(|&s| s == 503)
        .unwrap_or_else(|| panic!("no handshake refused: {statuses:?}"));
    assert!(first_refusal >= 2, "the burst is allowed: {statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(total(&server.metrics, ShardMetrics::over_handshake_rate) >= 1);
    // Within a second, a handshake is allowed again.
    common::wait_until("a handshake to be allowed again", || handshake() == 200);
}
