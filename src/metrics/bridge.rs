//! The counters of the Redis bridge, written by the bridge thread (and by shards when they
//! overflow its queue), so they are atomic adds rather than [`Local`](super::Local)s.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The counters of the Redis bridge (all zero when it is off).
#[derive(Debug)]
pub struct BridgeMetrics {
    connected: AtomicU64,
    reconnects: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    probes_lost: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    room_channels: AtomicU64,
    /// Seconds from publishing a request to the cluster to its answer (or its deadline).
    pub(super) round_trips: Histogram,
    stream_waiting: AtomicU64,
    stream_lag_ms: AtomicU64,
    /// Streams mode with recovery: restores by outcome, in [`RestoreResult::ALL`]'s order.
    restores: [AtomicU64; 6],
}

/// How a restore from Redis ended (streams mode with `--recovery-window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreResult {
    /// The client got its session and what it missed.
    Recovered,
    /// No session under its pid: expired, never kept, or taken by another server.
    NoSession,
    /// Its offset is no longer in the stream (`--redis-stream-maxlen` trimmed it).
    OffsetGone,
    /// It missed more than `--recovery-session-bytes`.
    TooLarge,
    /// Not tried: Redis away, the bridge's queue full, too many restores in flight (4096),
    /// or an offset that is not an entry id.
    Refused,
    /// Not answered in time, or Redis was lost during it.
    TimedOut,
}

impl RestoreResult {
    /// Every result, in the order of their counters.
    pub const ALL: [RestoreResult; 6] = [
        RestoreResult::Recovered,
        RestoreResult::NoSession,
        RestoreResult::OffsetGone,
        RestoreResult::TooLarge,
        RestoreResult::Refused,
        RestoreResult::TimedOut,
    ];

    /// The result's label in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            RestoreResult::Recovered => "recovered",
            RestoreResult::NoSession => "no_session",
            RestoreResult::OffsetGone => "offset_gone",
            RestoreResult::TooLarge => "too_large",
            RestoreResult::Refused => "refused",
            RestoreResult::TimedOut => "timed_out",
        }
    }
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        BridgeMetrics {
            connected: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            probes_lost: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            room_channels: AtomicU64::new(0),
            // 0.25 ms to 4 s: a loopback Redis answers in the first buckets, the default
            // request timeout (5 s) lands past the last.
            round_trips: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            stream_waiting: AtomicU64::new(0),
            stream_lag_ms: AtomicU64::new(0),
            restores: Default::default(),
        }
    }
}

impl BridgeMetrics {
    pub(crate) fn restored(&self, result: RestoreResult) {
        self.restores[result as usize].fetch_add(1, Relaxed);
    }

    /// Restores from Redis that ended with `result`.
    pub fn restores(&self, result: RestoreResult) -> u64 {
        self.restores[result as usize].load(Relaxed)
    }

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

    /// Counts one message from Redis of `bytes` payload bytes, whatever becomes of it.
    pub(crate) fn message_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn set_room_channels(&self, n: usize) {
        self.room_channels.store(n as u64, Relaxed);
    }

    pub(crate) fn set_stream_waiting(&self, entries: usize) {
        self.stream_waiting.store(entries as u64, Relaxed);
    }

    pub(crate) fn set_stream_lag(&self, ms: u64) {
        self.stream_lag_ms.store(ms, Relaxed);
    }

    /// Records how long a request to the other servers took to be answered.
    pub(crate) fn round_trip(&self, took: Duration) {
        self.round_trips.observe(took.as_secs_f64());
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

    /// Messages that arrived from Redis on the subscription (and stream entries read, in streams
    /// mode), whatever became of them (own messages, probes, broadcasts for rooms without
    /// members here): the machine's Redis ingress.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Relaxed)
    }

    /// Payload bytes of [`Self::messages_in`] (channel names and framing not counted).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Relaxed)
    }

    /// Room channels subscribed (`--redis-subscribe rooms`; 0 in pattern mode).
    pub fn room_channels(&self) -> u64 {
        self.room_channels.load(Relaxed)
    }

    /// Streams mode: entries waiting to be added to the stream (published while Redis was
    /// away); they go out first when it is back.
    pub fn stream_waiting(&self) -> u64 {
        self.stream_waiting.load(Relaxed)
    }

    /// Streams mode: how old (by Redis's clock, in milliseconds) the last entry read from the
    /// stream was when the bridge read it: how far behind the stream the reader runs.
    pub fn stream_lag_ms(&self) -> u64 {
        self.stream_lag_ms.load(Relaxed)
    }
}
