//! Bounds on HTTP requests and on the process's new connections.

use std::time::Duration;

use clap::{Args, Parser};

use super::{defaults, ConfigError};

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
