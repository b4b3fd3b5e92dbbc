//! The accept loop of one shard: each accepted connection gets a task of its own. When
//! `accept` fails (the process is out of file descriptors: EMFILE, ENFILE, ENOBUFS), the loop
//! backs off instead of spinning, logs once per interval with the count of failures, and says
//! so once more when accepting works again.

use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use super::router::{self, Router};
use crate::metrics::ShardMetrics;

/// The wait after a first failed accept; each further failure in a row doubles it, up to
/// [`MAX_BACKOFF`], which is also how late accepting resumes once descriptors are free.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// While accept keeps failing, at most one log line per interval (per shard).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepts until dropped (dropping it closes the listener).
pub(super) async fn run(
    listener: TcpListener,
    router: Rc<Router>,
    shard: usize,
    metrics: &ShardMetrics,
) {
    let mut failures = Failures::default();
    loop {
        match listener.accept().await {
            Ok((stream, address)) => {
                failures.recovered(shard);
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(router::serve(router.clone(), stream, address));
            }
            Err(e) => {
                metrics.accept_error();
                let wait = failures.failed(shard, &e, Instant::now());
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Accept failures: the backoff, and what the log has not told yet. The log's pace holds
/// across recoveries, so a process that keeps hitting its descriptor limit (accepting one,
/// failing again) still logs at most one failure line and one recovery line per interval.
#[derive(Debug, Default)]
struct Failures {
    /// Since the last successful accept.
    in_a_row: u64,
    /// Since the last failure line.
    untold: u64,
    last_told: Option<Instant>,
    /// A failure line was logged since the last successful accept.
    told_in_a_row: bool,
    backoff: Duration,
}

impl Failures {
    /// Counts a failure; logs it if the last line is an interval old; returns the wait before
    /// the next attempt.
    fn failed(&mut self, shard: usize, error: &std::io::Error, now: Instant) -> Duration {
        self.in_a_row += 1;
        self.untold += 1;
        self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        if self
            .last_told
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL)
        {
            tracing::warn!(
                shard,
                error = %error,
                failures = self.untold,
                retry_in = ?self.backoff,
                "accept failed; backing off (logged once per {LOG_INTERVAL:?})"
            );
            self.untold = 0;
            self.last_told = Some(now);
            self.told_in_a_row = true;
        }
        self.backoff
    }

    /// An accept worked: says so if the failures before it were logged, and starts over.
    fn recovered(&mut self, shard: usize) {
        if self.in_a_row == 0 {
            return;
        }
        if self.told_in_a_row {
            tracing::info!(
                shard,
                failures = self.in_a_row,
                "accepting connections again"
            );
        }
        self.in_a_row = 0;
        self.told_in_a_row = false;
        self.backoff = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_are_told_once_per_interval() {
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let mut f = Failures::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut waits = Vec::new();
        let mut told = 0;
        // 100 failures, 90 ms apart: just under 9 s of them.
        for i in 0..100 {
            waits.push(f.failed(0, &error, at(i * 90)));
            if f.untold == 0 {
                told += 1;
            }
        }
        assert_eq!(waits[0], MIN_BACKOFF);
        assert_eq!(waits[1], MIN_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(
            told, 1,
            "one line for the first failure, none more within 10 s"
        );

        // Flapping: an accept works, the next fails again. The backoff starts over, the log's
        // pace does not.
        f.recovered(0);
        assert_eq!((f.in_a_row, f.backoff), (0, Duration::ZERO));
        assert_eq!(f.failed(0, &error, at(9_500)), MIN_BACKOFF);
        assert_eq!(
            f.untold, 100,
            "not told (the last line is not 10 s old), but counted for the next line"
        );
        assert!(!f.told_in_a_row, "nor will its recovery be");
        f.failed(0, &error, at(10_000));
        assert_eq!(f.untold, 0, "told again an interval after the first line");
    }
}
