//! The one configuration tree: command-line flags, each also readable from a `SHARDIO_*`
//! environment variable and from a TOML file (`--config`). Defaults live here and only here
//! ([`defaults`]): the flags and the library's `Default` impls (`EngineConfig`,
//! `SocketIoConfig`) read them from there. [`load`] reads the three sources (flags over the
//! environment over the file over the defaults); `validate` runs once at startup.
//!
//! Nothing of the file's handling names a flag: a file key is any long flag of [`Config`]'s
//! command (but `config`, `print-config`, `help` and `version`), so a flag added to
//! `Config` is a file key at once. A flag marked `hide_env_values` is a secret: clap hides its
//! environment value in `--help`, and `--print-config` masks it.

mod access;
pub mod defaults;
mod file;
mod limits;
mod load;
mod print;
mod recovery;
mod redis;
mod runtime;
mod source;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use thiserror::Error;

pub use access::{ApiConfig, AuthConfig};
pub use limits::LimitsConfig;
pub use load::{load, Loaded};
pub use recovery::RecoveryConfig;
pub use redis::{RedisConfig, RedisMode, RedisSubscribe, SubscriptionMode};
pub use runtime::RuntimeConfig;
pub use source::{LoadError, Source};
pub use tls::TlsConfig;

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
    /// A namespace the gateway serves besides `/` (repeatable). Default: only `/`.
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
    /// Serve the official socket.io-client bundle under `--path` (`socket.io.js`,
    /// `socket.io.min.js`, `socket.io.esm.min.js` and their source maps), as Node's
    /// `serveClient` does.
    #[arg(
        long,
        env = "SHARDIO_SERVE_CLIENT",
        default_value_t = defaults::SERVE_CLIENT,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "on",
        value_parser = access::parse_on_off,
        value_name = "on|off"
    )]
    pub serve_client: bool,
    /// Serve the demo chat page at `/` (it needs the client bundle). Default: on when no JWT
    /// key is configured, off when one is.
    #[arg(
        long,
        env = "SHARDIO_DEMO",
        num_args = 0..=1,
        default_missing_value = "on",
        value_parser = access::parse_on_off,
        value_name = "on|off"
    )]
    pub demo: Option<bool>,
    /// Log lines as human-readable text, or as one JSON object per line for log shippers
    /// (`RUST_LOG` filters both; default `info`).
    #[arg(
        long,
        env = "SHARDIO_LOG_FORMAT",
        value_enum,
        default_value = defaults::LOG_FORMAT
    )]
    pub log_format: LogFormat,
    /// A TOML file of settings: keys named as the flags without `--` (`shards = 4`,
    /// `max_payload` or `max-payload`), arrays for repeatable flags, `true`/`false` for
    /// switches. Flags and `SHARDIO_*` variables override it. Default: no file.
    #[arg(long, env = "SHARDIO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML (secrets masked), then exit without
    /// starting.
    #[arg(long)]
    pub print_config: bool,
    /// HTTPS and WSS on `--listen`.
    #[command(flatten)]
    pub tls: TlsConfig,
    /// Offer WebSocket compression (permessage-deflate, RFC 7692) to clients that ask for it:
    /// messages of 1 KiB and more go out compressed, each compressed once for all its
    /// recipients; a client's compressed messages count against `--max-payload` inflated. Off
    /// by default: it costs CPU, and memory per connection whose client keeps its compression
    /// context (an inflater of about 43 KB, see benches/RESULTS-compression.md).
    #[arg(
        long,
        env = "SHARDIO_WEBSOCKET_COMPRESSION",
        default_value_t = defaults::WEBSOCKET_COMPRESSION
    )]
    pub websocket_compression: bool,
    /// Connection state recovery (`--recovery-window` and its memory bounds).
    #[command(flatten)]
    pub recovery: RecoveryConfig,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`, and `span` (with
    /// `sid` and `shard` on a session's lines).
    Json,
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
    /// A `--redis` URL of another scheme (or several URLs outside `--redis-mode sharded`).
    #[error("--redis must be a redis://, unix:// or redis+unix:// URL (several, comma-separated, only with --redis-mode sharded), got {0:?}")]
    RedisUrl(String),
    /// An `--allowed-origin` that is not an exact origin.
    #[error("--allowed-origin must be an exact origin such as https://app.example.com (no `*`, no path), got {0:?}")]
    AllowedOrigin(String),
    /// An `--api-key` too short to be a secret.
    #[error("--api-key must be at least 16 characters")]
    ApiKey,
    /// `--demo on` where the page cannot work.
    #[error("--demo needs {0}")]
    Demo(&'static str),
    /// A setting that works only with another (`--tls-cert` without `--tls-key`, ...).
    #[error("{0} needs {1}")]
    Needs(&'static str, &'static str),
    /// A `--redis-sentinel` entry that is not `host:port`.
    #[error("--redis-sentinel takes host:port entries, comma-separated, got {0:?}")]
    Sentinel(String),
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
        self.tls.validate()?;
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
            ("recovery-session-bytes", self.recovery.session_bytes as u64),
            ("recovery-process-bytes", self.recovery.process_bytes as u64),
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
        if self.demo == Some(true) {
            if !self.serve_client {
                return Err(ConfigError::Demo("the client bundle (--serve-client on)"));
            }
            if self.path == "/" {
                // The page's `/` would be the Engine.IO endpoint's.
                return Err(ConfigError::Demo("a --path other than /"));
            }
        }
        Ok(())
    }

    /// Whether the demo page is served at `/`: `--demo`, else when no JWT key is configured
    /// ([`defaults::demo`]) and the page can work (the client bundle is served, `--path` is
    /// not `/`).
    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or_else(|| {
            defaults::demo(self.auth.jwt_enabled()) && self.serve_client && self.path != "/"
        })
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
        let c = Config::parse_from(["shardio", "--tls-cert", "cert.pem"]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs("--tls-cert", "--tls-key"))
        );
        let c = Config::parse_from(["shardio", "--tls-key", "key.pem"]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs("--tls-key", "--tls-cert"))
        );
        let c = Config::parse_from(["shardio", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        assert!(c.validate().is_ok() && c.tls.enabled());
        assert!(!Config::default().tls.enabled());
        let c = Config::parse_from([
            "shardio",
            "--redis-subscribe",
            "rooms",
            "--redis-mode",
            "streams",
        ]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs(
                "--redis-subscribe rooms",
                "--redis-mode classic"
            ))
        );
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
    fn websocket_compression_is_off_unless_asked_for() {
        assert!(!Config::default().websocket_compression);
        let c = Config::parse_from(["shardio", "--websocket-compression"]);
        assert!(c.websocket_compression && c.validate().is_ok());
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
    fn client_bundle_and_demo_flags() {
        let c = Config::default();
        assert!(c.serve_client && c.demo.is_none());
        assert!(c.demo_enabled(), "on by default without JWT");
        let jwt = Config::parse_from(["shardio", "--jwt-secret", "s"]);
        assert!(!jwt.demo_enabled(), "off by default with JWT");
        let forced = Config::parse_from(["shardio", "--jwt-secret", "s", "--demo"]);
        assert!(forced.demo_enabled() && forced.validate().is_ok());
        let off = Config::parse_from(["shardio", "--demo", "off"]);
        assert!(!off.demo_enabled());
        let no_client = Config::parse_from(["shardio", "--serve-client", "false"]);
        assert!(!no_client.serve_client && !no_client.demo_enabled());
        assert!(no_client.validate().is_ok());
        let c = Config::parse_from(["shardio", "--serve-client", "false", "--demo", "on"]);
        assert!(matches!(c.validate(), Err(ConfigError::Demo(_))));
        let root = Config::parse_from(["shardio", "--path", "/"]);
        assert!(!root.demo_enabled() && root.validate().is_ok());
        let c = Config::parse_from(["shardio", "--path", "/", "--demo"]);
        assert!(matches!(c.validate(), Err(ConfigError::Demo(_))));
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
        assert_eq!(c.redis.mode, RedisMode::Classic);
        assert_eq!(c.redis.subscription_mode, SubscriptionMode::Dynamic);
        assert!(!c.redis.enabled());
    }

    #[test]
    fn cluster_and_sentinel_settings_are_checked() {
        let two = "redis://a:7000,redis://b:7001";
        let c = Config::parse_from(["shardio", "--redis", two]);
        assert_eq!(c.validate(), Err(ConfigError::RedisUrl(two.into())));
        let c = Config::parse_from(["shardio", "--redis", two, "--redis-mode", "sharded"]);
        assert_eq!(c.redis.urls(), vec!["redis://a:7000", "redis://b:7001"]);
        assert!(c.validate().is_ok() && c.redis.enabled());
        let c = Config::parse_from(["shardio", "--redis-sentinel", "s1:26379,s2:26379"]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs("--redis-sentinel", "--redis-master"))
        );
        let c = Config::parse_from([
            "shardio",
            "--redis-sentinel",
            "s1:26379,s2:26379",
            "--redis-master",
            "mymaster",
        ]);
        assert_eq!(c.redis.sentinels, vec!["s1:26379", "s2:26379"]);
        assert!(c.validate().is_ok() && c.redis.enabled());
        let c = Config::parse_from(["shardio", "--redis-sentinel", "s1", "--redis-master", "m"]);
        assert_eq!(c.validate(), Err(ConfigError::Sentinel("s1".into())));
        let sentinel = ["--redis-sentinel", "s1:26379", "--redis-master", "m"];
        let with = |mode: &str| {
            let mut args = vec!["shardio", "--redis-mode", mode];
            args.extend(sentinel);
            Config::parse_from(args).validate()
        };
        assert!(with("streams").is_ok());
        assert_eq!(
            with("sharded"),
            Err(ConfigError::Needs(
                "--redis-sentinel",
                "--redis-mode classic or streams"
            ))
        );
        let c = Config::parse_from(["shardio", "--redis-subscription-mode", "static"]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs(
                "--redis-subscription-mode",
                "--redis-mode sharded"
            ))
        );
        let c = Config::parse_from([
            "shardio",
            "--redis-mode",
            "sharded",
            "--redis-subscribe",
            "rooms",
        ]);
        assert_eq!(
            c.validate(),
            Err(ConfigError::Needs(
                "--redis-subscribe rooms",
                "--redis-mode classic"
            ))
        );
    }
}
