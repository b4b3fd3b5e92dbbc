//! shardio: a Socket.IO-compatible real-time server. One thread per core, each pinned, each
//! with its own SO_REUSEPORT listener and event loop (a shard).
//!
//! # Layout
//!
//! Floors, lowest first; a module uses only modules on its floor or below.
//!
//! - [`protocol`]: pure codecs, no runtime, no sockets: Engine.IO packets and polling
//!   payloads, Socket.IO packets and binary placeholders, HTTP request heads and chunked
//!   bodies, the CORS policy.
//! - [`config`]: the one configuration tree (flags and `SHARDIO_*` variables), defaults, checks.
//! - [`listener`]: the SO_REUSEPORT listener group bound before any shard starts.
//! - [`metrics`]: per-shard counters.
//! - [`bus`]: one bounded inbox per shard, wired at startup; app messages and connection
//!   hand-overs between shards.
//! - [`engineio`]: Engine.IO sessions: ids that carry the owning shard, the bounded outbound
//!   queue, one driver per session (heartbeat, lifetime), the WebSocket transport (reader,
//!   batching writer), the long-polling transport, the upgrade probe, the hand-over of requests
//!   to the owning shard, handshake errors.
//! - [`socketio`]: namespaces, sockets, events, acks and binary attachments on Engine.IO; the
//!   library API for applications; rooms (`RoomIndex`) and broadcasts (encoded once, delivered
//!   locally, one bus message per other shard).
//! - [`http`]: request heads on accepted connections, routing to the endpoints.
//! - [`redis_bridge`]: the one bridge thread per process between the shards and Redis, in
//!   Node's redis-adapter format: publishes broadcasts, delivers other machines' broadcasts,
//!   answers and asks cluster requests, reconnects and probes.
//! - [`shard`]: the per-thread runtime: core pinning, accept loop, drain on shutdown.
//! - [`server`]: binds the listeners, starts the bridge and the shards, waits for the shutdown
//!   future, joins.
//! - [`gateway`]: the default app on the library API: join, leave, publish.
//! - [`apps`]: the applications the binaries serve (the gateway, the conformance test apps).

pub mod apps;
pub mod bus;
pub mod config;
pub mod engineio;
pub mod gateway;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod protocol;
pub mod redis_bridge;
pub mod server;
pub mod shard;
pub mod socketio;

pub use config::Config;
pub use server::{Endpoint, Server};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
