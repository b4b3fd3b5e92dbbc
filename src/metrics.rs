//! Per-shard counters. Each shard writes only its own counters (relaxed atomics, no contention);
//! readers (tests, the metrics endpoint) sum them on demand. The Redis bridge has its own set,
//! written by the bridge thread (and by shards only when they overflow its queue).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::http::{BodyError, HeadError, Overload, Refusal};

/// The counters of one shard.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    sessions_open: AtomicU64,
    sessions_total: AtomicU64,
    slow_consumers: AtomicU64,
    bus_overflows: AtomicU64,
    handoffs_sent: AtomicU64,
    handoffs_received: AtomicU64,
    messages_too_big: AtomicU64,
    fragment_floods: AtomicU64,
    control_floods: AtomicU64,
    packets_over_limits: AtomicU64,
    events_refused: AtomicU64,
    event_floods: AtomicU64,
    heads_too_large: AtomicU64,
    head_timeouts: AtomicU64,
    requests_malformed: AtomicU64,
    body_timeouts: AtomicU64,
    over_max_connections: AtomicU64,
    over_handshake_rate: AtomicU64,
    accept_errors: AtomicU64,
    panics: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_handshake_failures: AtomicU64,
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

    pub(crate) fn message_too_big(&self) {
        self.messages_too_big.fetch_add(1, Relaxed);
    }

    pub(crate) fn fragment_flood(&self) {
        self.fragment_floods.fetch_add(1, Relaxed);
    }

    pub(crate) fn control_flood(&self) {
        self.control_floods.fetch_add(1, Relaxed);
    }

    pub(crate) fn packet_over_limits(&self) {
        self.packets_over_limits.fetch_add(1, Relaxed);
    }

    pub(crate) fn event_refused(&self) {
        self.events_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn event_flood(&self) {
        self.event_floods.fetch_add(1, Relaxed);
    }

    /// WebSocket connections closed (1009) for a message over `--max-payload`.
    pub fn messages_too_big(&self) -> u64 {
        self.messages_too_big.load(Relaxed)
    }

    /// WebSocket connections closed (1008) for a message in more than `--ws-max-fragments`
    /// frames.
    pub fn fragment_floods(&self) -> u64 {
        self.fragment_floods.load(Relaxed)
    }

    /// WebSocket connections closed (1008) for control frames faster than `--ws-control-rate`.
    pub fn control_floods(&self) -> u64 {
        self.control_floods.load(Relaxed)
    }

    /// Socket.IO packets refused (the connection closes, "parse error") for JSON nested deeper
    /// than `--max-json-depth` or a namespace or event name longer than `--max-name-length`.
    pub fn packets_over_limits(&self) -> u64 {
        self.packets_over_limits.load(Relaxed)
    }

    /// Socket.IO events refused for exceeding `--max-event-rate` (answered with an error ack
    /// when they asked for one, dropped otherwise).
    pub fn events_refused(&self) -> u64 {
        self.events_refused.load(Relaxed)
    }

    /// Connections closed (1008) for exceeding `--max-event-rate` persistently.
    pub fn event_floods(&self) -> u64 {
        self.event_floods.load(Relaxed)
    }

    /// Counts a refused request under the limit or rule it broke (refusals that are no limit,
    /// such as an unknown path, are not counted).
    pub(crate) fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Head(HeadError::TooLarge) => &self.heads_too_large,
            Refusal::Head(HeadError::Malformed) => &self.requests_malformed,
            Refusal::HeadTimeout => &self.head_timeouts,
            Refusal::Body(BodyError::TimedOut) => &self.body_timeouts,
            Refusal::Overloaded(Overload::Connections) => &self.over_max_connections,
            Refusal::Overloaded(Overload::HandshakeRate) => &self.over_handshake_rate,
            _ => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a failed `accept`; returns the count so far.
    pub(crate) fn accept_error(&self) -> u64 {
        self.accept_errors.fetch_add(1, Relaxed) + 1
    }

    pub(crate) fn panicked(&self) {
        self.panics.fetch_add(1, Relaxed);
    }

    /// Requests refused with 431: a head over `--max-head-bytes` or `--max-headers`.
    pub fn heads_too_large(&self) -> u64 {
        self.heads_too_large.load(Relaxed)
    }

    /// Connections closed with 408 because their request head did not arrive within
    /// `--head-timeout`.
    pub fn head_timeouts(&self) -> u64 {
        self.head_timeouts.load(Relaxed)
    }

    /// Requests refused with 400 because their head does not parse or frames its body in a
    /// way that cannot be trusted (`Content-Length` with `Transfer-Encoding`).
    pub fn requests_malformed(&self) -> u64 {
        self.requests_malformed.load(Relaxed)
    }

    /// Requests refused with 408 because their body did not arrive within `--body-timeout`.
    pub fn body_timeouts(&self) -> u64 {
        self.body_timeouts.load(Relaxed)
    }

    /// Handshakes refused with 503 because the process held `--max-connections` sessions.
    pub fn over_max_connections(&self) -> u64 {
        self.over_max_connections.load(Relaxed)
    }

    /// Handshakes refused with 503 because of `--max-handshakes-per-second`.
    pub fn over_handshake_rate(&self) -> u64 {
        self.over_handshake_rate.load(Relaxed)
    }

    /// Times `accept` failed (out of file descriptors, mostly).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Relaxed)
    }

    /// Panics caught while serving a connection or a session, or handling a bus message: each
    /// closed what it served, and the shard went on.
    pub fn panics(&self) -> u64 {
        self.panics.load(Relaxed)
    }

    pub(crate) fn tls_handshake(&self, ok: bool) {
        let counter = if ok {
            &self.tls_handshakes
        } else {
            &self.tls_handshake_failures
        };
        counter.fetch_add(1, Relaxed);
    }

    /// TLS handshakes completed on this shard (`--tls-cert`).
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.load(Relaxed)
    }

    /// Connections closed because their TLS handshake failed (not TLS, no common protocol or
    /// cipher, a bad record) or did not finish within `--head-timeout`.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.load(Relaxed)
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

    /// Requests handed from one shard to another, all shards together.
    pub fn handoffs(&self) -> u64 {
        self.shards.iter().map(ShardMetrics::handoffs_sent).sum()
    }
}
