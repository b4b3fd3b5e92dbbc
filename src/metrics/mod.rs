//! The server's counters: per shard ([`ShardMetrics`], written by the shard's own thread with
//! plain loads and stores, no atomic read-modify-write), the Redis bridge's
//! ([`BridgeMetrics`]), and a few per process (API requests, JWT refusals). Nothing is summed
//! while the server works: the scrape (`GET /metrics`, [`Metrics::encode`]) reads every shard's
//! counters and adds them up then.

mod bridge;
mod export;
mod shard;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use bridge::{BridgeMetrics, RestoreResult};
pub use export::Format;
pub use shard::{ConnectRefusal, RecoveryEvent, ShardMetrics, TransportKind};

/// A number only one thread writes (its shard's) and any thread may read. The writer updates
/// it with a relaxed load and store, which costs what a plain `u64` field would: no locked
/// instruction, and the cache line stays with the writer's core. Two writers would lose
/// updates (never memory safety), so every [`ShardMetrics`] method runs on its shard's thread.
#[derive(Debug, Default)]
pub(crate) struct Local(AtomicU64);

impl Local {
    /// Adds `n`; returns the new value.
    #[inline]
    pub(crate) fn add(&self, n: u64) -> u64 {
        let value = self.0.load(Relaxed).wrapping_add(n);
        self.0.store(value, Relaxed);
        value
    }

    /// Takes `n` off (a gauge going down).
    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The labels of an API request: its route and the status it was answered with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequest {
    route: &'static str,
    status: u16,
}

/// The label of a JWT refusal: the reason code the client was told.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthRefusal {
    reason: &'static str,
}

/// The counters of every shard of a server, of its Redis bridge, and of the process.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[ShardMetrics]>,
    bridge: BridgeMetrics,
    /// Backend API requests (rare next to messages: a shared, locked map is fine).
    api_requests: Family<ApiRequest, Counter>,
    jwt_refusals: Family<AuthRefusal, Counter>,
}

impl Metrics {
    /// Zeroed counters for `shards` shards and the bridge.
    pub fn new(shards: usize) -> Self {
        Metrics {
            shards: (0..shards).map(|_| ShardMetrics::default()).collect(),
            bridge: BridgeMetrics::default(),
            api_requests: Family::default(),
            jwt_refusals: Family::default(),
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

    /// Requests handed from one shard to another, all shards together.
    pub fn handoffs(&self) -> u64 {
        self.shards.iter().map(ShardMetrics::handoffs_sent).sum()
    }

    /// Counts a task serving a connection on `shard` until the returned guard drops (on the
    /// same shard's thread).
    pub(crate) fn connection_task(self: &Arc<Self>, shard: usize) -> ConnectionTask {
        self.shards[shard].connection_tasks.add(1);
        ConnectionTask {
            metrics: self.clone(),
            shard,
        }
    }

    /// Counts a backend API request answered with `status`.
    pub(crate) fn api_request(&self, route: &'static str, status: u16) {
        self.api_requests
            .get_or_create(&ApiRequest { route, status })
            .inc();
    }

    /// Backend API requests to `route` answered with `status` so far.
    pub fn api_requests(&self, route: &'static str, status: u16) -> u64 {
        self.api_requests
            .get(&ApiRequest { route, status })
            .map_or(0, |c| c.get())
    }

    /// Counts a CONNECT refused because of its token; `reason` is the code the client is told.
    pub fn jwt_refused(&self, reason: &'static str) {
        self.jwt_refusals
            .get_or_create(&AuthRefusal { reason })
            .inc();
    }

    /// CONNECTs refused for token `reason` so far.
    pub fn jwt_refusals(&self, reason: &'static str) -> u64 {
        self.jwt_refusals
            .get(&AuthRefusal { reason })
            .map_or(0, |c| c.get())
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
        self.metrics.shards[self.shard].connection_tasks.sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_match_the_counter_order() {
        for (i, reason) in ConnectRefusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<ShardMetrics>(), 128);
        assert_eq!(std::mem::size_of::<ShardMetrics>() % 128, 0);
    }
}
