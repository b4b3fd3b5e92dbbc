//! Engine.IO v4 HTTP long-polling against a real 4-shard server, with plain HTTP requests
//! (docs/PROTOCOL.md §1.4-§1.10): the polling semantics one by one, the upgrade to WebSocket, and
//! requests that land on shards other than the session's owner.

use crate::common;

use std::time::Duration;

use common::polling::{request, HttpConn, PollingClient, Response};
use common::{assert_conformance_open_packet, Frame, TestServer, WsClient};
use shardio::engineio::EngineConfig;

/// A heartbeat slow enough that tests which do not answer pings are not cut short.
fn slow_heartbeat(engine: &mut EngineConfig) {
    engine.ping_interval = Duration::from_secs(20);
    engine.ping_timeout = Duration::from_secs(10);
}

fn server() -> TestServer {
    TestServer::conformance_with(slow_heartbeat)
}

/// Waits until the session of `client` is gone (a GET would be held while it lives).
fn wait_gone(server: &TestServer, client: &PollingClient) {
    let owner = client.owner();
    server.wait_until("the session to close", |m| {
        m.shards()[owner].sessions_open() == 0
    });
}

fn assert_unknown_sid(r: &Response) {
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
}

#[test]
fn handshake_answers_the_open_packet_with_nodes_headers() {
    let server = TestServer::conformance();
    let r = request(
        server.addr,
        "GET",
        "/engine.io/?EIO=4&transport=polling&t=abc",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let open: serde_json::Value =
        serde_json::from_str(r.text().strip_prefix('0').unwrap()).unwrap();
    assert_conformance_open_packet(&open, &["websocket"]);
}

#[test]
fn posts_answer_ok_and_gets_return_the_packets_joined() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let r = c.post("4hello\x1e4world\x1ebAQIDBA==\x1e4€ 😀");
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-length"), Some("2"));
    let r = c.get();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The echo app sends each back: text as is, binary as `b`+base64.
    assert_eq!(r.text(), "4hello\x1e4world\x1ebAQIDBA==\x1e4€ 😀");
}

#[test]
fn a_get_is_held_until_packets_are_queued() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let mut pending = c.held_get();
    // A fixed window on purpose: that no answer comes while nothing is queued is the check.
    assert!(
        pending
            .response_within(Duration::from_millis(200))
            .is_none(),
        "the GET must wait for packets"
    );
    c.send("4late");
    let r = pending.response();
    assert_eq!((r.status, r.text()), (200, "4late"));
}

#[test]
fn an_overlapping_get_closes_the_session() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let mut first = c.held_get();
    let second = c.get();
    assert_eq!(second.status, 400);
    let first = first.response();
    assert_eq!((first.status, first.text()), (200, "1"));
    wait_gone(&server, &c);
    assert_unknown_sid(&c.get());
}

#[test]
fn an_aborted_get_closes_the_session() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let pending = c.held_get();
    drop(pending);
    wait_gone(&server, &c);
    assert_unknown_sid(&c.get());
}

#[test]
fn an_invalid_packet_closes_the_session() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // Node still answers the POST `ok`; the session is gone for the next request at once.
    c.send("abc");
    assert_unknown_sid(&c.get());
}

#[test]
fn a_binary_post_is_refused_and_closes_the_session() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let r = request(
        server.addr,
        "POST",
        &c.target(),
        &["Content-Type: application/octet-stream"],
        &[1, 2, 3],
    );
    assert_eq!(r.status, 400);
    wait_gone(&server, &c);
    assert_unknown_sid(&c.get());
}

#[test]
fn bodies_over_max_payload_get_413() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // Refused on the Content-Length, before the body is sent.
    let mut conn = c.raw_post("Content-Length: 1000001\r\n\r\n");
    let r = conn.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    // A chunked body is refused as soon as a chunk would pass the limit.
    let mut conn = c.raw_post(&format!(
        "Transfer-Encoding: chunked\r\n\r\n3E8\r\n4{}",
        "a".repeat(999)
    ));
    // 1000 bytes so far; a chunk of 1000001 more passes the limit.
    conn.send(format!("\r\nF4241\r\n{}", "a".repeat(1000)).as_bytes());
    assert_eq!(conn.response().status, 413);
    // A body of exactly maxPayload is fine, and the session lives on.
    let big = format!("4{}", "x".repeat(1_000_000 - 1));
    c.send(&big);
    assert_eq!(c.recv(), big);
}

#[test]
fn a_close_packet_ends_the_session_and_the_pending_get_returns_noop() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let mut pending = c.held_get();
    c.send("1");
    let r = pending.response();
    assert_eq!((r.status, r.text()), (200, "6"));
    wait_gone(&server, &c);
    assert_unknown_sid(&c.get());
    assert_unknown_sid(&c.post("4x"));
}

#[test]
fn a_sid_is_known_only_on_the_endpoint_that_opened_it() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let elsewhere = PollingClient {
        path: "/socket.io/".into(),
        ..c
    };
    assert_unknown_sid(&elsewhere.get());
}

#[test]
fn other_methods_on_a_session_get_500() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = request(server.addr, method, &c.target(), &[], b"");
        assert_eq!(r.status, 500, "{method}");
    }
    // The session lives on.
    c.send("4still");
    assert_eq!(c.recv(), "4still");
}

#[test]
fn an_overlapping_post_closes_the_session() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // A POST whose body is still on its way (not answered: a fixed window, since that no
    // answer comes is the check)...
    let mut slow = c.raw_post("Content-Length: 6\r\n\r\n4a");
    assert!(slow.response_within(Duration::from_millis(100)).is_none());
    // ...and a second one.
    assert_eq!(c.post("4b").status, 400);
    wait_gone(&server, &c);
}

#[test]
fn heartbeat_over_polling_with_the_suites_timings() {
    let server = TestServer::conformance();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    for round in 0..3 {
        assert_eq!(c.recv(), "2", "ping {round}");
        c.send("3");
    }
    assert_eq!(c.recv(), "2");
}

#[test]
fn an_idle_session_is_gone_after_ping_interval_plus_timeout() {
    let server = TestServer::conformance();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // Fixed on purpose, exactly the suite's wait: the server's timer is what is tested, and its
    // deadline counts from the session's opening, whatever the order in which the shard runs
    // the timer and the request.
    std::thread::sleep(Duration::from_millis(300 + 200));
    assert_unknown_sid(&c.get());
    // The request finds the overdue session closed at once; the count drops when the
    // session's driver has run, which may be just after the answer.
    wait_gone(&server, &c);
}

#[test]
fn chunked_post_bodies_are_decoded() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let mut conn = c.raw_post("Transfer-Encoding: chunked\r\n\r\n3\r\n4ab\r\n");
    // The body comes in two parts, the second after a fixed pause (nothing on the server shows
    // that it read the first part), in which a partial body gets no answer.
    assert!(conn.response_within(Duration::from_millis(50)).is_none());
    conn.send(b"B;ext=1\r\nc\x1ebAQIDBA==\r\n0\r\nX-Trailer: yes\r\n\r\n");
    let r = conn.response();
    assert_eq!((r.status, r.text()), (200, "ok"));
    assert_eq!(c.recv(), "4abc\x1ebAQIDBA==");
    // Broken chunk framing: 400, and the connection is closed.
    let mut conn = c.raw_post("Transfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(conn.response().status, 400);
    assert!(conn.is_closed_by_server());
}

#[test]
fn keep_alive_carries_several_requests_pipelined_or_not() {
    let server = server();
    let mut conn = HttpConn::connect(server.addr);
    conn.request("GET", "/engine.io/?EIO=4&transport=polling", &[], b"");
    let open = conn.response();
    let json: serde_json::Value =
        serde_json::from_str(open.text().strip_prefix('0').unwrap()).unwrap();
    let target = format!(
        "/engine.io/?EIO=4&transport=polling&sid={}",
        json["sid"].as_str().unwrap()
    );
    for i in 0..5 {
        conn.request("POST", &target, &[], format!("4m{i}").as_bytes());
        assert_eq!(conn.response().text(), "ok");
        conn.request("GET", &target, &[], b"");
        assert_eq!(conn.response().text(), format!("4m{i}"));
    }
    // Two requests in one write: answered in order.
    let mut both =
        format!("POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n4pp").into_bytes();
    both.extend_from_slice(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    conn.send(&both);
    assert_eq!(conn.response().text(), "ok");
    assert_eq!(conn.response().text(), "4pp");
    // Errors keep the connection too, when no body is left unread.
    conn.request(
        "GET",
        "/engine.io/?EIO=4&transport=polling&sid=nope",
        &[],
        b"",
    );
    assert_unknown_sid(&conn.response());
    conn.request("POST", &target, &["Connection: close"], b"4bye");
    let last = conn.response();
    assert_eq!(last.text(), "ok");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(conn.is_closed_by_server());
}

#[test]
fn a_session_works_whichever_shard_its_requests_land_on() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    for i in 0..100 {
        // Every request on a fresh connection: SO_REUSEPORT picks any of the 4 shards.
        c.send(&format!("4round {i}"));
        assert_eq!(c.recv(), format!("4round {i}"));
    }
    let owner = c.owner();
    // A sender counts its hand-over just after the bus took it, so the owner may already
    // have answered: let the counters settle.
    server.wait_until("every hand-over to reach the owner", |m| {
        m.shards()[owner].handoffs_received() == m.handoffs()
    });
    let shards = server.metrics.shards();
    assert!(
        server.metrics.handoffs() > 0,
        "no request was handed over: the test proves nothing"
    );
    assert_eq!(
        shards[owner].handoffs_sent(),
        0,
        "the owner keeps its own requests"
    );
    assert!(
        shards.iter().filter(|s| s.handoffs_sent() > 0).count() >= 2,
        "200 requests should have landed on several non-owner shards"
    );
}

/// A candidate WebSocket upgrading the session of `c`.
fn upgrade_request(c: &PollingClient) -> WsClient {
    let target = format!("{}?EIO=4&transport=websocket&sid={}", c.path, c.sid);
    WsClient::connect(c.addr, &target).expect("upgrade request accepted")
}

/// The probe of §1.7 on a candidate WebSocket.
fn probe(ws: &mut WsClient) {
    ws.send_text("2probe");
    assert_eq!(ws.recv_text(), "3probe");
}

/// Opens polling sessions until a WebSocket upgrade request for one lands on a shard that
/// does not own it (so it is handed over); returns the session and its candidate WebSocket.
fn upgrade_on_another_shard(server: &TestServer) -> (PollingClient, WsClient) {
    for _ in 0..50 {
        let (c, _) = PollingClient::open(server.addr, "/engine.io/");
        let before = server.metrics.handoffs();
        let ws = upgrade_request(&c);
        if server.metrics.handoffs() > before {
            return (c, ws);
        }
        // Landed on the owner: drop this candidate (the session stays on polling), try again.
    }
    panic!("50 upgrade requests all landed on the owning shard");
}

#[test]
fn upgrade_to_websocket_from_another_shard_follows_the_probe_sequence() {
    let server = server();
    let (c, mut ws) = upgrade_on_another_shard(&server);
    ws.auto_pong = false;
    probe(&mut ws);
    // The GET issued after the probe is ended with a noop so the client can pause polling.
    let r = c.get();
    assert_eq!((r.status, r.text()), (200, "6"));
    ws.send_text("5");
    ws.send_text("4hello");
    assert_eq!(ws.recv_text(), "4hello");
    ws.send_binary(&[1, 2, 3]);
    assert_eq!(ws.recv_binary(), vec![1, 2, 3]);
    // Polling on an upgraded session is a transport mismatch.
    for r in [c.get(), c.post("4x")] {
        assert_eq!(
            (r.status, r.text()),
            (400, r#"{"code":3,"message":"Bad request"}"#)
        );
    }
    // A second WebSocket for the same sid is accepted and closed at once, as Node does
    // (defects.rs has the details); the first goes on.
    let target = format!("/engine.io/?EIO=4&transport=websocket&sid={}", c.sid);
    let mut second = WsClient::connect(server.addr, &target).expect("101");
    assert_eq!(second.recv(), Frame::Closed(None));
    ws.send_text("4still");
    assert_eq!(ws.recv_text(), "4still");
}

#[test]
fn packets_queued_during_the_probe_arrive_on_the_websocket() {
    let server = server();
    let (c, mut ws) = upgrade_on_another_shard(&server);
    probe(&mut ws);
    // Sent (and echoed) over polling while the probe runs: no GET takes the echo...
    c.send("4during");
    ws.send_text("5");
    // ...so it goes out on the WebSocket once upgraded.
    assert_eq!(ws.recv_text(), "4during");
}

#[test]
fn the_heartbeat_goes_on_over_the_upgraded_websocket() {
    let server = TestServer::conformance();
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let mut ws = upgrade_request(&c);
    ws.auto_pong = false;
    probe(&mut ws);
    ws.send_text("5");
    for _ in 0..3 {
        assert_eq!(ws.recv(), Frame::Text("2".into()));
        ws.send_text("3");
    }
    // No pong: the session closes at the ping timeout.
    assert_eq!(ws.recv(), Frame::Text("2".into()));
    ws.expect_closed();
    server.wait_until("the session to close", |m| m.sessions_open() == 0);
}

#[test]
fn a_bad_probe_or_a_late_upgrade_closes_only_the_candidate() {
    let server = TestServer::conformance_with(|e| {
        slow_heartbeat(e);
        e.upgrade_timeout = Duration::from_millis(300);
    });
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    // Another packet than the probe.
    let mut ws = upgrade_request(&c);
    ws.send_text("4hello");
    ws.expect_closed();
    c.send("4a");
    assert_eq!(c.recv(), "4a");
    // No upgrade packet within upgradeTimeout.
    let mut ws = upgrade_request(&c);
    probe(&mut ws);
    let started = std::time::Instant::now();
    ws.expect_closed();
    assert!(started.elapsed() < Duration::from_secs(2));
    c.send("4b");
    assert_eq!(c.recv(), "4b");
    // And the session can still upgrade.
    let mut ws = upgrade_request(&c);
    probe(&mut ws);
    ws.send_text("5");
    ws.send_text("4c");
    assert_eq!(ws.recv_text(), "4c");
}

#[test]
fn socketio_works_over_polling() {
    let server = server();
    let (c, _) = PollingClient::open(server.addr, "/socket.io/");
    c.send(r#"40{"token":"abc"}"#);
    let mut got = c.recv();
    if !got.contains('\x1e') {
        got.push('\x1e');
        got.push_str(&c.recv());
    }
    let (connect, auth) = got.split_once('\x1e').unwrap();
    assert!(connect.starts_with(r#"40{"sid":""#), "{connect}");
    assert_eq!(auth, r#"42["auth",{"token":"abc"}]"#);
    // A binary event: the attachment travels as `b`+base64 in the same payload.
    c.send("451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID");
    assert_eq!(
        c.recv(),
        "451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID"
    );
}

#[test]
fn cors_preflights_and_headers_on_every_response() {
    let server = server();
    let r = request(
        server.addr,
        "OPTIONS",
        "/engine.io/?EIO=4&transport=polling",
        &[
            "Origin: https://app.example",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: content-type,x-token",
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type,x-token")
    );
    assert_eq!(r.header("vary"), Some("Access-Control-Request-Headers"));
    for name in ["access-control-allow-origin", "vary"] {
        assert_eq!(r.header_count(name), 1, "{name} once");
    }
    // Errors carry the headers too.
    let r = request(
        server.addr,
        "GET",
        "/engine.io/?transport=polling",
        &["Origin: https://x"],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn credentials_echo_the_origin_and_the_cookie_carries_the_sid() {
    let server = TestServer::conformance_with(|e| {
        slow_heartbeat(e);
        e.cors = shardio::protocol::cors::CorsPolicy::from_origins(
            &["https://app.example".to_string()],
            true,
        );
        e.cookie = Some("io".into());
    });
    let r = request(
        server.addr,
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &["Origin: https://app.example"],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let open: serde_json::Value =
        serde_json::from_str(r.text().strip_prefix('0').unwrap()).unwrap();
    let sid = open["sid"].as_str().unwrap();
    assert_eq!(
        r.header("set-cookie"),
        Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    // A credentialed preflight: the exact origin, once, and both Vary reasons.
    let r = request(
        server.addr,
        "OPTIONS",
        &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
        &[
            "Origin: https://app.example",
            "Access-Control-Request-Headers: content-type",
        ],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("vary"),
        Some("Origin, Access-Control-Request-Headers")
    );
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "vary",
    ] {
        assert_eq!(r.header_count(name), 1, "{name} once");
    }
    // An origin not on the list gets no Allow-Origin.
    let r = request(
        server.addr,
        "GET",
        "/engine.io/?EIO=4&transport=polling",
        &["Origin: https://evil.example"],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Without CORS configured, no CORS headers and OPTIONS goes to Engine.IO's checks.
    let plain = TestServer::start(
        1,
        vec![shardio::Endpoint::engine(
            "/engine.io/",
            EngineConfig::default(),
            shardio::conformance::Echo,
        )],
    );
    let r = request(
        plain.addr,
        "OPTIONS",
        "/engine.io/?EIO=4&transport=polling",
        &["Origin: https://x"],
        b"",
    );
    assert_eq!(
        (r.status, r.text()),
        (400, r#"{"code":2,"message":"Bad handshake method"}"#)
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("set-cookie"), None);
}
