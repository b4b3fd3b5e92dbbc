//! Connection state recovery: how long a dropped client's session is kept, and the memory the
//! sessions and the packets they miss may take.

use std::time::Duration;

use clap::Args;

use super::defaults;

/// Connection state recovery (Socket.IO 4.6's `connectionStateRecovery`): a client that drops
/// and comes back within the window gets its socket id, rooms, data and the packets it missed.
#[derive(Debug, Clone, Args)]
pub struct RecoveryConfig {
    /// Keep the session of a client whose connection dropped for this many milliseconds, with
    /// the packets it misses, so that it comes back recovered. Given without a value: 120000
    /// (Node's `maxDisconnectionDuration`). Default: off. With `--redis-mode streams` the
    /// sessions are kept in Redis and clients recover on any machine.
    #[arg(
        long = "recovery-window",
        env = "SHARDIO_RECOVERY_WINDOW",
        num_args = 0..=1,
        default_missing_value = defaults::RECOVERY_WINDOW_MS,
        value_name = "MS"
    )]
    pub window: Option<u64>,
    /// Bytes of missed packets one session may get back; a session that missed more gets a
    /// fresh connection instead.
    #[arg(
        long = "recovery-session-bytes",
        env = "SHARDIO_RECOVERY_SESSION_BYTES",
        default_value_t = defaults::RECOVERY_SESSION_BYTES,
        value_name = "BYTES"
    )]
    pub session_bytes: usize,
    /// Bytes the kept sessions and the log of recoverable packets may take in the whole process
    /// (split evenly between the shards); beyond it the oldest go first. In streams mode, where
    /// Redis keeps both: the bridge's recent recoverable packets, which restores read first.
    #[arg(
        long = "recovery-process-bytes",
        env = "SHARDIO_RECOVERY_PROCESS_BYTES",
        default_value_t = defaults::RECOVERY_PROCESS_BYTES,
        value_name = "BYTES"
    )]
    pub process_bytes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window: None,
            session_bytes: defaults::RECOVERY_SESSION_BYTES,
            process_bytes: defaults::RECOVERY_PROCESS_BYTES,
        }
    }
}

impl RecoveryConfig {
    /// The window, when recovery is on (a window of 0 is off).
    pub fn window(&self) -> Option<Duration> {
        self.window.filter(|&ms| ms > 0).map(Duration::from_millis)
    }
}
