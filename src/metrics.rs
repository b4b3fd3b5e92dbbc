//! Per-shard counters. Each shard writes only its own counters (relaxed atomics, no contention);
//! readers (tests, the metrics endpoint) sum them on demand. The Redis bridge has its own set,
//! written by the bridge thread (and by shards only when they overflow its queue).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The counters of one shard.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    sessions_open: AtomicU64,
    sessions_total: AtomicU64,
    slow_consumers: AtomicU64,
    bus_overflows: AtomicU64,
    handoffs_sent: AtomicU64,
    handoffs_received: AtomicU64,
    connection_tasks: AtomicU64,
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

    pub(crate) fn handoff_sent(&self) {
        self.handoffs_sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn handoff_received(&self) {
        self.handoffs_received.fetch_add(1, Relaxed);
    }

    /// Requests this shard handed to the shard owning their session (polling requests and
    /// WebSocket upgrades that landed here).
    pub fn handoffs_sent(&self) -> u64 {
        self.handoffs_sent.load(Relaxed)
    }

    /// Requests other shards handed to this one because it owns their session.
    pub fn handoffs_received(&self) -> u64 {
        self.handoffs_received.load(Relaxed)
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

    /// Tasks serving HTTP connections on this shard now (reading requests, answering them,
    /// waiting for the next one). A WebSocket is served by its session's task instead, counted
    /// in [`sessions_open`](Self::sessions_open).
    pub fn connection_tasks(&self) -> u64 {
        self.connection_tasks.load(Relaxed)
    }
}

/// Counts one connection task of a shard for as long as it lives (however the task ends).
#[derive(Debug)]
pub(crate) struct ConnectionTask {
    metrics: Arc<Metrics>,
    shard: usize,
}

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.metrics.shards[self.shard]
            .connection_tasks
            .fetch_sub(1, Relaxed);
    }
}

/// The counters of the Redis bridge (all zero when it is off).
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    connected: AtomicU64,
    reconnects: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    probes_lost: AtomicU64,
}

impl BridgeMetrics {
    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(u64::from(up), Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_published(&self, n: u64) {
        self.published.fetch_add(n, Relaxed);
    }

    pub(crate) fn received_one(&self) {
        self.received.fetch_add(1, Relaxed);
    }

    /// Counts a message lost on its way through the bridge; returns the count so far.
    pub(crate) fn drop_one(&self) -> u64 {
        self.dropped.fetch_add(1, Relaxed) + 1
    }

    /// Counts a message from Redis that did not decode; returns the count so far.
    pub(crate) fn malformed_one(&self) -> u64 {
        self.malformed.fetch_add(1, Relaxed) + 1
    }

    pub(crate) fn probe_lost(&self) {
        self.probes_lost.fetch_add(1, Relaxed);
    }

    /// 1 while the bridge holds working Redis connections, else 0.
    pub fn connected(&self) -> u64 {
        self.connected.load(Relaxed)
    }

    /// Times the bridge connected again after losing Redis.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }

    /// Messages published to Redis (broadcasts, requests, responses).
    pub fn published(&self) -> u64 {
        self.published.load(Relaxed)
    }

    /// Messages from other servers accepted from Redis (own messages and probes not counted).
    pub fn received(&self) -> u64 {
        self.received.load(Relaxed)
    }

    /// Messages lost in the bridge: its queue was full, Redis was away, or a shard's inbox
    /// was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Messages from Redis that did not decode and were dropped.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Relaxed)
    }

    /// Probes that did not come back through the subscription in time.
    pub fn probes_lost(&self) -> u64 {
        self.probes_lost.load(Relaxed)
    }
}

/// The counters of every shard of a server, and of its Redis bridge.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
    bridge: BridgeMetrics,
}

impl Metrics {
    /// Zeroed counters for `shards` shards and the bridge.
    pub fn new(shards: usize) -> Self {
        Metrics {
            shards: (0..shards).map(|_| ShardMetrics::default()).collect(),
            bridge: BridgeMetrics::default(),
        }
    }

    /// Each shard's counters, by shard index.
    pub fn shards(&self) -> &[ShardMetrics] {
        &self.shards
    }

    /// The Redis bridge's counters.
    pub fn bridge(&self) -> &BridgeMetrics {
        &self.bridge
    }

    /// Sessions open on all shards.
    pub fn sessions_open(&self) -> u64 {
        self.shards.iter().map(ShardMetrics::sessions_open).sum()
    }

    /// Counts a task serving a connection on `shard` until the returned guard drops.
    pub(crate) fn connection_task(self: &Arc<Self>, shard: usize) -> ConnectionTask {
        self.shards[shard].connection_tasks.fetch_add(1, Relaxed);
        ConnectionTask {
            metrics: self.clone(),
            shard,
        }
    }

    /// Requests handed from one shard to another, all shards together.
    pub fn handoffs(&self) -> u64 {
        self.shards.iter().map(ShardMetrics::handoffs_sent).sum()
    }
}
