//! The WebSocket framing layer against RFC 6455 §5-8 and the server's limits (§10.4): each
//! case sends frames, some broken on purpose, to the plain WebSocket echo of the conformance
//! app (`/ws-echo`, which runs the same reader, queue and close handshake as the Engine.IO
//! transport), and records what comes back. `framing_expected.txt` holds the outcome each case
//! must have; the test compares every case to it and lists each difference.

use crate::common;

use common::raw_ws::{
    close_frame, frame, frame_bits, RawWs, ServerFrame, BINARY, CLOSE, CONTINUATION, PING, PONG,
    TEXT,
};
use common::TestServer;
use shardio::conformance::{ws_echo_config, WS_ECHO_MAX_PAYLOAD};

/// One case: what the client sends, and whether it then closes normally itself (a case that
/// must be failed by the server before it ends sends nothing more).
struct Case {
    name: String,
    send: Vec<u8>,
    then_close: bool,
}

fn case(name: impl Into<String>, send: Vec<u8>) -> Case {
    Case {
        name: name.into(),
        send,
        then_close: true,
    }
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// A frame header announcing `len` payload bytes, and no payload.
fn header_only(first: u8, len: u64) -> Vec<u8> {
    let mut f = vec![first, 0x80 | 127];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&common::raw_ws::MASK);
    f
}

fn cases() -> Vec<Case> {
    let max_fragments = ws_echo_config().max_fragments;
    let control_rate = ws_echo_config().control_frame_rate as usize;
    let mut cases = vec![
        // §5.2 base framing, §5.6 data frames.
        case("5.2-text", frame(true, TEXT, b"Hello")),
        case("5.2-binary", frame(true, BINARY, &[1, 2, 3])),
        case("5.2-empty-text", frame(true, TEXT, b"")),
        case("5.2-empty-binary", frame(true, BINARY, b"")),
    ];
    for len in [125, 126, 65_535, 65_536] {
        cases.push(case(
            format!("5.2-length-{len}"),
            frame(true, BINARY, &vec![7; len]),
        ));
    }
    for (name, bits) in [("rsv1", 0x40), ("rsv2", 0x20), ("rsv3", 0x10)] {
        cases.push(case(
            format!("5.2-{name}"),
            frame_bits(0x80 | bits | TEXT, b"x"),
        ));
    }
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        cases.push(case(
            format!("5.2-reserved-opcode-{opcode:x}"),
            frame(true, opcode, b"x"),
        ));
    }
    // §5.1, §5.3: a client frame without a mask.
    cases.push(case("5.3-unmasked", vec![0x81, 0x01, b'x']));
    // §5.4 fragmentation.
    cases.push(case(
        "5.4-text-in-three-fragments",
        concat(&[
            frame(false, TEXT, b"He"),
            frame(false, CONTINUATION, b"ll"),
            frame(true, CONTINUATION, b"o"),
        ]),
    ));
    cases.push(case(
        "5.4-binary-in-two-fragments",
        concat(&[
            frame(false, BINARY, &[1, 2]),
            frame(true, CONTINUATION, &[3, 4]),
        ]),
    ));
    let mut empty = vec![frame(false, TEXT, b"")];
    empty.extend((0..10).map(|_| frame(false, CONTINUATION, b"")));
    empty.push(frame(true, CONTINUATION, b"x"));
    cases.push(case("5.4-empty-fragments", concat(&empty)));
    cases.push(case(
        "5.4-ping-between-fragments",
        concat(&[
            frame(false, TEXT, b"Hel"),
            frame(true, PING, b"ping"),
            frame(true, CONTINUATION, b"lo"),
        ]),
    ));
    cases.push(case(
        "5.4-continuation-without-start",
        frame(false, CONTINUATION, b"x"),
    ));
    cases.push(case(
        "5.4-final-continuation-without-start",
        frame(true, CONTINUATION, b"x"),
    ));
    cases.push(case(
        "5.4-text-inside-fragmented-message",
        concat(&[frame(false, TEXT, b"a"), frame(true, TEXT, b"b")]),
    ));
    cases.push(case("5.4-fragmented-ping", frame(false, PING, b"x")));
    // The fragment limit: exactly at it, and one past it (empty continuations, the flood of
    // issue 16).
    let at_limit: Vec<Vec<u8>> = (0..max_fragments)
        .map(|i| {
            let opcode = if i == 0 { TEXT } else { CONTINUATION };
            frame(i + 1 == max_fragments, opcode, b"a")
        })
        .collect();
    cases.push(case("5.4-fragments-at-the-limit", concat(&at_limit)));
    let mut flood = vec![frame(false, TEXT, b"")];
    flood.extend((0..max_fragments).map(|_| frame(false, CONTINUATION, b"")));
    cases.push(Case {
        then_close: false,
        ..case("5.4-fragments-over-the-limit", concat(&flood))
    });
    // §5.5 control frames.
    cases.push(case("5.5-ping", frame(true, PING, b"hi")));
    cases.push(case("5.5-ping-125-bytes", frame(true, PING, &[b'p'; 125])));
    cases.push(case("5.5-ping-126-bytes", frame(true, PING, &[b'p'; 126])));
    cases.push(case("5.5-unsolicited-pong", frame(true, PONG, b"x")));
    let pings = |n: usize| concat(&vec![frame(true, PING, b""); n]);
    cases.push(case("5.5-pings-within-the-rate", pings(control_rate)));
    cases.push(Case {
        then_close: false,
        ..case("5.5-pings-over-the-rate", pings(control_rate + 1))
    });
    // §5.5.1, §7.1.5, §7.4: the close handshake and its codes.
    cases.push(case("7.4-close-without-code", frame(true, CLOSE, b"")));
    cases.push(case("7.4-close-one-byte", frame(true, CLOSE, &[0x03])));
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        cases.push(case(format!("7.4-close-{code}"), close_frame(code, b"")));
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        cases.push(case(format!("7.4-close-{code}"), close_frame(code, b"")));
    }
    cases.push(case("7.4-close-reason", close_frame(1000, b"bye")));
    cases.push(case(
        "7.4-close-reason-123-bytes",
        close_frame(1000, &[b'r'; 123]),
    ));
    cases.push(case(
        "7.4-close-reason-124-bytes",
        close_frame(1000, &[b'r'; 124]),
    ));
    cases.push(case(
        "7.4-close-reason-invalid-utf8",
        close_frame(1000, &[b'o', 0xFF]),
    ));
    cases.push(case(
        "7.1-text-after-close",
        concat(&[close_frame(1000, b""), frame(true, TEXT, b"late")]),
    ));
    cases.push(case(
        "7.1-ping-after-close",
        concat(&[close_frame(1000, b""), frame(true, PING, b"late")]),
    ));
    // §8.1: text must be UTF-8.
    cases.push(case("8.1-invalid-byte", frame(true, TEXT, &[b'a', 0xFF])));
    cases.push(case("8.1-overlong", frame(true, TEXT, &[0xC0, 0xAF])));
    cases.push(case(
        "8.1-surrogate",
        frame(true, TEXT, &[0xED, 0xA0, 0x80]),
    ));
    cases.push(case(
        "8.1-truncated",
        frame(true, TEXT, &[b'a', 0xE2, 0x82]),
    ));
    let euro = "€".as_bytes();
    cases.push(case(
        "8.1-code-point-split-across-fragments",
        concat(&[
            frame(false, TEXT, &euro[..1]),
            frame(false, CONTINUATION, &euro[1..2]),
            frame(true, CONTINUATION, &euro[2..]),
        ]),
    ));
    // Fail fast: the server must not wait for the rest of the message, or of the frame.
    cases.push(Case {
        then_close: false,
        ..case(
            "8.1-invalid-fragment-before-the-end",
            concat(&[
                frame(false, TEXT, b"ok"),
                frame(false, CONTINUATION, &[0xFF]),
            ]),
        )
    });
    let mut partial = frame(true, TEXT, &[b'a', 0xFF, b'b', b'c', b'd', b'e']);
    partial.truncate(partial.len() - 3);
    cases.push(Case {
        then_close: false,
        ..case("8.1-invalid-start-of-a-frame", partial)
    });
    // §10.4 limits: the message size, from the header, before the payload arrives.
    let max = WS_ECHO_MAX_PAYLOAD as u64;
    cases.push(Case {
        then_close: false,
        ..case("10.4-message-over-max-payload", header_only(0x82, max + 1))
    });
    let first = frame(false, BINARY, &vec![1; 1 << 20]);
    cases.push(Case {
        then_close: false,
        ..case(
            "10.4-fragments-over-max-payload",
            concat(&[first, header_only(CONTINUATION | 0x80, max - (1 << 20) + 1)]),
        )
    });
    cases.push(case(
        "10.4-message-at-max-payload",
        frame(true, BINARY, &vec![9; WS_ECHO_MAX_PAYLOAD]),
    ));
    cases
}

/// What the client saw, in the expected file's words.
fn describe(frames: &[ServerFrame], ended: bool) -> String {
    let mut items: Vec<String> = frames
        .iter()
        .map(|f| {
            let len = f.payload.len();
            match f.opcode {
                TEXT if len <= 16 => format!("text:{}", String::from_utf8_lossy(&f.payload)),
                TEXT => format!("text:{len}B"),
                BINARY => format!("binary:{len}B"),
                PONG => format!("pong:{len}B"),
                CLOSE => f
                    .close_code()
                    .map_or_else(|| "close:-".into(), |c| format!("close:{c}")),
                op => format!("opcode-{op:x}:{len}B"),
            }
        })
        .collect();
    if frames.last().is_none_or(|f| f.opcode != CLOSE) {
        items.push(if ended { "eof" } else { "still-open" }.into());
    }
    // Runs of the same item as `item*N`.
    let mut out: Vec<(String, usize)> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some((last, n)) if *last == item => *n += 1,
            _ => out.push((item, 1)),
        }
    }
    out.iter()
        .map(|(item, n)| match n {
            1 => item.clone(),
            n => format!("{item}*{n}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(server: &TestServer, case: &Case) -> String {
    let mut ws = RawWs::connect(server.addr, "/ws-echo");
    // A server that fails the connection early may reset the rest of a long write.
    ws.send(&case.send);
    if case.then_close {
        ws.send(&close_frame(1000, b""));
    }
    let (frames, ended) = ws.frames_until_end();
    describe(&frames, ended)
}

#[test]
fn framing_cases_match_the_expected_results() {
    let expected_text = include_str!("framing_expected.txt");
    let expected: Vec<(&str, &str)> = expected_text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, outcome) = l.split_once('|').expect("`case | outcome`");
            (name.trim(), outcome.trim())
        })
        .collect();
    let server = TestServer::conformance();
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    let listed: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, listed,
        "framing_expected.txt lists exactly the cases, in order"
    );
    let mut differences = Vec::new();
    for (case, (_, want)) in cases.iter().zip(&expected) {
        let got = run(&server, case);
        if got != *want {
            differences.push(format!("{}: expected `{want}`, got `{got}`", case.name));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} cases differ:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n")
    );
    // The limits that closed connections were counted.
    let m = &server.metrics;
    let sum = |f: fn(&shardio::metrics::ShardMetrics) -> u64| m.shards().iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.fragment_floods()), 1);
    assert_eq!(sum(|s| s.control_floods()), 1);
    assert_eq!(sum(|s| s.messages_too_big()), 2);
}
