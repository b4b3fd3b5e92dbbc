//! The Redis bridge's settings.

use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use super::{defaults, ConfigError};

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
    /// What the bridge subscribes to for broadcasts in `--redis-mode classic`: `pattern` (Node's
    /// classic adapter: `PSUBSCRIBE prefix#nsp#*`, every machine receives every broadcast) or
    /// `rooms` (the namespace channel plus one channel per room with a member on this machine).
    #[arg(
        long = "redis-subscribe",
        env = "SHARDIO_REDIS_SUBSCRIBE",
        value_enum,
        default_value = defaults::REDIS_SUBSCRIBE,
        value_name = "MODE"
    )]
    pub subscribe: RedisSubscribe,
    /// How messages cross machines: `classic` (Node's `@socket.io/redis-adapter`, Pub/Sub),
    /// `streams` (`@socket.io/redis-streams-adapter` 0.3: broadcasts and room commands go
    /// through a Redis stream that the bridge reads from its last id, so a Redis outage loses
    /// nothing still in the stream) or `sharded` (Node's `createShardedAdapter` on a Redis
    /// Cluster 7+: SPUBLISH, SSUBSCRIBE; `--redis` then names one or more cluster nodes,
    /// comma-separated). Every server of a cluster must use the same.
    #[arg(
        long = "redis-mode",
        env = "SHARDIO_REDIS_MODE",
        value_enum,
        default_value = defaults::REDIS_MODE,
        value_name = "MODE"
    )]
    pub mode: RedisMode,
    /// With `--redis-mode streams`: the stream's key (Node's `streamName`).
    #[arg(
        long = "redis-stream",
        env = "SHARDIO_REDIS_STREAM",
        default_value = defaults::REDIS_STREAM,
        value_name = "KEY"
    )]
    pub stream: String,
    /// With `--redis-mode streams`: the stream is trimmed to about this many entries on every
    /// XADD (`MAXLEN ~`, Node's `maxLen`); it bounds how long an outage can last without loss.
    #[arg(
        long = "redis-stream-maxlen",
        env = "SHARDIO_REDIS_STREAM_MAXLEN",
        default_value_t = defaults::REDIS_STREAM_MAXLEN,
        value_name = "ENTRIES"
    )]
    pub stream_maxlen: u64,
    /// With `--redis-mode sharded`, Node's `subscriptionMode`: `static` (two channels per
    /// namespace), `dynamic` (plus one per room with members here, socket ids excepted) or
    /// `dynamic-private` (socket ids too). Every server of a cluster must use the same.
    #[arg(
        long = "redis-subscription-mode",
        env = "SHARDIO_REDIS_SUBSCRIPTION_MODE",
        value_enum,
        default_value = defaults::REDIS_SUBSCRIPTION_MODE
    )]
    pub subscription_mode: SubscriptionMode,
    /// Sentinels to ask for the master (`host:port`, comma-separated); turns the bridge on
    /// without `--redis` and follows failovers. Needs `--redis-master`; works with
    /// `--redis-mode classic` and `streams`. A `--redis` URL given too lends its database, user
    /// and password to the master's connections. Default: none.
    #[arg(
        long = "redis-sentinel",
        env = "SHARDIO_REDIS_SENTINEL",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub sentinels: Vec<String>,
    /// The master's name in Sentinel's configuration (`sentinel monitor <name> ...`).
    /// Default: none (needed with `--redis-sentinel`).
    #[arg(
        long = "redis-master",
        env = "SHARDIO_REDIS_MASTER",
        value_name = "NAME"
    )]
    pub master: Option<String>,
}

/// How the bridge subscribes to other servers' broadcasts in `--redis-mode classic`
/// (`--redis-subscribe`). Either way the same channels are published to and every server of a
/// cluster may use either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisSubscribe {
    /// `PSUBSCRIBE prefix#nsp#*`, as Node's classic adapter: every machine receives every
    /// broadcast of the cluster, whether it holds members of the room or not.
    Pattern,
    /// `SUBSCRIBE prefix#nsp#` and `prefix#nsp#<room>#` for each room (socket ids included)
    /// with at least one member on this machine, changed in batches as rooms gain their first
    /// and lose their last local member: a machine receives the broadcasts of its rooms only.
    Rooms,
}

/// `--redis-mode`: which of Node's Redis adapters the bridge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisMode {
    /// `@socket.io/redis-adapter` (v8) and `@socket.io/redis-emitter`: everything on Pub/Sub,
    /// one Redis (or behind Sentinel).
    Classic,
    /// `@socket.io/redis-streams-adapter` (0.3) and its emitter: broadcasts and room commands
    /// in a Redis stream, requests and responses on Pub/Sub.
    Streams,
    /// Node's `createShardedAdapter`: SPUBLISH and SSUBSCRIBE on a Redis Cluster 7+.
    Sharded,
}

/// Which channels the sharded adapter subscribes to (`--redis-subscription-mode`, Node's
/// `subscriptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubscriptionMode {
    /// The namespace's channel and the server's own response channel only.
    Static,
    /// Also one channel per room with members on this machine, socket ids excepted.
    Dynamic,
    /// Also one channel per socket id.
    DynamicPrivate,
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

    /// Whether the bridge runs: `--redis` or `--redis-sentinel` is given.
    pub fn enabled(&self) -> bool {
        self.url.is_some() || !self.sentinels.is_empty()
    }

    /// The URLs in `--redis` (comma-separated in sharded mode: the cluster's seed nodes).
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .as_deref()
            .map(|url| {
                url.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the bridge subscribes one channel per room held on this machine:
    /// `--redis-subscribe rooms` (classic), or the sharded adapter's dynamic subscription modes.
    pub fn room_channels(&self) -> bool {
        match self.mode {
            RedisMode::Classic => self.subscribe == RedisSubscribe::Rooms,
            RedisMode::Streams => false,
            RedisMode::Sharded => self.subscription_mode != SubscriptionMode::Static,
        }
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
        for url in self.urls() {
            if !["redis://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(ConfigError::RedisUrl(url.to_owned()));
            }
        }
        if self.urls().len() > 1 && self.mode != RedisMode::Sharded {
            return Err(ConfigError::RedisUrl(self.url.clone().unwrap_or_default()));
        }
        if !self.sentinels.is_empty() {
            if self.master.is_none() {
                return Err(ConfigError::Needs("--redis-sentinel", "--redis-master"));
            }
            // A Redis Cluster fails over by itself; Sentinel watches one master.
            if self.mode == RedisMode::Sharded {
                return Err(ConfigError::Needs(
                    "--redis-sentinel",
                    "--redis-mode classic or streams",
                ));
            }
            if let Some(bad) = self.sentinels.iter().find(|s| !valid_host_port(s)) {
                return Err(ConfigError::Sentinel(bad.clone()));
            }
        }
        if self.subscribe == RedisSubscribe::Rooms && self.mode != RedisMode::Classic {
            return Err(ConfigError::Needs(
                "--redis-subscribe rooms",
                "--redis-mode classic",
            ));
        }
        if self.subscription_mode != SubscriptionMode::Dynamic && self.mode != RedisMode::Sharded {
            return Err(ConfigError::Needs(
                "--redis-subscription-mode",
                "--redis-mode sharded",
            ));
        }
        if self.stream.is_empty() {
            return Err(ConfigError::Zero("redis-stream length"));
        }
        if self.prefix.is_empty() {
            return Err(ConfigError::Zero("redis-prefix length"));
        }
        for (name, value) in [
            ("redis-requests-timeout", self.requests_timeout),
            ("redis-queue", self.queue as u64),
            ("redis-probe-interval", self.probe_interval),
            ("redis-stream-maxlen", self.stream_maxlen),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }
}

/// `host:port` with a port number.
fn valid_host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
