//! Per-shard counters. Each shard writes only its own counters (relaxed atomics, no contention);
//! readers (tests, the metrics endpoint) sum them on demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The counters of one shard.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    sessions_open: AtomicU64,
    sessions_total: AtomicU64,
    slow_consumers: AtomicU64,
    bus_overflows: AtomicU64,
}

impl ShardMetrics {
    pub(crate) fn session_opened(&self) {
        self.sessions_open.fetch_add(1, Relaxed);
        self.sessions_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Relaxed);
    }

    /// Counts a message this shard could not put on the bus; returns the count so far.
    pub(crate) fn bus_overflow(&self) -> u64 {
        self.bus_overflows.fetch_add(1, Relaxed) + 1
    }

    /// Bus messages this shard dropped because the target inbox was full.
    pub fn bus_overflows(&self) -> u64 {
        self.bus_overflows.load(Relaxed)
    }

    /// Engine.IO sessions open on this shard now.
    pub fn sessions_open(&self) -> u64 {
        self.sessions_open.load(Relaxed)
    }

    /// Engine.IO sessions this shard has opened since start.
    pub fn sessions_total(&self) -> u64 {
        self.sessions_total.load(Relaxed)
    }

    /// Sessions disconnected because their outbound queue passed its byte limit.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Relaxed)
    }
}

/// The counters of every shard of a server.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
}

impl Metrics {
    pub fn new(shards: usize) -> Self {
        Metrics {
            shards: (0..shards).map(|_| ShardMetrics::default()).collect(),
        }
    }

    pub fn shards(&self) -> &[ShardMetrics] {
        &self.shards
    }

    /// Sessions open on all shards.
    pub fn sessions_open(&self) -> u64 {
        self.shards.iter().map(ShardMetrics::sessions_open).sum()
    }
}
