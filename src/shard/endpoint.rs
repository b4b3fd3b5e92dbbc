//! What a server serves: endpoints, each a path and the application behind it.

use std::sync::Arc;

use bytes::Bytes;

use crate::engineio::{EngineAppFactory, EngineConfig};
use crate::socketio::SocketIo;

/// An endpoint: requests whose path starts with `path` go to `app` (for a page, requests for
/// exactly `path`).
#[derive(Debug)]
pub struct Endpoint {
    /// The path prefix, e.g. `/socket.io/`.
    pub path: String,
    /// The endpoint's Engine.IO settings (a page has no use for them).
    pub engine: EngineConfig,
    /// The application behind it.
    pub app: App,
}

/// The application of an endpoint.
#[derive(Clone)]
pub enum App {
    /// A Socket.IO application: its shards talk over the bus, and the Redis bridge (when
    /// configured) shares its namespaces with other machines.
    SocketIo(Arc<SocketIo>),
    /// A raw Engine.IO application; it takes no part in the bus or the bridge.
    Engine(Arc<dyn EngineAppFactory>),
    /// A plain WebSocket echo, without Engine.IO, on the same framing layer (for WebSocket
    /// conformance suites): every message is sent back as it came. Of the endpoint's settings
    /// it uses the WebSocket limits (`max_payload`, `max_buffered_bytes`, `max_fragments`,
    /// `control_frame_rate`).
    WebSocketEcho,
    /// A fixed HTML page (the gateway's demo page), answered to `GET` and `HEAD` of exactly
    /// the endpoint's path; it takes no part in Engine.IO.
    Page(Bytes),
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            App::SocketIo(io) => f.debug_tuple("SocketIo").field(io).finish(),
            App::Engine(_) => f.write_str("Engine(..)"),
            App::WebSocketEcho => f.write_str("WebSocketEcho"),
            App::Page(html) => write!(f, "Page({} bytes)", html.len()),
        }
    }
}

impl Endpoint {
    /// A Socket.IO application on `path`.
    pub fn socketio(path: impl Into<String>, engine: EngineConfig, io: SocketIo) -> Self {
        Endpoint {
            path: path.into(),
            engine,
            app: App::SocketIo(Arc::new(io)),
        }
    }

    /// A raw Engine.IO application on `path`.
    pub fn engine(
        path: impl Into<String>,
        engine: EngineConfig,
        app: impl EngineAppFactory,
    ) -> Self {
        Endpoint {
            path: path.into(),
            engine,
            app: App::Engine(Arc::new(app)),
        }
    }

    /// A plain WebSocket echo on `path` (see [`App::WebSocketEcho`]).
    pub fn websocket_echo(path: impl Into<String>, engine: EngineConfig) -> Self {
        Endpoint {
            path: path.into(),
            engine,
            app: App::WebSocketEcho,
        }
    }

    /// A fixed HTML page at exactly `path` (see [`App::Page`]).
    pub fn page(path: impl Into<String>, html: impl Into<Bytes>) -> Self {
        Endpoint {
            path: path.into(),
            engine: EngineConfig::default(),
            app: App::Page(html.into()),
        }
    }

    /// The Socket.IO application, if that is what the endpoint serves.
    pub(crate) fn socketio_app(&self) -> Option<&SocketIo> {
        match &self.app {
            App::SocketIo(io) => Some(io),
            App::Engine(_) | App::WebSocketEcho | App::Page(_) => None,
        }
    }
}
