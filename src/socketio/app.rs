//! The Socket.IO application: [`SocketIo`], built once with its namespaces and handlers, and
//! its instance on each shard, which opens a client per Engine.IO session and routes the bus
//! messages of the other shards and of the bridge to its namespaces.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::broadcast::BroadcastOperator;
use super::client::{Client, ClientLimits, ConnectDeadlines};
use super::link::ClusterLink;
use super::namespace::Namespace;
use super::recovery::{Recovery, RecoveryLimits};
use super::NsShard;
use crate::bus::cluster::{BroadcastOpts, Origin, SioMsg};
use crate::bus::{Bus, Port};
use crate::config::{defaults, Config, RedisMode};
use crate::engineio::{Connection, EngineApp, EngineShard, RateLimit, Session};
use crate::protocol::socketio::DecodeLimits;

/// Socket.IO settings. Defaults are Node's, from [`crate::config::defaults`].
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// A connection that has not sent CONNECT for any namespace by then is closed.
    pub connect_timeout: Duration,
    /// Binary attachments accepted per packet.
    pub max_attachments: usize,
    /// This server's name in the locations of its sockets (`--node-name`).
    pub node_name: String,
    /// Nesting of arrays and objects accepted in a packet's JSON (checked before parsing).
    pub max_json_depth: usize,
    /// Bytes of a namespace or event name accepted in a client's packet.
    pub max_name_length: usize,
    /// Events one client may send per second (0, the default: no limit). Beyond the rate and its burst, an
    /// event is refused: answered with the ack `{"error":"rate limited"}` when it asked for
    /// one, dropped otherwise.
    pub max_event_rate: u32,
    /// Events one client may send at once above the rate; also how many refusals, since the
    /// client last stayed within its rate, close the connection (1008, "policy violation").
    pub max_event_burst: u32,
    /// Serve the official socket.io-client bundle under the endpoint's path (Node's
    /// `serveClient`): `socket.io.js`, `socket.io.min.js`, `socket.io.esm.min.js` and their
    /// source maps.
    pub serve_client: bool,
    /// Connection state recovery: how long a dropped client's session and the packets it
    /// misses are kept (`None`, the default: off).
    pub recovery_window: Option<Duration>,
    /// Bytes of missed packets one recovered session may get back.
    pub recovery_session_bytes: usize,
    /// Bytes the kept sessions and recoverable packets may take in the process.
    pub recovery_process_bytes: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_millis(defaults::CONNECT_TIMEOUT_MS),
            max_attachments: defaults::MAX_ATTACHMENTS,
            node_name: defaults::node_name(),
            max_json_depth: defaults::MAX_JSON_DEPTH,
            max_name_length: defaults::MAX_NAME_LENGTH,
            max_event_rate: defaults::MAX_EVENT_RATE,
            max_event_burst: defaults::MAX_EVENT_BURST,
            serve_client: defaults::SERVE_CLIENT,
            recovery_window: None,
            recovery_session_bytes: defaults::RECOVERY_SESSION_BYTES,
            recovery_process_bytes: defaults::RECOVERY_PROCESS_BYTES,
        }
    }
}

impl SocketIoConfig {
    /// The Socket.IO settings a [`Config`] asks for.
    pub fn from_config(config: &Config) -> Self {
        SocketIoConfig {
            connect_timeout: config.connect_timeout(),
            node_name: config.node_name(),
            max_json_depth: config.max_json_depth,
            max_name_length: config.max_name_length,
            max_event_rate: config.max_event_rate,
            max_event_burst: config.max_event_burst,
            serve_client: config.serve_client,
            recovery_window: config.recovery.window(),
            recovery_session_bytes: config.recovery.session_bytes,
            recovery_process_bytes: config.recovery.process_bytes,
            ..SocketIoConfig::default()
        }
    }

    /// What a client of this app may send.
    fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            decode: DecodeLimits {
                max_attachments: self.max_attachments,
                max_depth: self.max_json_depth,
                max_name_length: self.max_name_length,
            },
            events: RateLimit::new(self.max_event_rate, self.max_event_burst),
        }
    }
}

/// A Socket.IO application: its namespaces and their handlers. Build it, then hand it to
/// [`crate::Server::run`] as an endpoint ([`crate::Endpoint::socketio`]).
///
/// ```no_run
/// use shardio::socketio::{SocketIo, SocketIoConfig};
/// use shardio::protocol::socketio::Payload;
/// use std::time::Duration;
///
/// let mut io = SocketIo::new(SocketIoConfig::default());
/// io.namespace("/")
///     .on_connect(|socket| {
///         let _ = socket.emit("welcome", serde_json::json!({ "id": socket.id().as_str() }));
///     })
///     // Echo every "message" back, and answer the client's ack with the same arguments.
///     .on("message", |socket, data, ack| {
///         let _ = socket.emit("message-back", data.clone());
///         if let Some(ack) = ack {
///             let _ = ack.send(data);
///         }
///     })
///     // Ask the client something and wait for its answer, off the handler.
///     .on("ask", |socket, _data, _ack| {
///         let socket = socket.clone();
///         tokio::task::spawn_local(async move {
///             match socket.emit_with_ack("question", Payload::from("ready?"), Duration::from_secs(5)).await {
///                 Ok(answer) => println!("client said {:?}", answer.first()),
///                 Err(e) => println!("no answer: {e}"),
///             }
///         });
///     })
///     .on_disconnect(|socket, reason| println!("{} left: {}", socket.id(), reason.as_str()));
/// ```
#[derive(Default)]
pub struct SocketIo {
    config: SocketIoConfig,
    namespaces: HashMap<String, Arc<Namespace>>,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("config", &self.config)
            .field("namespaces", &self.namespace_names())
            .finish()
    }
}

impl SocketIo {
    /// An application with no namespace yet.
    pub fn new(config: SocketIoConfig) -> Self {
        SocketIo {
            config,
            namespaces: HashMap::new(),
        }
    }

    /// The namespace `name` (e.g. `/` or `/admin`), created on first use. Clients may only
    /// connect to registered namespaces.
    pub fn namespace(&mut self, name: &str) -> &mut Namespace {
        let ns = self.namespaces.entry(name.to_string()).or_default();
        // The builder is the only holder until the app starts; were it shared, the copy would
        // be edited (handlers are `Arc`s, so that is cheap) rather than panicking.
        Arc::make_mut(ns)
    }

    /// The registered namespaces, sorted: what the Redis bridge shares with other machines.
    pub fn namespace_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.namespaces.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Whether the app recovers connection state ([`SocketIoConfig::recovery_window`]).
    pub fn recovers(&self) -> bool {
        self.config.recovery_window.is_some()
    }

    /// With recovery on: the window, the bytes of missed packets one session may get back,
    /// and the bytes recovery may take in the process.
    pub(crate) fn recovery_bounds(&self) -> Option<(Duration, usize, usize)> {
        let window = self.config.recovery_window?;
        let c = &self.config;
        Some((window, c.recovery_session_bytes, c.recovery_process_bytes))
    }

    /// Whether the client bundle is served under the endpoint's path
    /// ([`SocketIoConfig::serve_client`]).
    pub fn serves_client(&self) -> bool {
        self.config.serve_client
    }

    /// The application's instance on shard `shard`, as endpoint `endpoint`; `bridged`: the
    /// Redis bridge's mode when it serves this endpoint (in streams mode the recovery sessions
    /// are kept in Redis); `port`: the shard's outbox and interest marks, shared by its
    /// endpoints.
    pub(crate) fn for_shard(
        &self,
        shard: &Rc<EngineShard>,
        bus: Bus,
        endpoint: usize,
        bridged: Option<RedisMode>,
        port: Port,
    ) -> Rc<SioShard> {
        let shards = bus.shards();
        let in_redis = bridged == Some(RedisMode::Streams);
        let link = Rc::new(ClusterLink::new(
            bus,
            shard.id,
            endpoint,
            bridged.is_some(),
            port,
        ));
        let connect_deadlines = Rc::new(ConnectDeadlines::default());
        tokio::task::spawn_local(connect_deadlines.clone().enforce());
        let node: Rc<str> = Rc::from(self.config.node_name.as_str());
        let recovery = self.config.recovery_window.map(|window| {
            let limits = RecoveryLimits {
                window,
                session_bytes: self.config.recovery_session_bytes,
                shard_bytes: self.config.recovery_process_bytes / shards.max(1),
            };
            Recovery::new(limits, shard.id, shards, in_redis)
        });
        let namespaces = self
            .namespaces
            .iter()
            .map(|(name, def)| {
                let ns = NsShard::new(
                    name.clone(),
                    def.clone(),
                    link.clone(),
                    node.clone(),
                    recovery.clone(),
                );
                (name.clone(), Rc::new(ns))
            })
            .collect();
        Rc::new(SioShard {
            limits: Rc::new(self.config.client_limits()),
            config: self.config.clone(),
            engine: shard.clone(),
            connect_deadlines,
            namespaces: Rc::new(namespaces),
        })
    }
}

/// The Socket.IO state of one endpoint on one shard.
pub(crate) struct SioShard {
    config: SocketIoConfig,
    /// Shared with every client of the shard.
    limits: Rc<ClientLimits>,
    engine: Rc<EngineShard>,
    connect_deadlines: Rc<ConnectDeadlines>,
    /// Shared with every client of the shard (never copied per connection).
    namespaces: Rc<HashMap<String, Rc<NsShard>>>,
}

impl SioShard {
    /// A broadcast operator on namespace `nsp` of this shard (for the backend API), if the
    /// application serves it.
    pub(crate) fn operator(&self, nsp: &str) -> Option<BroadcastOperator> {
        let ns = self.namespaces.get(nsp)?;
        Some(BroadcastOperator::new(ns.clone(), BroadcastOpts::default()))
    }

    /// A message from another shard or the bridge, for one of this endpoint's namespaces.
    pub(crate) fn on_bus(&self, from: Origin, msg: SioMsg) {
        match self.namespaces.get(msg.nsp()) {
            Some(ns) => ns.on_bus(from, msg),
            // Every shard serves the same namespaces, and the bridge only those: a bug.
            None => tracing::warn!(
                nsp = msg.nsp(),
                ?from,
                "bus message for an unknown namespace dropped"
            ),
        }
    }
}

impl EngineApp for SioShard {
    fn open(&self, session: &Rc<Session>) -> Rc<dyn Connection> {
        let client = Rc::new_cyclic(|me| {
            Client::new(
                me.clone(),
                self.namespaces.clone(),
                self.engine.clone(),
                self.limits.clone(),
            )
        });
        self.connect_deadlines
            .watch(&client, session, self.config.connect_timeout);
        client
    }
}
