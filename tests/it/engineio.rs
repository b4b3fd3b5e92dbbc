//! Engine.IO v4 over WebSocket against a real 4-shard server (docs/PROTOCOL.md §1).

use crate::common;

use common::{assert_conformance_open_packet, http_request, Frame, TestServer, WsClient};

#[test]
fn open_packet_has_exactly_the_node_keys() {
    let server = TestServer::conformance();
    let (_c, open) = WsClient::open(server.addr, "/socket.io/");
    assert_conformance_open_packet(&open, &[]);
}

#[test]
fn bad_handshakes_get_nodes_exact_errors() {
    let server = TestServer::conformance();
    // docs/PROTOCOL.md §1.5, captured from socket.io@4.8.4 (every one is a 400).
    const VERSION: &str = r#"{"code":5,"message":"Unsupported protocol version"}"#;
    const SID: &str = r#"{"code":1,"message":"Session ID unknown"}"#;
    const TRANSPORT: &str = r#"{"code":0,"message":"Transport unknown"}"#;
    const BAD_REQUEST: &str = r#"{"code":3,"message":"Bad request"}"#;
    let cases = [
        ("/engine.io/?transport=polling", VERSION),
        ("/engine.io/?EIO=abc&transport=polling", VERSION),
        ("/engine.io/?EIO=3&transport=polling", VERSION),
        ("/engine.io/?EIO=4&transport=polling&sid=nope", SID),
        (
            "/engine.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            SID,
        ),
        ("/engine.io/?EIO=4", TRANSPORT),
        ("/engine.io/?EIO=4&transport=abc", TRANSPORT),
        ("/engine.io/?EIO=4&transport=websocket", BAD_REQUEST),
        ("/engine.io/?EIO=4&transport=websocket&sid=nope", SID),
    ];
    for (target, body) in cases {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (got_status, head, got_body) = http_request(server.addr, &req);
        assert_eq!((got_status, got_body.as_str()), (400, body), "GET {target}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
    }
    for transport in ["websocket", "polling"] {
        let req = format!("POST /engine.io/?EIO=4&transport={transport} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let (status, _, body) = http_request(server.addr, &req);
        assert_eq!(
            (status, body.as_str()),
            (400, r#"{"code":2,"message":"Bad handshake method"}"#)
        );
    }
}

#[test]
fn bad_upgrades_are_aborted_with_the_raw_message() {
    let server = TestServer::conformance();
    for (query, message) in [
        ("EIO=3&transport=websocket", "Unsupported protocol version"),
        ("transport=websocket", "Unsupported protocol version"),
        (
            "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
            "Session ID unknown",
        ),
    ] {
        let req = format!(
            "GET /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let (status, head, body) = http_request(server.addr, &req);
        assert_eq!((status, body.as_str()), (400, message), "{query}");
        assert!(head.contains("Content-type: text/html"));
        assert!(WsClient::connect(server.addr, &format!("/engine.io/?{query}")).is_err());
    }
}

#[test]
fn unknown_paths_get_404() {
    let server = TestServer::conformance();
    let (status, _, _) = http_request(
        server.addr,
        "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404);
}

#[test]
fn raw_engineio_endpoint_echoes_text_and_binary() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    c.send_text("4hello");
    assert_eq!(c.recv_text(), "4hello");
    c.send_binary(&[1, 2, 3, 4]);
    assert_eq!(c.recv_binary(), vec![1, 2, 3, 4]);
    let unicode = "4€ and 😀";
    c.send_text(unicode);
    assert_eq!(c.recv_text(), unicode);
}

#[test]
fn heartbeat_pings_and_closes_on_ping_timeout() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    c.auto_pong = false;
    for _ in 0..3 {
        assert_eq!(c.recv(), Frame::Text("2".into()));
        c.send_text("3");
    }
    // Stop answering: the session closes after pingInterval + pingTimeout.
    assert_eq!(c.recv(), Frame::Text("2".into()));
    let code = c.expect_closed();
    assert!(matches!(code, Some(1000) | None), "closed with {code:?}");
    server.wait_until("the session to be gone", |m| m.sessions_open() == 0);
}

#[test]
fn messages_over_max_payload_close_with_1009() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    let at_limit = format!("4{}", "a".repeat(1_000_000 - 1));
    c.send_text(&at_limit);
    assert_eq!(
        c.recv_text().len(),
        1_000_000,
        "a message of exactly maxPayload is accepted"
    );
    let over = format!("4{}", "a".repeat(1_000_000));
    c.send_text(&over);
    assert_eq!(c.expect_closed(), Some(1009));
}

#[test]
fn client_ping_packets_and_bad_packets_close_the_session() {
    let server = TestServer::conformance();
    for bad in ["2", "9what", ""] {
        let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
        c.send_text(bad);
        c.expect_closed();
    }
    server.wait_until("every session to close", |m| m.sessions_open() == 0);
}

#[test]
fn fragmented_messages_are_reassembled_and_protocol_errors_close() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/engine.io/");
    // "4ab" in two masked fragments: text (FIN=0) "4a", continuation (FIN=1) "b".
    let mask = [1u8, 2, 3, 4];
    let frag = |first: u8, payload: &[u8]| {
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    };
    c.send_raw(&frag(0x01, b"4a"));
    c.send_raw(&frag(0x80, b"b"));
    assert_eq!(c.recv_text(), "4ab");
    // An unmasked client frame breaks RFC 6455: the server closes with 1002.
    c.send_raw(&[0x81, 0x02, b'4', b'x']);
    assert_eq!(c.expect_closed(), Some(1002));
}

#[test]
fn oversized_request_heads_are_refused() {
    let server = TestServer::conformance();
    let req = format!(
        "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let (status, _, _) = http_request(server.addr, &req);
    assert_eq!(status, 431);
}
