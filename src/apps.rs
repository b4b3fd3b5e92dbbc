//! The applications shardio's binaries serve: the reference test servers of the upstream
//! Engine.IO v4 and Socket.IO v5 conformance suites (SOCKETIO.md §6).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::engineio::{
    CloseReason, Connection, EngineApp, EngineAppFactory, EngineConfig, Message, OutFrame, Session,
    ShardContext,
};
use crate::gateway::{self, GatewayConfig};
use crate::protocol::cors::{AllowedOrigins, CorsPolicy};
use crate::server::Endpoint;
use crate::socketio::{SocketIo, SocketIoConfig};
use crate::Config;

/// The Engine.IO settings a [`Config`] asks for.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(config.ping_interval),
        ping_timeout: Duration::from_millis(config.ping_timeout),
        max_payload: config.max_payload,
        max_buffered_bytes: config.max_buffered_bytes,
        cors: CorsPolicy::from_origins(&config.cors_origins, config.cors_credentials),
        cookie: config.cookie.clone(),
        ..EngineConfig::default()
    }
}

/// A raw Engine.IO endpoint that sends every message back unchanged, text or binary.
pub struct Echo;

impl EngineAppFactory for Echo {
    fn for_shard(&self, _ctx: &ShardContext) -> Rc<dyn EngineApp> {
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
pub fn conformance_socketio(connect_timeout: Duration) -> SocketIo {
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

/// The conformance endpoints with the suites' settings: pingInterval 300, pingTimeout 200,
/// maxPayload 1000000, connectTimeout 1000, CORS origin `*`, both transports. Raw Engine.IO
/// echo on `/engine.io/`, the Socket.IO test app on `/socket.io/`.
pub fn conformance_endpoints() -> Vec<Endpoint> {
    let engine = EngineConfig {
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
        Endpoint {
            path: "/engine.io/".into(),
            engine: engine.clone(),
            app: Arc::new(Echo),
        },
        Endpoint {
            path: "/socket.io/".into(),
            engine,
            app: Arc::new(conformance_socketio(Duration::from_millis(1000))),
        },
    ]
}

/// What `shardio` serves out of the box: the gateway app on `config.path`.
pub fn default_endpoints(config: &Config) -> Vec<Endpoint> {
    let io = gateway::gateway(
        SocketIoConfig {
            connect_timeout: config.connect_timeout(),
            ..SocketIoConfig::default()
        },
        &GatewayConfig {
            namespaces: config.namespaces.clone(),
            max_rooms_per_socket: config.max_rooms_per_socket,
        },
    );
    vec![Endpoint {
        path: config.path.clone(),
        engine: engine_config(config),
        app: Arc::new(io),
    }]
}
