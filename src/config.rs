//! The one configuration tree: command-line flags, each also readable from a `SHARDIO_*`
//! environment variable. Defaults live here and only here ([`defaults`]): the flags and the
//! library's `Default` impls (`EngineConfig`, `SocketIoConfig`) read them from there.
//! `validate` runs once at startup.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser};
use thiserror::Error;

/// Every default of shardio, in one place. Times are in milliseconds, sizes in bytes.
pub mod defaults {
    /// `--listen`.
    pub const LISTEN: &str = "0.0.0.0:3000";
    /// `--shutdown-timeout`: how long shutdown waits for sessions to drain.
    pub const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
    /// `--bus-capacity`: messages each shard's bus inbox holds.
    pub const BUS_CAPACITY: usize = 16 * 1024;
    /// `--path`: the HTTP path of the Socket.IO endpoint.
    pub const PATH: &str = "/socket.io/";
    /// `--ping-interval`: Engine.IO's server ping period (Node's `pingInterval`).
    pub const PING_INTERVAL_MS: u64 = 25_000;
    /// `--ping-timeout`: how long a pong may take (Node's `pingTimeout`).
    pub const PING_TIMEOUT_MS: u64 = 20_000;
    /// `--max-payload`: the largest message a client may send (Node's `maxHttpBufferSize`).
    pub const MAX_PAYLOAD: usize = 1_000_000;
    /// `--max-buffered-bytes`: outbound bytes queued per session before it is disconnected as
    /// a slow consumer.
    pub const MAX_BUFFERED_BYTES: usize = 1 << 20;
    /// How long a WebSocket upgrading a polling session may take to send the upgrade packet
    /// (Node's `upgradeTimeout`). Not a flag.
    pub const UPGRADE_TIMEOUT_MS: u64 = 10_000;
    /// `--connect-timeout`: time a connection has to join a namespace (Node's `connectTimeout`).
    pub const CONNECT_TIMEOUT_MS: u64 = 45_000;
    /// Binary attachments accepted per Socket.IO packet (socket.io-parser's `maxAttachments`).
    /// Not a flag.
    pub const MAX_ATTACHMENTS: usize = 10;
    /// `--max-rooms-per-socket`: rooms one gateway client may join.
    pub const MAX_ROOMS_PER_SOCKET: usize = 128;
    /// `--redis-prefix`: Node's adapter `key` option.
    pub const REDIS_PREFIX: &str = "socket.io";
    /// `--redis-requests-timeout` (Node's `requestsTimeout`).
    pub const REDIS_REQUESTS_TIMEOUT_MS: u64 = 5_000;
    /// `--redis-queue`: messages the shards may queue for the Redis bridge.
    pub const REDIS_QUEUE: usize = 16 * 1024;
    /// `--redis-probe-interval`.
    pub const REDIS_PROBE_INTERVAL_MS: u64 = 2_000;
    /// `--redis-reconnect-max`: the longest wait between two reconnection attempts.
    pub const REDIS_RECONNECT_MAX_MS: u64 = 2_000;
    /// The shortest wait between two connection attempts to Redis (and the first one), so a
    /// dead Redis never makes the bridge spin. Not a flag.
    pub const REDIS_RECONNECT_MIN_MS: u64 = 250;
    /// `--jwt-leeway`: seconds of clock skew allowed on `exp` and `nbf`.
    pub const JWT_LEEWAY_S: u64 = 5;
    /// `--client-publish`: clients may publish (the gateway's `publish` event).
    pub const CLIENT_PUBLISH: bool = true;
    /// `--node-name` when not given: the machine's host name, else this.
    pub const NODE_NAME: &str = "shardio";

    /// The default `--node-name`: the host name the kernel reports.
    pub fn node_name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| NODE_NAME.to_owned())
    }
    /// `--ws-max-fragments`: frames one WebSocket message may come in. Browsers and Node's `ws`
    /// never fragment what they send, and libraries that do use fragments of kilobytes: 1024
    /// fragments of a 1 MB message average 1 KB each.
    pub const WS_MAX_FRAGMENTS: usize = 1024;
    /// `--ws-control-rate`: WebSocket control frames (pings, pongs) one client may send per
    /// second, in bursts of as many. Browsers cannot send any; other clients ping every few
    /// seconds.
    pub const WS_CONTROL_RATE: u32 = 20;
    /// `--max-json-depth`: nesting of arrays and objects in a Socket.IO packet's JSON, checked
    /// before it is parsed (serde_json's own limit is 128, reached by recursion).
    pub const MAX_JSON_DEPTH: usize = 32;
    /// `--max-name-length`: bytes of a namespace name or an event name in a client's packet.
    pub const MAX_NAME_LENGTH: usize = 256;
    /// `--max-event-rate`: Socket.IO events one client may send per second; 0, the default,
    /// is no limit. Off by default because one connection may rightly carry a great many: a
    /// backend that publishes through the gateway, a benchmark publisher (tens of thousands a
    /// second flat out). Browser-facing deployments should set it (e.g. 100).
    pub const MAX_EVENT_RATE: u32 = 0;
    /// `--max-event-burst`: events one client may send at once above the rate; also how many
    /// refused events (since the client last stayed within its rate) close the connection.
    pub const MAX_EVENT_BURST: u32 = 200;
    /// `--max-head-bytes`: the largest HTTP request head (request line and headers).
    pub const MAX_HEAD_BYTES: usize = 16 * 1024;
    /// `--max-headers`: header lines one HTTP request may carry.
    pub const MAX_HEADERS: usize = 100;
    /// `--head-timeout`: time a client has to send a complete request head; also how long a
    /// kept-alive connection may idle between two requests.
    pub const HEAD_TIMEOUT_MS: u64 = 10_000;
    /// `--body-timeout`: time a client has to send a complete request body (a polling POST),
    /// however it trickles. 30 s lets a body of the default `--max-payload` (1 MB) through at
    /// 33 KB/s (267 kbit/s, below a weak 3G link), and a typical POST of a few hundred bytes
    /// at a few bytes per second; Node's whole-request limit (`server.requestTimeout`) is
    /// 300 s, too long to hold a descriptor for a client that never finishes.
    pub const BODY_TIMEOUT_MS: u64 = 30_000;
    /// `--max-connections`: Engine.IO sessions (client connections) one process holds. Just
    /// under the 1,048,576 descriptors the systemd unit allows, so that a full server answers
    /// 503 instead of running out of descriptors.
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// `--max-handshakes-per-second`: new sessions one process opens per second, in bursts of
    /// as many. At the measured 11,600 handshakes per CPU second (benches/RESULTS.md) this is
    /// under two cores' worth: a reconnection storm cannot take every core of a large machine
    /// from the clients already connected, and one core never reaches it.
    pub const MAX_HANDSHAKES_PER_SECOND: u32 = 20_000;
}

/// How the process runs: where it listens, how many shards, pinning, shutdown.
#[derive(Debug, Clone, Args)]
pub struct RuntimeConfig {
    /// Address every shard listens on (SO_REUSEPORT). Port 0 picks a free port.
    #[arg(long, env = "SHARDIO_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Number of shard threads. Default: the number of available cores.
    #[arg(long, env = "SHARDIO_SHARDS")]
    pub shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long, env = "SHARDIO_NO_PIN")]
    pub no_pin: bool,
    /// Drain deadline on SIGINT/SIGTERM, in milliseconds.
    #[arg(
        long,
        env = "SHARDIO_SHUTDOWN_TIMEOUT",
        default_value_t = defaults::SHUTDOWN_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub shutdown_timeout: u64,
    /// Messages each shard's bus inbox holds; a full inbox refuses (counts and logs) instead
    /// of blocking the sender.
    #[arg(long, env = "SHARDIO_BUS_CAPACITY", default_value_t = defaults::BUS_CAPACITY, value_name = "MESSAGES")]
    pub bus_capacity: usize,
}

impl RuntimeConfig {
    /// The shard count in effect.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// `--shutdown-timeout` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout)
    }

    /// Checks the runtime settings; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bus_capacity == 0 {
            return Err(ConfigError::Zero("bus-capacity"));
        }
        match self.shard_count() {
            1..=MAX_SHARDS => Ok(()),
            n => Err(ConfigError::Shards(n)),
        }
    }
}

/// The Redis bridge to other machines (`--redis`), wire-compatible with Node's
/// `@socket.io/redis-adapter` and `@socket.io/redis-emitter`. Off without `--redis`.
#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`; turns the bridge on. Default: off, the
    /// process serves its own clients only.
    #[arg(long = "redis", env = "SHARDIO_REDIS", value_name = "URL")]
    pub url: Option<String>,
    /// Channel prefix, Node's `key` option: every server of a cluster must use the same.
    #[arg(
        long = "redis-prefix",
        env = "SHARDIO_REDIS_PREFIX",
        default_value = defaults::REDIS_PREFIX
    )]
    pub prefix: String,
    /// How long a cluster request (fetchSockets, allRooms, acks, ...) waits for the other
    /// servers, in milliseconds (Node's `requestsTimeout`).
    #[arg(
        long = "redis-requests-timeout",
        env = "SHARDIO_REDIS_REQUESTS_TIMEOUT",
        default_value_t = defaults::REDIS_REQUESTS_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub requests_timeout: u64,
    /// Messages the shards may queue for the bridge; a full queue drops (counted, logged).
    #[arg(
        long = "redis-queue",
        env = "SHARDIO_REDIS_QUEUE",
        default_value_t = defaults::REDIS_QUEUE,
        value_name = "MESSAGES"
    )]
    pub queue: usize,
    /// How often a probe goes through Redis and back, in milliseconds. A probe not back by the
    /// next one means the subscription is dead: the bridge reconnects.
    #[arg(
        long = "redis-probe-interval",
        env = "SHARDIO_REDIS_PROBE_INTERVAL",
        default_value_t = defaults::REDIS_PROBE_INTERVAL_MS,
        value_name = "MS"
    )]
    pub probe_interval: u64,
    /// Longest wait between reconnection attempts, in milliseconds; the first waits 250 ms and
    /// each failure doubles it up to this.
    #[arg(
        long = "redis-reconnect-max",
        env = "SHARDIO_REDIS_RECONNECT_MAX",
        default_value_t = defaults::REDIS_RECONNECT_MAX_MS,
        value_name = "MS"
    )]
    pub reconnect_max: u64,
}

impl RedisConfig {
    /// The shortest wait between two connection attempts (see [`defaults`]).
    pub const RECONNECT_MIN: Duration = Duration::from_millis(defaults::REDIS_RECONNECT_MIN_MS);

    /// The bridge for `url`, other settings at their defaults.
    pub fn new(url: impl Into<String>) -> Self {
        let mut config = RedisConfig::parse_default();
        config.url = Some(url.into());
        config
    }

    fn parse_default() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            redis: RedisConfig,
        }
        Only::parse_from(["shardio"]).redis
    }

    /// `--redis-requests-timeout` as a duration.
    pub fn requests_timeout(&self) -> Duration {
        Duration::from_millis(self.requests_timeout)
    }

    /// `--redis-probe-interval` as a duration.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval)
    }

    /// `--redis-reconnect-max` as a duration, never under [`Self::RECONNECT_MIN`].
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max).max(Self::RECONNECT_MIN)
    }

    /// Checks the Redis settings; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            if !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(ConfigError::RedisUrl(url.clone()));
            }
        }
        if self.prefix.is_empty() {
            return Err(ConfigError::Zero("redis-prefix length"));
        }
        for (name, value) in [
            ("redis-requests-timeout", self.requests_timeout),
            ("redis-queue", self.queue as u64),
            ("redis-probe-interval", self.probe_interval),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

/// Bounds on what one HTTP request and the process's new connections may take (see the
/// README's "Limits and failure behaviour").
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Largest HTTP request head (request line and headers), in bytes; larger ones get 431.
    #[arg(
        long = "max-head-bytes",
        env = "SHARDIO_MAX_HEAD_BYTES",
        default_value_t = defaults::MAX_HEAD_BYTES,
        value_name = "BYTES"
    )]
    pub max_head_bytes: usize,
    /// Header lines one HTTP request may carry; more get 431.
    #[arg(
        long = "max-headers",
        env = "SHARDIO_MAX_HEADERS",
        default_value_t = defaults::MAX_HEADERS,
        value_name = "N"
    )]
    pub max_headers: usize,
    /// Time a client has to send a complete request head, in milliseconds (408 after it); also
    /// how long a kept-alive connection may idle between requests.
    #[arg(
        long = "head-timeout",
        env = "SHARDIO_HEAD_TIMEOUT",
        default_value_t = defaults::HEAD_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub head_timeout: u64,
    /// Time a client has to send a complete request body, in milliseconds (408 after it).
    #[arg(
        long = "body-timeout",
        env = "SHARDIO_BODY_TIMEOUT",
        default_value_t = defaults::BODY_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub body_timeout: u64,
    /// Client connections (Engine.IO sessions) the process holds; a handshake beyond gets 503.
    /// 0: no limit.
    #[arg(
        long = "max-connections",
        env = "SHARDIO_MAX_CONNECTIONS",
        default_value_t = defaults::MAX_CONNECTIONS,
        value_name = "N"
    )]
    pub max_connections: usize,
    /// New sessions the process opens per second (in bursts of as many); a handshake beyond
    /// gets 503. 0: no limit.
    #[arg(
        long = "max-handshakes-per-second",
        env = "SHARDIO_MAX_HANDSHAKES_PER_SECOND",
        default_value_t = defaults::MAX_HANDSHAKES_PER_SECOND,
        value_name = "N"
    )]
    pub max_handshakes_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            limits: LimitsConfig,
        }
        Only::parse_from(["shardio"]).limits
    }
}

impl LimitsConfig {
    /// `--head-timeout` as a duration.
    pub fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.head_timeout)
    }

    /// `--body-timeout` as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout)
    }

    /// Checks the limits; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("max-head-bytes", self.max_head_bytes as u64),
            ("max-headers", self.max_headers as u64),
            ("head-timeout", self.head_timeout),
            ("body-timeout", self.body_timeout),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

/// Shard indexes are one byte of every session id.
pub const MAX_SHARDS: usize = 255;

/// The shardio server's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "shardio",
    version,
    about = "A Socket.IO-compatible real-time server: one pinned shard per core"
)]
pub struct Config {
    /// Where and how the process runs.
    #[command(flatten)]
    pub runtime: RuntimeConfig,
    /// HTTP path of the Socket.IO endpoint.
    #[arg(long, env = "SHARDIO_PATH", default_value = defaults::PATH)]
    pub path: String,
    /// Engine.IO ping interval, in milliseconds.
    #[arg(
        long,
        env = "SHARDIO_PING_INTERVAL",
        default_value_t = defaults::PING_INTERVAL_MS,
        value_name = "MS"
    )]
    pub ping_interval: u64,
    /// Engine.IO ping timeout, in milliseconds.
    #[arg(
        long,
        env = "SHARDIO_PING_TIMEOUT",
        default_value_t = defaults::PING_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub ping_timeout: u64,
    /// Largest message a client may send, in bytes (Engine.IO `maxPayload`).
    #[arg(
        long,
        env = "SHARDIO_MAX_PAYLOAD",
        default_value_t = defaults::MAX_PAYLOAD,
        value_name = "BYTES"
    )]
    pub max_payload: usize,
    /// Time a client has to connect to a namespace after the handshake, in milliseconds.
    #[arg(
        long,
        env = "SHARDIO_CONNECT_TIMEOUT",
        default_value_t = defaults::CONNECT_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub connect_timeout: u64,
    /// Outbound bytes queued for one client before it is disconnected as a slow consumer.
    #[arg(long, env = "SHARDIO_MAX_BUFFERED_BYTES", default_value_t = defaults::MAX_BUFFERED_BYTES, value_name = "BYTES")]
    pub max_buffered_bytes: usize,
    /// A namespace the gateway serves besides `/` (repeatable).
    #[arg(
        long = "namespace",
        env = "SHARDIO_NAMESPACES",
        value_delimiter = ',',
        value_name = "NSP"
    )]
    pub namespaces: Vec<String>,
    /// Rooms one client may join (its own id room not counted).
    #[arg(
        long,
        env = "SHARDIO_MAX_ROOMS_PER_SOCKET",
        default_value_t = defaults::MAX_ROOMS_PER_SOCKET,
        value_name = "N"
    )]
    pub max_rooms_per_socket: usize,
    /// An origin allowed to use the endpoint cross-origin (CORS); repeat it for several, or
    /// give `*` for any. Default: none (CORS off).
    #[arg(
        long = "cors-origin",
        env = "SHARDIO_CORS_ORIGIN",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// Allow credentialed cross-origin requests: the request's exact origin is echoed and
    /// `Access-Control-Allow-Credentials: true` is sent. Needs `--cors-origin`.
    #[arg(long, env = "SHARDIO_CORS_CREDENTIALS")]
    pub cors_credentials: bool,
    /// Set a cookie NAME, whose value is the session id (`Path=/; HttpOnly; SameSite=Lax`), on
    /// the handshake response, for load balancers that stick by cookie. Default: no cookie.
    #[arg(long, env = "SHARDIO_COOKIE", value_name = "NAME")]
    pub cookie: Option<String>,
    /// The Redis bridge to other machines.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Frames one WebSocket message may come in; more close the connection with 1008.
    #[arg(
        long,
        env = "SHARDIO_WS_MAX_FRAGMENTS",
        default_value_t = defaults::WS_MAX_FRAGMENTS,
        value_name = "N"
    )]
    pub ws_max_fragments: usize,
    /// WebSocket control frames (pings, pongs) one client may send per second, in bursts of as
    /// many; faster closes the connection with 1008. 0: no limit.
    #[arg(
        long,
        env = "SHARDIO_WS_CONTROL_RATE",
        default_value_t = defaults::WS_CONTROL_RATE,
        value_name = "N"
    )]
    pub ws_control_rate: u32,
    /// Nesting of arrays and objects accepted in a Socket.IO packet's JSON.
    #[arg(
        long,
        env = "SHARDIO_MAX_JSON_DEPTH",
        default_value_t = defaults::MAX_JSON_DEPTH,
        value_name = "N"
    )]
    pub max_json_depth: usize,
    /// Bytes of a namespace or event name accepted in a Socket.IO packet.
    #[arg(
        long,
        env = "SHARDIO_MAX_NAME_LENGTH",
        default_value_t = defaults::MAX_NAME_LENGTH,
        value_name = "BYTES"
    )]
    pub max_name_length: usize,
    /// Socket.IO events one client may send per second; 0 (the default): no limit. See
    /// `--max-event-burst`.
    #[arg(
        long,
        env = "SHARDIO_MAX_EVENT_RATE",
        default_value_t = defaults::MAX_EVENT_RATE,
        value_name = "N"
    )]
    pub max_event_rate: u32,
    /// Events one client may send at once above `--max-event-rate`. Events beyond are refused
    /// (an error ack when they ask for one, else dropped); more refusals than this since the
    /// client last stayed within its rate close the connection with 1008.
    #[arg(
        long,
        env = "SHARDIO_MAX_EVENT_BURST",
        default_value_t = defaults::MAX_EVENT_BURST,
        value_name = "N"
    )]
    pub max_event_burst: u32,
    /// Bounds on HTTP requests and on new connections.
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Who may connect, join and publish.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// The HTTP API for backends.
    #[command(flatten)]
    pub api: ApiConfig,
    /// This machine's name in presence answers (`GET /api/v1/rooms/<room>`). Default: the
    /// host name.
    #[arg(long, env = "SHARDIO_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
}

/// Who may connect, join and publish: JWT verification of the CONNECT `auth.token`, the room
/// policy its claims carry, and the Origin allow-list. Without any JWT option the gateway is
/// open (anyone may join and publish anywhere), as a development default.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthConfig {
    /// An HMAC secret for HS256/384/512 tokens (repeatable, for rotation). Prefer
    /// `--jwt-secret-file` or the environment: a flag shows in the process list.
    #[arg(
        long = "jwt-secret",
        env = "SHARDIO_JWT_SECRET",
        value_delimiter = ',',
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secrets: Vec<String>,
    /// A file holding an HMAC secret (repeatable); re-read on SIGHUP. Trailing newlines are
    /// not part of the secret.
    #[arg(
        long = "jwt-secret-file",
        env = "SHARDIO_JWT_SECRET_FILE",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub jwt_secret_files: Vec<String>,
    /// A PEM public key (RSA: RS/PS256-512, EC: ES256/384, Ed25519: EdDSA), optionally named by
    /// the key id tokens carry in their `kid` header: `KID=PATH` (repeatable); re-read on
    /// SIGHUP.
    #[arg(
        long = "jwt-public-key",
        env = "SHARDIO_JWT_PUBLIC_KEY",
        value_delimiter = ',',
        value_name = "[KID=]PATH"
    )]
    pub jwt_public_keys: Vec<String>,
    /// The `aud` a token must carry. Default: not checked.
    #[arg(long, env = "SHARDIO_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// The `iss` a token must carry. Default: not checked.
    #[arg(long, env = "SHARDIO_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "SHARDIO_JWT_LEEWAY", default_value_t = defaults::JWT_LEEWAY_S, value_name = "SECONDS")]
    pub jwt_leeway: u64,
    /// Close a connection when its token expires (the client gets `connect_error` with
    /// "token expired"). Default: a token is checked when the client connects only.
    #[arg(long, env = "SHARDIO_JWT_EXPIRE_CONNECTIONS")]
    pub jwt_expire_connections: bool,
    /// Whether clients may publish (`on`), or only the backend API (`off`).
    #[arg(
        long,
        env = "SHARDIO_CLIENT_PUBLISH",
        default_value_t = defaults::CLIENT_PUBLISH,
        action = clap::ArgAction::Set,
        value_parser = parse_on_off,
        value_name = "on|off"
    )]
    pub client_publish: bool,
    /// An origin allowed to connect (repeatable; exact, case-insensitive, e.g.
    /// `https://app.example.com`). Requests with another `Origin` get 403 before any session
    /// exists; requests without one (non-browser clients) are allowed. Default: any origin.
    #[arg(
        long = "allowed-origin",
        env = "SHARDIO_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,
}

impl AuthConfig {
    /// Whether any JWT key is configured (then every CONNECT needs a valid token).
    pub fn jwt_enabled(&self) -> bool {
        !(self.jwt_secrets.is_empty()
            && self.jwt_secret_files.is_empty()
            && self.jwt_public_keys.is_empty())
    }

    /// Checks the settings; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secrets.iter().any(String::is_empty) {
            return Err(ConfigError::Zero("jwt-secret length"));
        }
        let origin = |o: &String| {
            let o = o.to_ascii_lowercase();
            (o.starts_with("http://") || o.starts_with("https://"))
                && !o.contains('*')
                && !o.ends_with('/')
                && !o.bytes().any(|b| b.is_ascii_control() || b == b' ')
        };
        if let Some(bad) = self.allowed_origins.iter().find(|o| !origin(o)) {
            return Err(ConfigError::AllowedOrigin(bad.clone()));
        }
        Ok(())
    }
}

/// `on`/`off` (and the usual boolean spellings) for switches that default to on.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// The HTTP API for backends (`/api/v1/`): off without an API key.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiConfig {
    /// A key backends send as `Authorization: Bearer <key>` (repeatable, for rotation). Without
    /// any, the API is off (404).
    #[arg(
        long = "api-key",
        env = "SHARDIO_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY",
        hide_env_values = true
    )]
    pub keys: Vec<String>,
    /// Serve the API only on this address (a private one), not on `--listen`. Default: the API
    /// is under `/api/v1/` on `--listen`.
    #[arg(long, env = "SHARDIO_INTERNAL_LISTEN", value_name = "ADDR")]
    pub internal_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["shardio"])
    }
}

/// A configuration that cannot run; the message says which setting to change.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--shards` out of range.
    #[error("--shards must be between 1 and {MAX_SHARDS}, got {0}")]
    Shards(usize),
    /// `--path` without its slashes.
    #[error("--path must start and end with '/', got {0:?}")]
    Path(String),
    /// A `--namespace` without its leading slash.
    #[error("--namespace must start with '/', got {0:?}")]
    Namespace(String),
    /// A setting that must be positive is zero.
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    /// A `--cors-origin` that is not an origin.
    #[error("--cors-origin must be `*` or an origin such as https://example.com, got {0:?}")]
    CorsOrigin(String),
    /// `--cors-credentials` without `--cors-origin`.
    #[error("--cors-credentials needs at least one --cors-origin")]
    CredentialsWithoutOrigin,
    /// A `--cookie` name that is not a cookie name.
    #[error("--cookie must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), got {0:?}")]
    Cookie(String),
    /// A `--redis` URL of another scheme.
    #[error("--redis must be a redis://, unix:// or redis+unix:// URL, got {0:?}")]
    RedisUrl(String),
    /// An `--allowed-origin` that is not an exact origin.
    #[error("--allowed-origin must be an exact origin such as https://app.example.com (no `*`, no path), got {0:?}")]
    AllowedOrigin(String),
    /// An `--api-key` too short to be a secret.
    #[error("--api-key must be at least 16 characters")]
    ApiKey,
}

impl Config {
    /// Checks every setting once, at startup; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.runtime.validate()?;
        self.redis.validate()?;
        self.auth.validate()?;
        if self.api.keys.iter().any(|k| k.len() < 16) {
            return Err(ConfigError::ApiKey);
        }
        self.limits.validate()?;
        if !self.path.starts_with('/') || !self.path.ends_with('/') {
            return Err(ConfigError::Path(self.path.clone()));
        }
        if let Some(nsp) = self.namespaces.iter().find(|n| !n.starts_with('/')) {
            return Err(ConfigError::Namespace(nsp.clone()));
        }
        for (name, value) in [
            ("ping-interval", self.ping_interval),
            ("ping-timeout", self.ping_timeout),
            ("max-payload", self.max_payload as u64),
            ("connect-timeout", self.connect_timeout),
            ("max-buffered-bytes", self.max_buffered_bytes as u64),
            ("ws-max-fragments", self.ws_max_fragments as u64),
            ("max-json-depth", self.max_json_depth as u64),
            ("max-name-length", self.max_name_length as u64),
            ("max-event-burst", u64::from(self.max_event_burst)),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        // Origins are echoed into response headers: nothing that could break a header line.
        if let Some(bad) = self.cors_origins.iter().find(|o| {
            o.is_empty()
                || o.bytes()
                    .any(|b| b.is_ascii_control() || b == b' ' || b == b',')
        }) {
            return Err(ConfigError::CorsOrigin(bad.clone()));
        }
        if self.cors_credentials && self.cors_origins.is_empty() {
            return Err(ConfigError::CredentialsWithoutOrigin);
        }
        if let Some(name) = &self.cookie {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(ConfigError::Cookie(name.clone()));
            }
        }
        Ok(())
    }

    /// `--connect-timeout` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout)
    }

    /// This machine's name: `--node-name`, else the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(defaults::node_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_nodes() {
        let c = Config::default();
        assert_eq!(c.runtime.listen.to_string(), "0.0.0.0:3000");
        assert_eq!((c.ping_interval, c.ping_timeout), (25_000, 20_000));
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.connect_timeout, 45_000);
        assert_eq!(c.path, "/socket.io/");
        assert_eq!(c.runtime.shutdown_timeout, 30_000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let c = Config::parse_from(["shardio", "--shards", "0"]);
        assert_eq!(c.validate(), Err(ConfigError::Shards(0)));
        let c = Config::parse_from(["shardio", "--path", "/x"]);
        assert_eq!(c.validate(), Err(ConfigError::Path("/x".into())));
        let c = Config::parse_from(["shardio", "--ping-timeout", "0"]);
        assert_eq!(c.validate(), Err(ConfigError::Zero("ping-timeout")));
        let c = Config::parse_from(["shardio", "--redis", "http://x"]);
        assert_eq!(c.validate(), Err(ConfigError::RedisUrl("http://x".into())));
        let c = Config::parse_from(["shardio", "--cors-credentials"]);
        assert_eq!(c.validate(), Err(ConfigError::CredentialsWithoutOrigin));
        let c = Config::parse_from(["shardio", "--cors-origin", "https://a\r\nX: y"]);
        assert!(matches!(c.validate(), Err(ConfigError::CorsOrigin(_))));
        let c = Config::parse_from(["shardio", "--cookie", "io; evil"]);
        assert!(matches!(c.validate(), Err(ConfigError::Cookie(_))));
    }

    #[test]
    fn hardening_limits_have_defaults_and_flags() {
        let c = Config::default();
        assert_eq!((c.ws_max_fragments, c.ws_control_rate), (1024, 20));
        assert_eq!((c.max_json_depth, c.max_name_length), (32, 256));
        assert_eq!((c.max_event_rate, c.max_event_burst), (0, 200));
        let c = Config::parse_from([
            "shardio",
            "--ws-max-fragments",
            "8",
            "--ws-control-rate",
            "0",
            "--max-json-depth",
            "4",
            "--max-name-length",
            "16",
            "--max-event-rate",
            "10",
            "--max-event-burst",
            "20",
        ]);
        assert_eq!((c.ws_max_fragments, c.ws_control_rate), (8, 0));
        assert_eq!((c.max_json_depth, c.max_name_length), (4, 16));
        assert_eq!((c.max_event_rate, c.max_event_burst), (10, 20));
        assert!(c.validate().is_ok(), "0 turns a rate off");
        let c = Config::parse_from(["shardio", "--ws-max-fragments", "0"]);
        assert_eq!(c.validate(), Err(ConfigError::Zero("ws-max-fragments")));
    }

    #[test]
    fn cors_and_cookie_flags() {
        let c = Config::default();
        assert!(c.cors_origins.is_empty() && !c.cors_credentials && c.cookie.is_none());
        let c = Config::parse_from([
            "shardio",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "https://b.example,https://c.example",
            "--cors-credentials",
            "--cookie",
            "io",
        ]);
        assert_eq!(
            c.cors_origins,
            [
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert!(c.cors_credentials);
        assert_eq!(c.cookie.as_deref(), Some("io"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn limits_defaults_and_flags() {
        let l = Config::default().limits;
        assert_eq!((l.max_head_bytes, l.max_headers), (16 * 1024, 100));
        assert_eq!((l.head_timeout, l.body_timeout), (10_000, 30_000));
        assert_eq!(
            (l.max_connections, l.max_handshakes_per_second),
            (1_000_000, 20_000)
        );
        let c = Config::parse_from([
            "shardio",
            "--max-headers",
            "20",
            "--body-timeout",
            "500",
            "--max-connections",
            "0",
        ]);
        assert_eq!(c.limits.max_headers, 20);
        assert_eq!(c.limits.body_timeout(), Duration::from_millis(500));
        assert!(c.validate().is_ok(), "0 connections means no limit");
        let c = Config::parse_from(["shardio", "--head-timeout", "0"]);
        assert_eq!(c.validate(), Err(ConfigError::Zero("head-timeout")));
    }

    #[test]
    fn redis_is_off_by_default_and_node_compatible_when_on() {
        let c = Config::default();
        assert_eq!(c.redis.url, None);
        assert_eq!(c.redis.prefix, "socket.io");
        assert_eq!(c.redis.requests_timeout, 5_000);
        let r = RedisConfig::new("redis://127.0.0.1:6379/0");
        assert_eq!(r.url.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert!(r.validate().is_ok());
        assert!(r.reconnect_max() >= RedisConfig::RECONNECT_MIN);
    }
}
