//! The limits of the WebSocket and Socket.IO layers (README "Limits and failure behaviour"):
//! each refuses or closes as documented and is counted in the shard metrics, and a client
//! within them is untouched.

use std::time::Duration;

use crate::common;
use crate::defects::{flood_pings, one_shard_echo};

use common::{Frame, TestServer, WsClient};
use shardio::engineio::EngineConfig;
use shardio::metrics::{Metrics, ShardMetrics};
use shardio::socketio::{SocketIo, SocketIoConfig};
use shardio::Endpoint;

fn total(m: &Metrics, counter: fn(&ShardMetrics) -> u64) -> u64 {
    m.shards().iter().map(counter).sum()
}

#[test]
fn pongs_count_against_the_outbound_limit() {
    // No control-frame rate: only the byte limit of the queue stops a client that pings and
    // never reads, as a slow consumer.
    let server = one_shard_echo(|e| {
        e.control_frame_rate = 0;
        e.max_buffered_bytes = 64 * 1024;
    });
    let (mut neighbour, _) = WsClient::open(server.addr, "/engine.io/");
    let _flooder = flood_pings(&server, &mut neighbour);
    server.wait_until("the flooder to be closed as a slow consumer", |m| {
        total(m, ShardMetrics::slow_consumers) == 1 && m.sessions_open() == 1
    });
    neighbour.send_text("4after");
    assert_eq!(neighbour.recv_text(), "4after");
}

/// A one-shard Socket.IO server whose `/` acks `message-with-ack` with its arguments and echoes
/// `message` as `message-back`, with `config`.
fn socketio_server(config: SocketIoConfig) -> TestServer {
    let mut io = SocketIo::new(config);
    io.namespace("/")
        .on("message", |socket, data, _| {
            let _ = socket.emit("message-back", data);
        })
        .on("message-with-ack", |_, data, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(data);
            }
        });
    let engine = EngineConfig {
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(10),
        ..EngineConfig::default()
    };
    TestServer::start(1, vec![Endpoint::socketio("/socket.io/", engine, io)])
}

#[test]
fn events_over_the_rate_get_error_acks_and_persistent_abuse_is_disconnected() {
    // One event per second, bursts of 3: the events below are sent well within a second.
    let server = socketio_server(SocketIoConfig {
        max_event_rate: 1,
        max_event_burst: 3,
        ..SocketIoConfig::default()
    });
    let (mut c, _) = WsClient::socketio(server.addr, None);
    for id in 1..=3 {
        c.send_text(&format!(r#"42{id}["message-with-ack","a"]"#));
        assert_eq!(c.recv_text(), format!(r#"43{id}["a"]"#));
    }
    // Over the rate: an event without an ack is dropped, one with an ack gets an error ack.
    c.send_text(r#"42["message","dropped"]"#);
    for id in [5, 6] {
        c.send_text(&format!(r#"42{id}["message-with-ack","a"]"#));
        assert_eq!(
            c.recv_text(),
            format!(r#"43{id}[{{"error":"rate limited"}}]"#)
        );
    }
    // A fourth refusal since the client last stayed within its rate (more than the burst):
    // the connection is closed as a policy violation.
    c.send_text(r#"427["message-with-ack","a"]"#);
    assert_eq!(c.recv(), Frame::Closed(Some(1008)));
    server.wait_until("the refusals and the close to be counted", |m| {
        total(m, ShardMetrics::events_refused) == 4 && total(m, ShardMetrics::event_floods) == 1
    });
}

#[test]
fn events_are_not_limited_by_default_nor_within_the_rate() {
    // The default: no event rate (a flat-out publisher is not refused)...
    let server = socketio_server(SocketIoConfig::default());
    let (mut c, _) = WsClient::socketio(server.addr, None);
    for id in 0..5_000 {
        c.send_text(&format!(r#"42{id}["message-with-ack",{id}]"#));
    }
    for id in 0..5_000 {
        assert_eq!(c.recv_text(), format!(r#"43{id}[{id}]"#));
    }
    assert_eq!(total(&server.metrics, ShardMetrics::events_refused), 0);
    // ...and a burst within a configured rate is untouched.
    let server = socketio_server(SocketIoConfig {
        max_event_rate: 100,
        max_event_burst: 200,
        ..SocketIoConfig::default()
    });
    let (mut c, _) = WsClient::socketio(server.addr, None);
    for id in 0..200 {
        c.send_text(&format!(r#"42{id}["message-with-ack",{id}]"#));
    }
    for id in 0..200 {
        assert_eq!(c.recv_text(), format!(r#"43{id}[{id}]"#));
    }
    assert_eq!(total(&server.metrics, ShardMetrics::events_refused), 0);
}

#[test]
fn json_nesting_and_names_are_bounded() {
    let server = socketio_server(SocketIoConfig::default());
    // At the default depth (32 levels, the event's array included) the event is handled...
    let (mut c, _) = WsClient::socketio(server.addr, None);
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    c.send_text(&format!(r#"42["message",{}]"#, nested(31)));
    assert_eq!(
        c.recv_text(),
        format!(r#"42["message-back",{}]"#, nested(31))
    );
    // ...one level more is refused before it is parsed: the connection closes.
    c.send_text(&format!(r#"42["message",{}]"#, nested(32)));
    assert!(matches!(c.recv(), Frame::Closed(_)));
    // An event name of 256 bytes is dispatched (no handler here: nothing comes back), one of
    // 257 bytes closes the connection; likewise a namespace of 257 bytes.
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.send_text(&format!(r#"42["{}"]"#, "e".repeat(256)));
    c.send_text(r#"42["message","still"]"#);
    assert_eq!(c.recv_text(), r#"42["message-back","still"]"#);
    c.send_text(&format!(r#"42["{}"]"#, "e".repeat(257)));
    assert!(matches!(c.recv(), Frame::Closed(_)));
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.send_text(&format!("40/{},", "n".repeat(256)));
    assert!(matches!(c.recv(), Frame::Closed(_)));
    // More than 10 attachments (socket.io-parser's maxAttachments).
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.send_text(r#"4511-["message"]"#);
    assert!(matches!(c.recv(), Frame::Closed(_)));
    server.wait_until("the four refused packets to be counted", |m| {
        total(m, ShardMetrics::packets_over_limits) == 4
    });
}
