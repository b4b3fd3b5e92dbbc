//! How the process runs: where it listens, how many shards, pinning, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{defaults, ConfigError, MAX_SHARDS};

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
    /// On SIGINT/SIGTERM, milliseconds to keep serving with `/readyz` answering 503 before the
    /// listeners close and the sessions are told to go: time for a load balancer's health
    /// checks to take the server out of rotation. 0: close at once.
    #[arg(long, env = "SHARDIO_DRAIN_DELAY", default_value_t = defaults::DRAIN_DELAY_MS, value_name = "MS")]
    pub drain_delay: u64,
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

    /// `--drain-delay` as a duration.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay)
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
