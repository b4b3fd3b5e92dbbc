//! The scenarios and what they share: the connection context and the "open N connections and
//! keep them alive" phase used by `connect` and `idle`.

mod api;
pub(crate) mod connect;
pub(crate) mod fanout;
mod fanout_rows;
pub(crate) mod floor;
pub(crate) mod idle;
pub(crate) mod jitter;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Conn, Sources, Target, READ_IDLE};
use crate::proc::ServerProbe;
use crate::stats::{new_histogram, ErrorTally};

/// What every scenario needs to open connections and observe the server.
pub(crate) struct Ctx {
    pub target: Target,
    pub sources: Arc<Sources>,
    /// Limit for one full handshake (TCP, upgrade, open, CONNECT).
    pub handshake_timeout: Duration,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    pub probe: ServerProbe,
    /// The generator's worker threads (for its own CPU share).
    pub threads: usize,
    /// The exact command line, recorded in the JSON.
    pub command: String,
}

/// Connections opened by [`open_and_hold`], alive until [`HeldConns::close`].
pub(crate) struct HeldConns {
    pub connected: u64,
    pub failures: ErrorTally,
    /// Handshake latency of each successful connection, in microseconds.
    pub latency: Histogram<u64>,
    /// From the first connect to the last handshake's end.
    pub elapsed: Duration,
    /// Connections the server closed while they were held.
    dropped: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl HeldConns {
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes every held connection (waits at most 10 s for the tasks to end).
    pub(crate) async fn close(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

/// Opens `count` connections, `ctx.concurrency` handshakes at a time, and keeps each alive
/// (answering pings) until closed. Returns when every handshake has succeeded or failed.
pub(crate) async fn open_and_hold(ctx: &Ctx, count: u64) -> HeldConns {
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<Result<u64, &'static str>>(1024);
    let permits = Arc::new(Semaphore::new(ctx.concurrency.max(1)));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..count {
        let (target, sources, permits) = (ctx.target.clone(), ctx.sources.clone(), permits.clone());
        let (done_tx, stop_rx, dropped) = (done_tx.clone(), stop_rx.clone(), dropped.clone());
        let timeout = ctx.handshake_timeout;
        tasks.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            let t0 = Instant::now();
            let opened = Conn::open(&target, &sources, READ_IDLE, timeout).await;
            drop(permit);
            let conn = match opened {
                Ok(c) => {
                    let _ = done_tx.send(Ok(t0.elapsed().as_micros() as u64)).await;
                    c
                }
                Err(e) => {
                    let _ = done_tx.send(Err(e.kind())).await;
                    return;
                }
            };
            drop(done_tx);
            if conn.hold(stop_rx).await.is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(done_tx);
    let mut held = HeldConns {
        connected: 0,
        failures: ErrorTally::default(),
        latency: new_histogram(),
        elapsed: Duration::ZERO,
        dropped,
        stop,
        tasks,
    };
    while let Some(r) = done_rx.recv().await {
        match r {
            Ok(us) => {
                held.connected += 1;
                held.latency.saturating_record(us.max(1));
            }
            Err(kind) => held.failures.add(kind),
        }
    }
    held.elapsed = start.elapsed();
    held
}
