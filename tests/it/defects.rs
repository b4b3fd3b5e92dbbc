//! The defects of issue 16 in the WebSocket and Engine.IO/Socket.IO framing layer, each shown
//! against a real server with the default settings of the conformance apps. Every test here
//! fails on the code before its fix (5bf5ab1 and up to cdfb747).

use std::time::Duration;

use crate::common;

use common::polling::PollingClient;
use common::raw_ws::{close_frame, frame, RawWs, ServerFrame, CLOSE, CONTINUATION, PING, TEXT};
use common::{Frame, TestServer, WsClient};
use shardio::conformance::Echo;
use shardio::engineio::EngineConfig;
use shardio::Endpoint;

/// A one-shard server (so a flooder and its neighbour share the shard) with the raw Engine.IO
/// echo on `/engine.io/`, a heartbeat slow enough that no client here must answer it, and
/// `tune` applied.
pub(crate) fn one_shard_echo(tune: impl Fn(&mut EngineConfig)) -> TestServer {
    let mut engine = EngineConfig {
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        ..EngineConfig::default()
    };
    tune(&mut engine);
    TestServer::start(1, vec![Endpoint::engine("/engine.io/", engine, Echo)])
}

/// Sends 25 MB of pings of 125 bytes on a WebSocket that never reads (less if the server
/// drops the connection first). `neighbour` must keep getting its echoes all along. Returns the
/// flooder's connection, still open on its side: the server must end it by itself.
pub(crate) fn flood_pings(server: &TestServer, neighbour: &mut WsClient) -> RawWs {
    let mut flooder = RawWs::connect(server.addr, "/engine.io/?EIO=4&transport=websocket");
    // A small receive window: the server's pongs pile up in its own queue sooner.
    socket2::SockRef::from(&flooder.stream)
        .set_recv_buffer_size(4096)
        .expect("SO_RCVBUF");
    let batch = frame(true, PING, &[b'p'; 125]).repeat(100);
    for round in 0..2_000 {
        if !flooder.send(&batch) {
            break;
        }
        if round % 100 == 0 {
            neighbour.send_text(&format!("4round {round}"));
            assert_eq!(neighbour.recv_text(), format!("4round {round}"));
        }
    }
    flooder
}

#[test]
fn a_ping_flood_is_closed_and_its_neighbour_keeps_receiving() {
    let server = one_shard_echo(|_| {});
    let (mut neighbour, _) = WsClient::open(server.addr, "/engine.io/");
    let _flooder = flood_pings(&server, &mut neighbour);
    server.wait_until(
        "the session of a client that sent 25 MB of pings and never read to end",
        |m| m.sessions_open() == 1,
    );
    neighbour.send_text("4after");
    assert_eq!(neighbour.recv_text(), "4after");
}

/// What comes back on a fresh Engine.IO WebSocket after `send`, past the open packet.
fn answer(server: &TestServer, send: &[u8]) -> Vec<ServerFrame> {
    let mut ws = RawWs::connect(server.addr, "/engine.io/?EIO=4&transport=websocket");
    let open = ws.next_frame().expect("the open packet");
    assert_eq!(open.opcode, TEXT);
    ws.send(send);
    let (frames, ended) = ws.frames_until_end();
    assert!(ended, "the server did not end the connection");
    frames
}

fn close_code_of(frames: &[ServerFrame]) -> Option<u16> {
    let last = frames.last().expect("a close frame");
    assert_eq!(last.opcode, CLOSE, "{frames:?}");
    last.close_code()
}

#[test]
fn close_frames_are_answered_per_rfc_6455_7_4() {
    let server = TestServer::conformance();
    for (code, answer_code) in [(1000, 1000), (1001, 1001), (3000, 3000), (4999, 4999)] {
        let got = close_code_of(&answer(&server, &close_frame(code, b"")));
        assert_eq!(got, Some(answer_code), "close {code}");
    }
    for invalid in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let got = close_code_of(&answer(&server, &close_frame(invalid, b"")));
        assert_eq!(got, Some(1002), "close {invalid} must fail the connection");
    }
    let got = close_code_of(&answer(&server, &close_frame(1000, &[b'b', 0xFF])));
    assert_eq!(got, Some(1007), "a close reason that is not UTF-8");
    let got = close_code_of(&answer(&server, &frame(true, CLOSE, &[0x03])));
    assert_eq!(got, Some(1002), "a one-byte close payload");
}

#[test]
fn text_that_is_not_utf8_closes_with_1007() {
    let server = TestServer::conformance();
    for bad in [
        &[b'4', 0xFF][..],
        &[b'4', 0xED, 0xA0, 0x80],
        &[b'4', 0xE2, 0x82],
    ] {
        let got = close_code_of(&answer(&server, &frame(true, TEXT, bad)));
        assert_eq!(got, Some(1007), "{bad:?}");
    }
}

#[test]
fn endless_empty_continuation_frames_are_cut() {
    let server = TestServer::conformance();
    let (mut neighbour, _) = WsClient::open(server.addr, "/engine.io/");
    let mut ws = RawWs::connect(server.addr, "/engine.io/?EIO=4&transport=websocket");
    ws.next_frame().expect("the open packet");
    ws.send(&frame(false, TEXT, b"4"));
    // 100,000 empty continuations, never a final one (the default limit is 1,024).
    let empties = frame(false, CONTINUATION, b"").repeat(1_000);
    for _ in 0..100 {
        if !ws.send(&empties) {
            break;
        }
    }
    let (frames, ended) = ws.frames_until_end();
    assert!(
        ended,
        "the connection is still open after 100,000 fragments"
    );
    assert_eq!(close_code_of(&frames), Some(1008));
    neighbour.send_text("4still");
    assert_eq!(neighbour.recv_text(), "4still");
}

#[test]
fn a_websocket_for_an_upgraded_session_is_accepted_then_closed() {
    let server = TestServer::conformance_with(|e| {
        e.ping_interval = Duration::from_secs(20);
        e.ping_timeout = Duration::from_secs(10);
    });
    let (c, _) = PollingClient::open(server.addr, "/engine.io/");
    let target = format!("/engine.io/?EIO=4&transport=websocket&sid={}", c.sid);
    let mut first = WsClient::connect(server.addr, &target).expect("the upgrade");
    first.send_text("2probe");
    assert_eq!(first.recv_text(), "3probe");
    // While the first candidate probes, and after it upgraded, another WebSocket for the
    // session is accepted and closed at once with a close frame without a code, as Node does.
    for step in ["probing", "upgraded"] {
        if step == "upgraded" {
            first.send_text("5");
            first.send_text("4up");
            assert_eq!(first.recv_text(), "4up");
        }
        let mut second = RawWs::try_connect(server.addr, &target)
            .unwrap_or_else(|head| panic!("{step}: refused with {head}"));
        let (frames, ended) = second.frames_until_end();
        assert!(ended, "{step}: the second WebSocket stays open");
        assert_eq!(frames.len(), 1, "{step}: {frames:?}");
        assert_eq!((frames[0].opcode, frames[0].close_code()), (CLOSE, None));
    }
    // The same for an Upgrade that names the polling transport.
    let polling = format!("/engine.io/?EIO=4&transport=polling&sid={}", c.sid);
    let mut third = RawWs::try_connect(server.addr, &polling).expect("accepted");
    let (frames, _) = third.frames_until_end();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].opcode, CLOSE);
    // The session goes on, untouched.
    first.send_text("4still");
    assert_eq!(first.recv_text(), "4still");
    assert_eq!(server.metrics.sessions_open(), 1);
}

#[test]
fn a_connect_to_a_huge_namespace_is_not_echoed() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text(&format!("40/{},", "n".repeat(100_000)));
    loop {
        match c.recv() {
            Frame::Text(t) => assert!(t.len() < 1024, "{} bytes echoed", t.len()),
            Frame::Binary(_) => panic!("binary frame"),
            Frame::Closed(_) => break,
        }
    }
    // A namespace name within the bound is still answered as Node does.
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text("40/nope,");
    assert_eq!(c.recv_text(), r#"44/nope,{"message":"Invalid namespace"}"#);
}
