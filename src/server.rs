//! Starts a shardio server: binds every listener first (a bind error fails fast), builds the bus,
//! starts the Redis bridge if configured, then one pinned shard thread per listener, waits for
//! the shutdown future, stops the shards and joins them, and stops the bridge last. The server
//! never reads signals itself; the caller hands it a shutdown future.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::bus::Bus;
use crate::config::{defaults, ApiConfig, LimitsConfig, RedisConfig, RedisMode, RuntimeConfig};
use crate::connection::HttpLimits;
use crate::engineio::Admission;
use crate::listener;
use crate::metrics::Metrics;
use crate::ops::Health;
use crate::redis_bridge::{self, BridgeError, BridgeSetup, RecoveryBounds};
use crate::shard::{self, Endpoint, ShardApi, ShardSetup};
use crate::tls::Certificates;

/// Why the server could not start or did not stop cleanly.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The address is taken or not ours; pick another `--listen`.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The OS refused a thread or runtime; the machine is out of resources.
    #[error("cannot start: {0}")]
    Start(#[from] std::io::Error),
    /// A shard thread failed or panicked; its clients were dropped. See the log.
    #[error("shard {0} stopped unexpectedly")]
    ShardFailed(usize),
    /// The Redis bridge could not start (a malformed `--redis` URL). An unreachable Redis is
    /// not an error: the bridge keeps retrying while the server serves its own clients.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// A server whose listeners are bound and whose shards are not started yet.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<TcpListener>,
    runtime: RuntimeConfig,
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    redis: Option<RedisConfig>,
    limits: LimitsConfig,
    /// The backend API's keys; `None`: the API is off.
    api_keys: Option<Arc<[String]>>,
    /// TLS on the public listeners (`--tls-cert`).
    tls: Option<Arc<Certificates>>,
    /// The listeners of `--internal-listen` (one per shard), with their address.
    internal: Option<(SocketAddr, Vec<TcpListener>)>,
}

impl Server {
    /// Binds one SO_REUSEPORT listener per shard on `runtime.listen`.
    pub fn bind(runtime: &RuntimeConfig) -> Result<Server, ServerError> {
        let count = runtime.shard_count();
        let listeners =
            listener::bind_group(runtime.listen, count).map_err(|source| ServerError::Bind {
                addr: runtime.listen,
                source,
            })?;
        let addr = listeners[0].local_addr()?;
        Ok(Server {
            listeners,
            runtime: runtime.clone(),
            metrics: Arc::new(Metrics::new(count)),
            addr,
            redis: None,
            api_keys: None,
            internal: None,
            limits: LimitsConfig::default(),
            tls: None,
        })
    }

    /// Serves HTTPS and WSS on the public listener with `certificates` (swappable while the
    /// server runs: [`Certificates::reload`]); `None` keeps plain HTTP. The internal listener
    /// of the API stays plain.
    pub fn with_tls(mut self, certificates: Option<Arc<Certificates>>) -> Self {
        self.tls = certificates;
        self
    }

    /// Bounds HTTP requests and new connections as `limits` says (default:
    /// [`LimitsConfig::default`]).
    pub fn with_limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// Serves the backend API (`/api/v1/`) for the first Socket.IO endpoint with these keys
    /// (without any key the API is off), and binds `config.internal_listen` when set (one
    /// listener per shard): the API, `/metrics`, `/healthz` and `/readyz` are served there,
    /// and the API and `/metrics` no longer on the public address.
    pub fn with_api(mut self, config: ApiConfig) -> Result<Self, ServerError> {
        if let Some(addr) = config.internal_listen {
            let listeners = listener::bind_group(addr, self.listeners.len())
                .map_err(|source| ServerError::Bind { addr, source })?;
            self.internal = Some((listeners[0].local_addr()?, listeners));
        }
        if !config.keys.is_empty() {
            self.api_keys = Some(config.keys.into());
        }
        Ok(self)
    }

    /// The address of the internal listeners (`--internal-listen`), with the real port.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().map(|(addr, _)| *addr)
    }

    /// Shares the Socket.IO endpoint's namespaces with other machines through Redis (a no-op
    /// when neither `config.url` nor `config.sentinels` is set). The bridge serves the first endpoint whose app has
    /// namespaces.
    pub fn with_redis(mut self, config: RedisConfig) -> Self {
        self.redis = config.enabled().then_some(config);
        self
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The per-shard counters, readable while the server runs.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs the shards until `shutdown` completes, then drains and joins them: `/readyz`
    /// answers 503 at once, the shards serve on for `--drain-delay`, then close their public
    /// listeners and their sessions (with `--shutdown-timeout` for the sessions to go). Blocks.
    /// The startup line, `shardio listening`, comes once every shard serves.
    pub fn run(
        self,
        endpoints: Vec<Endpoint>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let count = self.listeners.len();
        let cores = if self.runtime.no_pin {
            None
        } else {
            core_affinity::get_core_ids().filter(|c| !c.is_empty())
        };
        let tls = self.tls.as_ref().map(Certificates::server_config);
        let (mut bus, inboxes) = Bus::new(count, self.runtime.bus_capacity, self.metrics.clone());
        // How long an API question waits for the other shards and machines.
        let api_timeout = self.redis.as_ref().map_or(
            Duration::from_millis(defaults::REDIS_REQUESTS_TIMEOUT_MS),
            |r| r.requests_timeout(),
        );
        let mut internal = match self.internal {
            Some((addr, listeners)) => {
                let api = if self.api_keys.is_some() { "on" } else { "off (no --api-key)" };
                tracing::info!(address = %addr, api, "internal listener: /metrics, /healthz, /readyz, the API");
                listeners.into_iter().map(Some).collect()
            }
            None => Vec::new(),
        }
        .into_iter();
        let api_keys = self.api_keys;
        let (bridge, bridged) = match self.redis {
            Some(config) => match start_bridge(config, &endpoints, &mut bus, &self.metrics)? {
                Some((handle, endpoint, mode)) => (Some(handle), Some((endpoint, mode))),
                None => (None, None),
            },
            None => (None, None),
        };
        let health = Arc::new(Health::new(self.metrics.clone(), bridge.is_some()));
        let endpoints = Arc::new(endpoints);
        let admission = Arc::new(Admission::new(
            self.limits.max_connections,
            self.limits.max_handshakes_per_second,
        ));
        let http = HttpLimits::new(&self.limits);
        let (stop_tx, stop_rx) = watch::channel(false);
        // Each shard reports its exit here, so a dead shard stops the server instead of
        // leaving it half up.
        let (exit_tx, mut exit_rx) = mpsc::channel::<usize>(count);
        // Each shard says here when it serves; the startup line waits for all of them.
        let (started_tx, mut started_rx) = mpsc::channel::<usize>(count);
        let mut threads = Vec::with_capacity(count);
        for (id, (listener, inbox)) in self.listeners.into_iter().zip(inboxes).enumerate() {
            let setup = ShardSetup {
                id,
                count,
                core: cores.as_ref().map(|c| c[id % c.len()]),
                listener,
                endpoints: endpoints.clone(),
                bridged,
                metrics: self.metrics.clone(),
                bus: bus.clone(),
                inbox,
                stop: stop_rx.clone(),
                shutdown_timeout: self.runtime.shutdown_timeout(),
                api: api_keys.clone().map(|keys| ShardApi {
                    keys,
                    timeout: api_timeout,
                }),
                internal: internal.next().flatten(),
                health: health.clone(),
                admission: admission.clone(),
                http,
                tls: tls.clone(),
                started: started_tx.clone(),
            };
            let exit = ExitNotice(exit_tx.clone(), id);
            let handle = thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    let _exit = exit;
                    shard::run(setup)
                })?;
            threads.push(handle);
        }
        drop(exit_tx);
        drop(started_tx);

        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let drain_delay = self.runtime.drain_delay();
        let (addr, pinning, tls_on) = (
            self.addr,
            if cores.is_some() { "on" } else { "off" },
            if self.tls.is_some() { "on" } else { "off" },
        );
        let failed = waiter.block_on(async {
            let mut shutdown = std::pin::pin!(shutdown);
            // The startup line once every shard serves: from then on the process holds every
            // descriptor it keeps, and needs one more per connection only.
            let all_started = async {
                for _ in 0..count {
                    if started_rx.recv().await.is_none() {
                        // A shard ended before serving: its exit notice says which.
                        std::future::pending::<()>().await;
                    }
                }
            };
            let stopped_early = tokio::select! {
                () = all_started => false,
                () = &mut shutdown => true,
                id = exit_rx.recv() => return id,
            };
            if !stopped_early {
                tracing::info!(
                    shards = count,
                    address = %addr,
                    pinning,
                    tls = tls_on,
                    "shardio listening"
                );
                tokio::select! {
                    () = shutdown => {}
                    id = exit_rx.recv() => return id,
                }
            }
            health.start_draining();
            if !drain_delay.is_zero() {
                tracing::info!(
                    ?drain_delay,
                    "draining: /readyz answers 503; serving on until the delay ends"
                );
                tokio::select! {
                    () = tokio::time::sleep(drain_delay) => {}
                    id = exit_rx.recv() => return id,
                }
            }
            None
        });
        if let Some(id) = failed {
            tracing::error!(shard = id, "shard stopped unexpectedly; shutting down");
        } else {
            tracing::info!("shutting down");
        }
        let _ = stop_tx.send(true);
        let mut result = failed.map_or(Ok(()), |id| Err(ServerError::ShardFailed(id)));
        for (id, handle) in threads.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(shard = id, error = %e, "shard failed");
                    result = Err(ServerError::ShardFailed(id));
                }
                Err(_) => result = Err(ServerError::ShardFailed(id)),
            }
        }
        // Last: the shards may publish until they stop.
        if let Some(bridge) = bridge {
            bridge.stop();
        }
        result
    }
}

/// Starts the bridge for the first Socket.IO endpoint with namespaces; `None` if there is none.
fn start_bridge(
    config: RedisConfig,
    endpoints: &[Endpoint],
    bus: &mut Bus,
    metrics: &Arc<Metrics>,
) -> Result<Option<(redis_bridge::BridgeHandle, usize, RedisMode)>, ServerError> {
    let mut bridged = endpoints
        .iter()
        .enumerate()
        .filter_map(|(i, ep)| Some((i, ep.socketio_app()?)))
        .filter(|(_, io)| !io.namespace_names().is_empty());
    let Some((endpoint, io)) = bridged.next() else {
        tracing::warn!(
            "--redis given, but no endpoint serves Socket.IO namespaces: bridge not started"
        );
        return Ok(None);
    };
    if let Some((other, _)) = bridged.next() {
        tracing::warn!(
            bridged = %endpoints[endpoint].path,
            not_bridged = %endpoints[other].path,
            "the Redis bridge serves one Socket.IO endpoint; the others stay local"
        );
    }
    let queue = bus.attach_bridge(config.queue);
    if config.room_channels() {
        bus.report_room_interest();
    }
    let mode = config.mode;
    let handle = redis_bridge::spawn(BridgeSetup {
        config,
        endpoint,
        namespaces: io.namespace_names(),
        bus: bus.clone(),
        queue,
        metrics: metrics.clone(),
        recovery: io
            .recovery_bounds()
            .map(|(window, session_bytes, cache_bytes)| RecoveryBounds {
                window,
                session_bytes,
                cache_bytes,
            }),
    })?;
    Ok(Some((handle, endpoint, mode)))
}

/// Sends the shard id when dropped: on return and on panic alike.
struct ExitNotice(mpsc::Sender<usize>, usize);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.0.try_send(self.1);
    }
}
