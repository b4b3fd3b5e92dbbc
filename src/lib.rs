//! shardio: a Socket.IO-compatible real-time server. One thread per core, each pinned, each
//! with its own SO_REUSEPORT listener and event loop (a shard); an in-process bus between the
//! shards; a Redis bridge between machines, in the wire format of Node's redis-adapter.
//!
//! # Layout
//!
//! Floors, lowest first; a module uses only modules on its floor or below, and no two files
//! import each other (`tests/it/layout.rs` checks both). `docs/ARCHITECTURE.md` tells the
//! design; `docs/PROTOCOL.md` the wire formats.
//!
//! 1. [`protocol`]: pure codecs, no runtime, no sockets: Engine.IO packets and polling
//!    payloads, Socket.IO packets and their frames, HTTP heads and bodies and the refusals'
//!    statuses, CORS, the Redis adapter's messages. [`config`]: the one configuration tree
//!    and every default. `listener`: the SO_REUSEPORT listener group. [`metrics`]: per-shard
//!    counters (single-writer, summed at scrape) and their Prometheus exposition.
//! 2. `bus`: one bounded inbox per shard and the bridge's queue, carrying typed messages
//!    (`bus::cluster`: what the Socket.IO layers and the bridge say to each other). `connection`:
//!    HTTP/1.1 on a connection, bounded in size and time; the one response writer. `net`: the
//!    one connection type of every layer, plain or TLS, and the hand-off of one to another
//!    shard with its TLS state. [`tls`]: the certificate of `--tls-cert` (re-read on SIGHUP)
//!    and rustls driven like a plain socket.
//! 3. [`engineio`]: Engine.IO sessions and transports (polling, WebSocket, upgrade, hand-off
//!    of requests to the owning shard); knows nothing of Socket.IO or Redis.
//! 4. [`socketio`]: namespaces, sockets, acks, rooms, broadcasts (encoded once, delivered
//!    locally, one bus message per other shard, one to the bridge), cluster-wide operations.
//!    `redis_bridge`: the one bridge thread per process, Node's redis-adapter on the wire.
//! 5. `shard`: the per-core runtime (accept, route, inbox), the [`Endpoint`]s it serves and
//!    the fixed files it answers itself (the vendored socket.io-client bundle, pages);
//!    `server`: binds, starts the bridge and the shards, waits for the shutdown future,
//!    drains, joins ([`Server`]). [`gateway`]: the default app (join, leave, publish), its
//!    room policy and its demo page; [`auth`]: JWT verification of the CONNECT token
//!    (jsonwebtoken), keys re-read on SIGHUP; `api`: the HTTP API for backends (`/api/v1/`);
//!    `ops`: `/metrics`, `/healthz`, `/readyz`. [`conformance`]: the upstream conformance
//!    suites' apps.
//!
//! The library API is what this file exports: the public modules above and the re-exports
//! below. Everything else is internal (`pub(crate)`).

mod api;
pub mod auth;
pub mod config;
pub mod conformance;
pub mod engineio;
pub mod gateway;
pub mod metrics;
pub mod protocol;
pub mod socketio;
pub mod tls;

mod bus;
mod connection;
mod listener;
mod net;
mod ops;
mod redis_bridge;
mod server;
mod shard;

pub use config::Config;
pub use server::{Server, ServerError};
pub use shard::{App, Endpoint};

/// Internals exposed for `benches/micro.rs` only; not part of the API and not stable.
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;

    use crate::bus::cluster::{BroadcastOpts, Origin, RemoteBroadcast, SioMsg};
    use crate::bus::inbox::Inbox;
    use crate::bus::{Bus, ShardMsg};
    use crate::metrics::Metrics;
    use crate::protocol::frame::OutFrame;

    pub use crate::socketio::room::RoomIndex;

    /// Shard 0's end of a two-shard bus: sends one remote broadcast of the same frames per
    /// call, as the fan-out does.
    #[allow(missing_debug_implementations)] // a benchmark fixture
    pub struct BusSender {
        bus: Bus,
        broadcast: Arc<RemoteBroadcast>,
    }

    impl BusSender {
        /// Sends the broadcast to shard 1; false when its inbox is full.
        pub fn send_broadcast(&self) -> bool {
            let msg = ShardMsg::SocketIo {
                from: Origin::Shard(0),
                endpoint: 0,
                msg: SioMsg::Broadcast(self.broadcast.clone()),
            };
            self.bus.send(0, 1, msg).is_ok()
        }
    }

    /// Shard 1's inbox.
    #[allow(missing_debug_implementations)] // a benchmark fixture
    pub struct BusInbox {
        inbox: Inbox,
        batch: Vec<ShardMsg>,
    }

    impl BusInbox {
        /// Takes up to `limit` parcels as the shard does, and drops them; 0 once every sender
        /// is gone.
        pub async fn recv_many(&mut self, limit: usize) -> usize {
            let n = self.inbox.recv(&mut self.batch, limit).await;
            self.batch.clear();
            n.map_or(0, |taken| taken.messages)
        }
    }

    /// A two-shard bus whose inboxes hold `capacity` messages, carrying broadcasts of `frames`.
    pub fn bus(capacity: usize, frames: Vec<OutFrame>) -> (BusSender, BusInbox) {
        let (bus, mut inboxes) = Bus::new(2, capacity, Arc::new(Metrics::new(2)));
        let inbox = BusInbox {
            inbox: inboxes.swap_remove(1),
            batch: Vec::with_capacity(64),
        };
        let broadcast = Arc::new(RemoteBroadcast {
            nsp: "/".into(),
            opts: BroadcastOpts::default(),
            frames,
            ack: None,
        });
        (BusSender { bus, broadcast }, inbox)
    }
}

/// Internals exposed for the fuzz targets (`fuzz/`) and their corpus test only; not part of
/// the API and not stable. The pure decoders they fuzz are public in [`protocol`]; the
/// WebSocket frame reader is internal to [`engineio`], so it is reached through here.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::engineio::ws_fuzz::{ws_read, WsEvent, WsRun};
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`); colors only on a
/// terminal, so that logs sent to a file or a journal carry no escape codes. A session's lines
/// carry its `sid` and `shard` (its span, entered wherever the session's work runs): in `json`
/// under `span`. The span is made when the session first logs, so that a session that logs
/// nothing costs the subscriber nothing; with a span filter in `RUST_LOG`, when it opens.
///
/// `RUST_LOG` of plain `target=level` directives (the usual case) is read as a
/// [`Targets`](tracing_subscriber::filter::Targets) filter; only one using span or field
/// directives (`[span{field=value}]=level`) gets an `EnvFilter`, which takes a process-wide
/// lock each time any span is entered or left: every poll of every session's task, on every
/// shard.
pub fn init_tracing(format: config::LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let ansi = std::io::stderr().is_terminal();
    let _ = log_subscriber(format, &spec, ansi, std::io::stderr).try_init();
}

/// `init_tracing`'s subscriber, for the filter `spec` (`RUST_LOG`), writing to `writer`.
pub(crate) fn log_subscriber<W>(
    format: config::LogFormat,
    spec: &str,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{fmt, EnvFilter, Layer as _};

    let (targets, dynamic) = if spec.contains(['[', '{']) {
        let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
        (None, Some(filter))
    } else {
        let targets = spec
            .parse::<Targets>()
            .ok()
            .filter(|_| !spec.trim().is_empty())
            .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
        (Some(targets), None)
    };
    let layer = match format {
        config::LogFormat::Text => fmt::layer().with_writer(writer).with_ansi(ansi).boxed(),
        config::LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    // With plain directives a session's span is made when it first logs (the filter does not
    // look at spans); a span filter needs the span before the event, so with the session.
    let span_on_log = engineio::SpanOnLog::new(targets.is_some());
    tracing_subscriber::registry()
        .with(span_on_log)
        .with(targets)
        .with(dynamic)
        .with(layer)
}

/// Something the process re-reads from disk on SIGHUP (the JWT keys, the TLS certificate):
/// its name for the log, and how to re-read it. `reload` says what it loaded (for the log), or
/// why not; on an error the previous one must stay in use.
pub struct Reloadable {
    what: &'static str,
    reload: Box<dyn Fn() -> Result<String, String> + Send>,
}

impl Reloadable {
    /// `what` (e.g. "JWT keys") re-read by `reload`.
    pub fn new(
        what: &'static str,
        reload: impl Fn() -> Result<String, String> + Send + 'static,
    ) -> Self {
        Reloadable {
            what,
            reload: Box::new(reload),
        }
    }

    /// The JWT keys of `verifier`.
    pub fn jwt_keys(verifier: std::sync::Arc<auth::Verifier>) -> Self {
        Reloadable::new("JWT keys", move || {
            let keys = verifier.reload().map_err(|e| e.to_string())?;
            Ok(format!("{keys} keys"))
        })
    }

    /// The TLS certificate and key of `certificates`.
    pub fn tls_certificate(certificates: std::sync::Arc<tls::Certificates>) -> Self {
        Reloadable::new("TLS certificate", move || {
            let fingerprint = certificates.reload().map_err(|e| e.to_string())?;
            Ok(format!("sha256 {fingerprint}"))
        })
    }
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

/// Re-reads every item of `items` on every SIGHUP, in order, for the life of the process, on a
/// thread of its own. The handler is in place when this returns (a SIGHUP would otherwise end
/// the process). An item that fails to reload keeps its previous value and logs why; the
/// others are reloaded all the same.
pub fn reload_on_sighup(items: Vec<Reloadable>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut hangups = runtime.block_on(async { signal(SignalKind::hangup()) })?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            runtime.block_on(async move {
                while hangups.recv().await.is_some() {
                    for item in &items {
                        let what = item.what;
                        match (item.reload)() {
                            Ok(loaded) => tracing::info!(%loaded, "SIGHUP: {what} reloaded"),
                            Err(e) => tracing::error!(
                                error = %e,
                                "SIGHUP: {what} not reloaded, the previous ones stay in use"
                            ),
                        }
                    }
                }
            });
        })?;
    Ok(())
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
