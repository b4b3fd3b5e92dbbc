//! The `shardio` binary as a child process: started on 127.0.0.1:0, its log collected line by
//! line, stopped with SIGTERM (or killed when the test ends first).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Reaped;

/// A running `shardio` binary.
pub(crate) struct ShardioProcess {
    child: Reaped,
    /// Its stderr lines, with when each came.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    pub addr: SocketAddr,
}

/// The `shardio` binary as a command, without the `SHARDIO_*` variables of the test's own
/// environment.
pub(crate) fn shardio_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardio"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SHARDIO_") {
            command.env_remove(name);
        }
    }
    command
}

impl ShardioProcess {
    /// Starts `shardio --listen 127.0.0.1:0 --no-pin <args>` and waits for its startup line.
    pub(crate) fn start(args: &[&str]) -> ShardioProcess {
        ShardioProcess::start_with_env(args, &[])
    }

    /// [`ShardioProcess::start`] with these environment variables (`RUST_LOG` is `info`
    /// unless given). No `SHARDIO_*` variable of the test's own environment reaches it.
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> ShardioProcess {
        let mut child = shardio_command()
            .args(["--listen", "127.0.0.1:0", "--no-pin"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardio");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push((Instant::now(), line));
            }
        });
        let mut process = ShardioProcess {
            child: Reaped(child),
            log,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let mut addr = None;
        super::wait_until("the startup line", || {
            addr = process.find_line(|l| {
                // The startup line (the internal listener's, logged before it, has an address
                // too): `address=ADDR` in text lines, `"address":"ADDR"` in JSON ones.
                if !l.contains("shardio listening") {
                    return None;
                }
                l.split([' ', ','])
                    .find_map(|w| {
                        w.strip_prefix("address=")
                            .or(w.strip_prefix("\"address\":"))
                    })
                    .and_then(|a| a.trim_matches('"').parse().ok())
            });
            addr.is_some()
        });
        process.addr = addr.expect("the address in the startup line");
        process
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.0.id()).expect("a pid")
    }

    /// Every log line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        let log = self.log.lock().expect("log");
        log.iter().map(|(_, line)| line.clone()).collect()
    }

    /// The first log line `f` finds something in.
    pub(crate) fn find_line<T>(&self, mut f: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let log = self.log.lock().expect("log");
        log.iter().find_map(|(_, line)| f(line))
    }

    /// How many log lines since `since` contain `what`.
    pub(crate) fn count_lines(&self, what: &str, since: Instant) -> usize {
        let log = self.log.lock().expect("log");
        log.iter()
            .filter(|(at, line)| *at >= since && line.contains(what))
            .count()
    }

    /// Waits until a log line contains `what`.
    pub(crate) fn wait_for_line(&self, what: &str, limit: Duration) {
        let since = Instant::now() - Duration::from_secs(3600);
        assert!(
            super::wait_within(limit, || self.count_lines(what, since) > 0),
            "shardio never logged {what:?}"
        );
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...) without waiting for its effect.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Sends SIGTERM; returns how the process exited (it must within `limit`).
    pub(crate) fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(limit)
    }

    /// How the process exited, which it must within `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        super::wait_child(&mut self.child.0, limit).expect("shardio exits")
    }
}
