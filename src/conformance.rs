//! The reference test servers of the upstream Engine.IO v4 and Socket.IO v5 conformance suites
//! (docs/PROTOCOL.md §6): a raw Engine.IO echo and a Socket.IO test app, with the suites'
//! settings; and a plain WebSocket echo for WebSocket suites (Autobahn's fuzzing client).
//! `examples/conformance.rs` serves them; the integration tests use them too.

use std::rc::Rc;
use std::time::Duration;

use crate::engineio::{
    CloseReason, Connection, EngineApp, EngineAppFactory, EngineConfig, EngineShard, Message,
    OutFrame, Session,
};
use crate::protocol::cors::{AllowedOrigins, CorsPolicy};
use crate::shard::Endpoint;
use crate::socketio::{SocketIo, SocketIoConfig};

/// A raw Engine.IO endpoint that sends every message back unchanged, text or binary.
#[derive(Debug, Clone, Copy)]
pub struct Echo;

impl EngineAppFactory for Echo {
    fn for_shard(&self, _shard: &Rc<EngineShard>) -> Rc<dyn EngineApp> {
        Rc::new(Echo)
    }
}

impl EngineApp for Echo {
    fn open(&self, _session: &Rc<Session>) -> Rc<dyn Connection> {
        Rc::new(Echo)
    }
}

impl Connection for Echo {
    fn on_message(&self, session: &Rc<Session>, message: Message<'_>) {
        let frame = match message {
            Message::Text(text) => OutFrame::text(text.len() + 1, |b| {
                b.push(b'4');
                b.extend_from_slice(text.as_bytes());
            }),
            Message::Binary(data) => OutFrame::binary(data),
        };
        let _ = session.send(&[frame]);
    }

    fn on_close(&self, _session: &Rc<Session>, _reason: CloseReason) {}
}

/// The Socket.IO v5 suite's server: `/` and `/custom` emit `auth` with the CONNECT payload;
/// `/` echoes `message` as `message-back` and acks `message-with-ack` with its arguments.
pub fn socketio_app(connect_timeout: Duration) -> SocketIo {
    let mut io = SocketIo::new(SocketIoConfig {
        connect_timeout,
        ..SocketIoConfig::default()
    });
    io.namespace("/")
        .on_connect(|socket| {
            let _ = socket.emit("auth", socket.auth().clone());
        })
        .on("message", |socket, data, _ack| {
            let _ = socket.emit("message-back", data);
        })
        .on("message-with-ack", |_socket, data, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(data);
            }
        });
    io.namespace("/custom").on_connect(|socket| {
        let _ = socket.emit("auth", socket.auth().clone());
    });
    io
}

/// The largest message of the plain WebSocket echo: Autobahn's biggest cases (9.1.6, 9.2.6)
/// send 16 MiB.
pub const WS_ECHO_MAX_PAYLOAD: usize = 16 << 20;

/// The settings of the plain WebSocket echo on `/ws-echo`: messages up to 16 MiB, room to
/// queue two of them back, and fragments enough for Autobahn's 4 MiB messages in 64-byte
/// frames (case 9.3.1: 65,536 frames). The other limits are the defaults.
pub fn ws_echo_config() -> EngineConfig {
    EngineConfig {
        max_payload: WS_ECHO_MAX_PAYLOAD,
        max_buffered_bytes: 2 * WS_ECHO_MAX_PAYLOAD + 64,
        max_fragments: 1 << 17,
        ..EngineConfig::default()
    }
}

/// The conformance endpoints with the suites' settings: pingInterval 300, pingTimeout 200,
/// maxPayload 1000000, connectTimeout 1000, CORS origin `*`, both transports. Raw Engine.IO
/// echo on `/engine.io/`, the Socket.IO test app on `/socket.io/`, and a plain WebSocket echo
/// (no Engine.IO) on `/ws-echo` ([`ws_echo_config`]).
pub fn endpoints() -> Vec<Endpoint> {
    endpoints_with_compression(false)
}

/// [`endpoints`], accepting WebSocket compression (permessage-deflate) on every endpoint when
/// `websocket_compression` is set, as `--websocket-compression` does.
pub fn endpoints_with_compression(websocket_compression: bool) -> Vec<Endpoint> {
    let engine = EngineConfig {
        websocket_compression,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        cors: Some(CorsPolicy {
            origins: AllowedOrigins::Any,
            credentials: false,
        }),
        ..EngineConfig::default()
    };
    vec![
        Endpoint::engine("/engine.io/", engine.clone(), Echo),
        Endpoint::socketio(
            "/socket.io/",
            engine,
            socketio_app(Duration::from_millis(1000)),
        ),
        Endpoint::websocket_echo(
            "/ws-echo",
            EngineConfig {
                websocket_compression,
                ..ws_echo_config()
            },
        ),
    ]
}
