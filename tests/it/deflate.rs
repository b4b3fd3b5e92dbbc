//! WebSocket compression (permessage-deflate, RFC 7692, `--websocket-compression`): the
//! negotiation as the 101 answers it, compressed messages both ways (whole, fragmented, with
//! and without context takeover), the bounds (RSV1 where it may not be, a decompression bomb),
//! and the official socket.io-client negotiating it through the `ws` package.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use crate::common;

use common::node::run_script;
use common::raw_ws::{frame, frame_bits, RawWs, ServerFrame, BINARY, CONTINUATION, PING, TEXT};
use common::tls::CertFiles;
use common::TestServer;
use shardio::engineio::EngineConfig;
use shardio::metrics::{Metrics, ShardMetrics};

/// What `ws` (Node) and browsers offer by default.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
/// RSV1 in a frame's first byte: a compressed message.
const RSV1: u8 = 0x40;

fn total(m: &Metrics, counter: fn(&ShardMetrics) -> u64) -> u64 {
    m.shards().iter().map(counter).sum()
}

/// The conformance apps with compression on and `max_payload` on every endpoint ([`tune`]).
fn compressing(max_payload: usize) -> TestServer {
    TestServer::conformance_with(|e| {
        tune(e, true);
        e.max_payload = max_payload;
    })
}

/// Compression on or off, and a heartbeat slow enough that raw clients need not answer pings
/// and a loaded machine does not time a session out mid-test (the conformance app's is 300 ms
/// and 200 ms).
fn tune(e: &mut EngineConfig, compression: bool) {
    e.websocket_compression = compression;
    e.ping_interval = Duration::from_secs(20);
    e.ping_timeout = Duration::from_secs(10);
}

/// The `Sec-WebSocket-Extensions` value of a response head, if it has one.
fn extensions(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    })
}

/// A WebSocket to the plain echo offering `offer` (header lines); the answer's extensions.
fn echo_with(server: &TestServer, offer: &str) -> (RawWs, Option<String>) {
    let (ws, head) = RawWs::try_connect_with(server.addr, "/ws-echo", offer).expect("101");
    (ws, extensions(&head))
}

/// A client's compressor, keeping its context between messages or not.
struct Client {
    compress: Compress,
    keep_context: bool,
}

impl Client {
    fn new(keep_context: bool) -> Self {
        Client {
            compress: Compress::new(Compression::default(), false),
            keep_context,
        }
    }

    /// One message compressed as RFC 7692 §7.2.1 has it (sync flush, tail removed).
    fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        if !self.keep_context {
            self.compress.reset();
        }
        let mut out = Vec::with_capacity(data.len() + 1024);
        self.compress
            .compress_vec(data, &mut out, FlushCompress::Sync)
            .expect("compress");
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// A server message inflated on its own: the server never takes its context over.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut data = payload.to_vec();
    data.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(64 << 20);
    d.decompress_vec(&data, &mut out, FlushDecompress::Sync)
        .expect("the server's message inflates alone");
    out
}

/// Some compressible JSON text of about `n` kilobytes.
fn json(n: usize) -> String {
    let items: Vec<String> = (0..n * 20)
        .map(|i| format!(r#"{{"id":{i},"name":"item {}"}}"#, i % 7))
        .collect();
    format!("[{}]", items.join(","))
}

/// The next frame, which must be a complete message; its payload inflated if compressed.
fn next_message(ws: &mut RawWs) -> (ServerFrame, Vec<u8>) {
    let f = ws.next_frame().expect("a frame");
    assert!(f.fin, "{f:?}");
    let data = if f.rsv1 {
        inflate(&f.payload)
    } else {
        f.payload.clone()
    };
    (f, data)
}

fn assert_closed_with(ws: &mut RawWs, code: u16) {
    let (frames, ended) = ws.frames_until_end();
    assert!(ended, "the server ends the connection");
    let last = frames.last().expect("a close frame");
    assert_eq!(
        (last.opcode, last.close_code()),
        (0x8, Some(code)),
        "{frames:?}"
    );
}

#[test]
fn the_answer_names_exactly_what_was_agreed() {
    let server = compressing(1 << 20);
    for (offer, answer) in [
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            // The first offer cannot be honoured (a parameter shardio does not know).
            "permessage-deflate; mystery, permessage-deflate; server_max_window_bits=\"12\"",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        (
            "x-webkit-deflate-frame, permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
    ] {
        let offer = format!("Sec-WebSocket-Extensions: {offer}\r\n");
        let (_, agreed) = echo_with(&server, &offer);
        assert_eq!(agreed.as_deref(), Some(answer), "{offer}");
    }
    assert_eq!(
        echo_with(&server, "").1,
        None,
        "nothing offered, nothing agreed"
    );
}

#[test]
fn malformed_offers_are_declined_and_the_connection_works_without_compression() {
    let server = compressing(1 << 20);
    for bad in [
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate;; client_no_context_takeover",
        "permessage-deflate; x=\"unterminated, permessage-deflate",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ";;;,,,===",
        "permessage-deflate; client_max_window_bits=\"1\\\"0\"",
    ] {
        let offer = format!("Sec-WebSocket-Extensions: {bad}\r\n");
        let (mut ws, agreed) = echo_with(&server, &offer);
        assert_eq!(agreed, None, "{bad:?} is declined");
        let text = json(2);
        ws.send(&frame(true, TEXT, text.as_bytes()));
        let (f, data) = next_message(&mut ws);
        assert!(!f.rsv1, "nothing compressed without the extension");
        assert_eq!(data, text.as_bytes());
        // And RSV1 is then what it is without the extension: a protocol error.
        ws.send(&frame_bits(
            0x80 | RSV1 | TEXT,
            &Client::new(false).compress(b"hi"),
        ));
        assert_closed_with(&mut ws, 1002);
    }
}

#[test]
fn without_the_flag_nothing_is_negotiated_and_rsv1_is_a_protocol_error() {
    let server = TestServer::conformance();
    let (mut ws, agreed) = echo_with(&server, OFFER);
    assert_eq!(agreed, None);
    let text = json(4);
    ws.send(&frame(true, TEXT, text.as_bytes()));
    let (f, data) = next_message(&mut ws);
    assert!(!f.rsv1);
    assert_eq!(data, text.as_bytes());
    ws.send(&frame_bits(
        0x80 | RSV1 | BINARY,
        &Client::new(false).compress(&[1; 100]),
    ));
    assert_closed_with(&mut ws, 1002);
    assert_eq!(total(&server.metrics, ShardMetrics::deflate_negotiated), 0);
}

#[test]
fn rsv1_on_a_continuation_or_a_control_frame_is_a_protocol_error() {
    let server = compressing(1 << 20);
    let (mut ws, agreed) = echo_with(&server, OFFER);
    assert!(agreed.is_some());
    ws.send(&frame(false, TEXT, b"plain "));
    ws.send(&frame_bits(RSV1 | CONTINUATION, b"then compressed?"));
    assert_closed_with(&mut ws, 1002);
    let (mut ws, _) = echo_with(&server, OFFER);
    ws.send(&frame_bits(0x80 | RSV1 | PING, b""));
    assert_closed_with(&mut ws, 1002);
    // Data that is not DEFLATE does not inflate: a protocol error too.
    let (mut ws, _) = echo_with(&server, OFFER);
    ws.send(&frame_bits(0x80 | RSV1 | BINARY, &[0xff; 16]));
    assert_closed_with(&mut ws, 1002);
}

/// UTF-8 is checked on the inflated text: compressed bytes are no text, and what they inflate
/// to must be (RFC 7692 §6: the extension sits below the text check).
#[test]
fn compressed_text_that_inflates_to_invalid_utf8_is_closed_with_1007() {
    let server = compressing(1 << 20);
    let mut invalid = json(2).into_bytes();
    invalid.extend_from_slice(b"\xff\xfe not text");
    let compressed = Client::new(false).compress(&invalid);
    let (mut ws, _) = echo_with(&server, OFFER);
    let valid = json(2);
    let good = Client::new(false).compress(valid.as_bytes());
    // Valid text whose compressed bytes are not UTF-8 passes: only the inflated form counts.
    assert!(std::str::from_utf8(&good).is_err());
    ws.send(&frame_bits(0x80 | RSV1 | TEXT, &good));
    assert_eq!(next_message(&mut ws).1, valid.as_bytes());
    ws.send(&frame_bits(0x80 | RSV1 | TEXT, &compressed));
    assert_closed_with(&mut ws, 1007);
    // In fragments too.
    let (mut ws, _) = echo_with(&server, OFFER);
    let half = compressed.len() / 2;
    ws.send(&frame_bits(RSV1 | TEXT, &compressed[..half]));
    ws.send(&frame(true, CONTINUATION, &compressed[half..]));
    assert_closed_with(&mut ws, 1007);
}

#[test]
fn compressed_messages_arrive_whole_or_fragmented_and_large_echoes_go_out_compressed() {
    let server = compressing(1 << 20);
    let (mut ws, _) = echo_with(&server, OFFER);
    let mut client = Client::new(true);
    let text = json(50);
    let compressed = client.compress(text.as_bytes());
    // One frame.
    ws.send(&frame_bits(0x80 | RSV1 | TEXT, &compressed));
    let (f, data) = next_message(&mut ws);
    assert!(f.rsv1 && f.opcode == TEXT, "over the threshold: compressed");
    assert!(
        f.payload.len() < text.len() / 4,
        "{} bytes",
        f.payload.len()
    );
    assert_eq!(data, text.as_bytes());
    // Three fragments: RSV1 on the first only, as RFC 7692 §6.1 has it.
    let compressed = client.compress(text.as_bytes());
    let third = compressed.len() / 3;
    ws.send(&frame_bits(RSV1 | TEXT, &compressed[..third]));
    ws.send(&frame(false, CONTINUATION, &compressed[third..2 * third]));
    ws.send(&frame(true, CONTINUATION, &compressed[2 * third..]));
    assert_eq!(next_message(&mut ws).1, text.as_bytes());
    // A binary message, and a small one, which goes back plain.
    let binary: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
    ws.send(&frame_bits(0x80 | RSV1 | BINARY, &client.compress(&binary)));
    let (f, data) = next_message(&mut ws);
    assert_eq!((f.opcode, f.rsv1, data), (BINARY, true, binary));
    ws.send(&frame_bits(0x80 | RSV1 | TEXT, &client.compress(b"short")));
    let (f, data) = next_message(&mut ws);
    assert_eq!((f.rsv1, data), (false, b"short".to_vec()));
    // Plain messages stay allowed on a compressing connection.
    ws.send(&frame(true, TEXT, b"plain"));
    assert_eq!(next_message(&mut ws).1, b"plain");
}

#[test]
fn context_takeover_spans_messages_unless_the_client_gives_it_up() {
    let server = compressing(1 << 20);
    let text = json(8);
    for (offer, keep) in [
        (OFFER.to_owned(), true),
        (
            "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
                .to_owned(),
            false,
        ),
    ] {
        let (mut ws, _) = echo_with(&server, &offer);
        let mut client = Client::new(keep);
        let mut sizes = Vec::new();
        for _ in 0..4 {
            let compressed = client.compress(text.as_bytes());
            sizes.push(compressed.len());
            ws.send(&frame_bits(0x80 | RSV1 | TEXT, &compressed));
            assert_eq!(next_message(&mut ws).1, text.as_bytes(), "{offer}");
        }
        if keep {
            assert!(
                sizes[1] * 4 < sizes[0],
                "later messages refer to the first: {sizes:?}"
            );
        } else {
            assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
        }
    }
}

#[test]
fn a_decompression_bomb_is_closed_with_1009_and_the_server_serves_on() {
    const LIMIT: usize = 64 * 1024;
    let server = compressing(LIMIT);
    // 16 MiB of zeros: about 16 KB compressed, well under the limit on the wire.
    let bomb = Client::new(false).compress(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < LIMIT / 2, "{}", bomb.len());
    let (mut ws, _) = echo_with(&server, OFFER);
    ws.send(&frame_bits(0x80 | RSV1 | BINARY, &bomb));
    assert_closed_with(&mut ws, 1009);
    // In fragments, on the context-keeping path.
    let (mut ws, _) = echo_with(&server, OFFER);
    let quarter = bomb.len() / 4;
    ws.send(&frame_bits(RSV1 | BINARY, &bomb[..quarter]));
    for piece in bomb[quarter..].chunks(quarter) {
        ws.send(&frame(false, CONTINUATION, piece));
    }
    ws.send(&frame(true, CONTINUATION, b""));
    assert_closed_with(&mut ws, 1009);
    // A message inflating to exactly the limit passes.
    let (mut ws, _) = echo_with(&server, OFFER);
    let exact = vec![b'a'; LIMIT];
    ws.send(&frame_bits(
        0x80 | RSV1 | TEXT,
        &Client::new(false).compress(&exact),
    ));
    assert_eq!(next_message(&mut ws).1, exact);
    // On an Engine.IO session: 1009, the session ends, counted as a message too big.
    let (mut session, _) =
        RawWs::try_connect_with(server.addr, "/engine.io/?EIO=4&transport=websocket", OFFER)
            .expect("101");
    assert_eq!(next_message(&mut session).1.first(), Some(&b'0'), "open");
    let mut packet = b"4".to_vec();
    packet.resize(8 << 20, b'x');
    session.send(&frame_bits(
        0x80 | RSV1 | TEXT,
        &Client::new(true).compress(&packet),
    ));
    assert_closed_with(&mut session, 1009);
    server.wait_until("the session to end as a message too big", |m| {
        m.sessions_open() == 0 && total(m, ShardMetrics::messages_too_big) >= 1
    });
}

#[test]
fn an_engineio_session_inflates_and_compresses_and_counts_it() {
    let server = compressing(1 << 20);
    let (mut ws, head) =
        RawWs::try_connect_with(server.addr, "/engine.io/?EIO=4&transport=websocket", OFFER)
            .expect("101");
    assert_eq!(
        extensions(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    let (open, _) = next_message(&mut ws);
    assert!(!open.rsv1, "small packets go plain");
    let packet = format!("4{}", json(20));
    let mut client = Client::new(true);
    for _ in 0..3 {
        ws.send(&frame_bits(
            0x80 | RSV1 | TEXT,
            &client.compress(packet.as_bytes()),
        ));
        let (f, data) = next_message(&mut ws);
        assert!(f.rsv1);
        assert_eq!(data, packet.as_bytes());
    }
    server.wait_until("the compressed traffic to be counted", |m| {
        total(m, ShardMetrics::deflate_negotiated) == 1
            && total(m, ShardMetrics::messages_in_compressed) == 3
            && total(m, ShardMetrics::messages_out_compressed) == 3
            && total(m, ShardMetrics::compression_saved_bytes) > 3 * packet.len() as u64 / 2
    });
}

/// The npm socket.io-client (engine.io-client's WebSocket transport is the `ws` package, which
/// offers permessage-deflate and compresses messages of 1 KiB and more) sends and receives
/// large messages, over WebSocket from the start and after an upgrade from polling, to
/// `url`. Returns what the script saw.
fn node_clients(url: &str) -> serde_json::Value {
    let out = run_script("compression_client.mjs", &[url], Duration::from_secs(30));
    serde_json::from_str(out.trim()).expect("the script's JSON")
}

/// What the script saw and the server counted when both transports negotiated compression.
fn assert_negotiated_and_intact(seen: &serde_json::Value, server: &TestServer) {
    for transports in ["websocket", "polling,websocket"] {
        assert_eq!(
            seen[transports]["extensions"], "permessage-deflate",
            "{seen}"
        );
        assert_eq!(
            seen[transports]["params"],
            serde_json::json!({ "server_no_context_takeover": true }),
            "{seen}"
        );
        assert_eq!(seen[transports]["intact"], true, "{seen}");
    }
    let m = &server.metrics;
    assert_eq!(total(m, ShardMetrics::deflate_negotiated), 2);
    // Each client sends a text and a binary message over the threshold; both come back.
    assert!(total(m, ShardMetrics::messages_in_compressed) >= 4);
    assert!(total(m, ShardMetrics::messages_out_compressed) >= 4);
}

#[test]
fn socketio_client_negotiates_compression_and_large_messages_arrive_intact() {
    let server = TestServer::conformance_with(|e| tune(e, true));
    let seen = node_clients(&server.url());
    assert_negotiated_and_intact(&seen, &server);
}

/// The same over TLS (wss, and https polling before the upgrade): compression sits above the
/// connection's stream, whichever it is.
#[test]
fn socketio_client_negotiates_compression_over_wss() {
    let certs = CertFiles::new();
    let mut endpoints = shardio::conformance::endpoints();
    for ep in &mut endpoints {
        tune(&mut ep.engine, true);
    }
    let server = TestServer::start_tls(2, endpoints, &certs);
    let seen = node_clients(&format!("https://127.0.0.1:{}", server.addr.port()));
    assert_negotiated_and_intact(&seen, &server);
    assert!(total(&server.metrics, ShardMetrics::tls_handshakes) >= 2);
}

#[test]
fn socketio_client_without_the_flag_negotiates_nothing() {
    let server = TestServer::conformance_with(|e| tune(e, false));
    let seen = node_clients(&server.url());
    for transports in ["websocket", "polling,websocket"] {
        assert_eq!(seen[transports]["extensions"], "", "{seen}");
        assert_eq!(
            seen[transports]["params"],
            serde_json::Value::Null,
            "{seen}"
        );
        assert_eq!(seen[transports]["intact"], true, "{seen}");
    }
    let m = &server.metrics;
    assert_eq!(total(m, ShardMetrics::deflate_negotiated), 0);
    assert_eq!(total(m, ShardMetrics::messages_out_compressed), 0);
}
