//! The counters of one shard. Its own thread writes them ([`Local`]); the scrape reads them
//! from any thread.

use super::Local;
use crate::protocol::close::{CloseReason, Limit};
use crate::protocol::http::{BodyError, HeadError, Overload, Refusal};

/// The transport carrying a session, as the open-connections gauge splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling (a session probing an upgrade counts here until it completes).
    Polling,
    /// WebSocket (from the start, or upgraded).
    WebSocket,
}

/// Why a namespace CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// No such namespace ("Invalid namespace").
    UnknownNamespace,
    /// The namespace's `authorize` hook said no.
    Authorize,
    /// A middleware said no (the gateway's JWT check is one).
    Middleware,
}

impl ConnectRefusal {
    /// Every reason, in the order of the counters.
    pub const ALL: [ConnectRefusal; 3] = [
        ConnectRefusal::UnknownNamespace,
        ConnectRefusal::Authorize,
        ConnectRefusal::Middleware,
    ];

    /// The `reason` label of the refusal counter.
    pub fn label(self) -> &'static str {
        match self {
            ConnectRefusal::UnknownNamespace => "unknown_namespace",
            ConnectRefusal::Authorize => "authorize",
            ConnectRefusal::Middleware => "middleware",
        }
    }
}

/// The counters of one shard, on cache lines of their own so that two shards never write the
/// same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardMetrics {
    pub(super) polling_open: Local,
    pub(super) websocket_open: Local,
    pub(super) sessions_total: Local,
    pub(super) messages_in: Local,
    pub(super) bytes_in: Local,
    pub(super) messages_out: Local,
    pub(super) bytes_out: Local,
    pub(super) broadcasts: Local,
    pub(super) deliveries: Local,
    pub(super) volatile_drops: Local,
    pub(super) polling_gets: Local,
    pub(super) polling_posts: Local,
    pub(super) namespace_connects: Local,
    pub(super) namespace_refusals: [Local; ConnectRefusal::ALL.len()],
    pub(super) disconnects: [Local; CloseReason::ALL.len()],
    pub(super) bus_overflows: Local,
    pub(super) handoffs_sent: Local,
    pub(super) handoffs_received: Local,
    pub(super) packets_over_limits: Local,
    pub(super) events_refused: Local,
    pub(super) heads_too_large: Local,
    pub(super) head_timeouts: Local,
    pub(super) requests_malformed: Local,
    pub(super) body_timeouts: Local,
    pub(super) over_max_connections: Local,
    pub(super) over_handshake_rate: Local,
    pub(super) accept_errors: Local,
    pub(super) panics: Local,
    pub(super) connection_tasks: Local,
    pub(super) tls_handshakes: Local,
    pub(super) tls_handshake_failures: Local,
    pub(super) bus_received: Local,
    pub(super) bus_parcels: Local,
    pub(super) deflate_negotiated: Local,
    pub(super) messages_out_compressed: Local,
    pub(super) compression_saved_bytes: Local,
    pub(super) messages_in_compressed: Local,
}

impl ShardMetrics {
    fn open(&self, transport: TransportKind) -> &Local {
        match transport {
            TransportKind::Polling => &self.polling_open,
            TransportKind::WebSocket => &self.websocket_open,
        }
    }

    pub(crate) fn session_opened(&self, transport: TransportKind) {
        self.open(transport).add(1);
        self.sessions_total.add(1);
    }

    pub(crate) fn session_upgraded(&self) {
        self.polling_open.sub(1);
        self.websocket_open.add(1);
    }

    pub(crate) fn session_closed(&self, transport: TransportKind, reason: CloseReason) {
        self.open(transport).sub(1);
        self.disconnected(reason);
    }

    /// Counts a connection that ended for `reason` (a session's, or a bare WebSocket's).
    pub(crate) fn disconnected(&self, reason: CloseReason) {
        self.disconnects[reason.index()].add(1);
    }

    /// Counts an Engine.IO message received from a client, of `bytes` bytes.
    pub(crate) fn message_in(&self, bytes: usize) {
        self.messages_in.add(1);
        self.bytes_in.add(bytes as u64);
    }

    /// Counts `messages` Engine.IO messages of `bytes` bytes in all queued to a client.
    pub(crate) fn sent(&self, messages: u64, bytes: u64) {
        self.messages_out.add(messages);
        self.bytes_out.add(bytes);
    }

    /// Counts a broadcast started on this shard (by a socket, the app or the API).
    pub(crate) fn broadcast(&self) {
        self.broadcasts.add(1);
    }

    /// Counts broadcast packets this shard queued to `sockets` of its sockets.
    pub(crate) fn delivered(&self, sockets: usize) {
        self.deliveries.add(sockets as u64);
    }

    pub(crate) fn volatile_dropped(&self) {
        self.volatile_drops.add(1);
    }

    /// Counts a polling request: a GET (`true`) or a POST.
    pub(crate) fn polling_request(&self, get: bool) {
        if get {
            self.polling_gets.add(1);
        } else {
            self.polling_posts.add(1);
        }
    }

    pub(crate) fn namespace_connected(&self) {
        self.namespace_connects.add(1);
    }

    pub(crate) fn namespace_refused(&self, reason: ConnectRefusal) {
        self.namespace_refusals[reason as usize].add(1);
    }

    /// Counts a message this shard could not put on the bus; returns the count so far.
    pub(crate) fn bus_overflow(&self) -> u64 {
        self.bus_overflows.add(1)
    }

    /// Counts `messages` messages, in `parcels` parcels, taken from this shard's bus inbox.
    pub(crate) fn bus_received(&self, messages: usize, parcels: usize) {
        self.bus_received.add(messages as u64);
        self.bus_parcels.add(parcels as u64);
    }

    pub(crate) fn handoff_sent(&self) {
        self.handoffs_sent.add(1);
    }

    pub(crate) fn handoff_received(&self) {
        self.handoffs_received.add(1);
    }

    pub(crate) fn packet_over_limits(&self) {
        self.packets_over_limits.add(1);
    }

    pub(crate) fn event_refused(&self) {
        self.events_refused.add(1);
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
        counter.add(1);
    }

    /// Counts a failed `accept`; returns the count so far.
    pub(crate) fn accept_error(&self) -> u64 {
        self.accept_errors.add(1)
    }

    pub(crate) fn panicked(&self) {
        self.panics.add(1);
    }

    /// Counts a TLS handshake that completed (`ok`) or failed.
    pub(crate) fn tls_handshake(&self, ok: bool) {
        let counter = if ok {
            &self.tls_handshakes
        } else {
            &self.tls_handshake_failures
        };
        counter.add(1);
    }

    /// Counts a WebSocket connection that negotiated permessage-deflate.
    pub(crate) fn deflate_agreed(&self) {
        self.deflate_negotiated.add(1);
    }

    /// Counts `messages` queued compressed, which took `saved` bytes off the wire.
    pub(crate) fn sent_compressed(&self, messages: u64, saved: u64) {
        self.messages_out_compressed.add(messages);
        self.compression_saved_bytes.add(saved);
    }

    /// Counts a compressed WebSocket message received (and inflated).
    pub(crate) fn received_compressed(&self) {
        self.messages_in_compressed.add(1);
    }

    /// Engine.IO sessions open on this shard now.
    pub fn sessions_open(&self) -> u64 {
        self.polling_open.get() + self.websocket_open.get()
    }

    /// Sessions open on this shard now and carried by `transport`.
    pub fn sessions_on(&self, transport: TransportKind) -> u64 {
        self.open(transport).get()
    }

    /// Engine.IO sessions this shard has opened since start (handshakes).
    pub fn sessions_total(&self) -> u64 {
        self.sessions_total.get()
    }

    /// Sessions that ended for `reason`.
    pub fn disconnects(&self, reason: CloseReason) -> u64 {
        self.disconnects[reason.index()].get()
    }

    /// Engine.IO messages received from clients.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.get()
    }

    /// Engine.IO messages queued to clients (each recipient of a broadcast counts).
    pub fn messages_out(&self) -> u64 {
        self.messages_out.get()
    }

    /// Broadcasts started on this shard.
    pub fn broadcasts(&self) -> u64 {
        self.broadcasts.get()
    }

    /// Broadcast packets queued to this shard's sockets, whichever shard or machine sent them.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.get()
    }

    /// Volatile packets dropped because the receiver's queue was full.
    pub fn volatile_drops(&self) -> u64 {
        self.volatile_drops.get()
    }

    /// Namespace CONNECTs accepted.
    pub fn namespace_connects(&self) -> u64 {
        self.namespace_connects.get()
    }

    /// Namespace CONNECTs refused for `reason`.
    pub fn namespace_refusals(&self, reason: ConnectRefusal) -> u64 {
        self.namespace_refusals[reason as usize].get()
    }

    /// Requests this shard handed to the shard owning their session (polling requests and
    /// WebSocket upgrades that landed here).
    pub fn handoffs_sent(&self) -> u64 {
        self.handoffs_sent.get()
    }

    /// Requests other shards handed to this one because it owns their session.
    pub fn handoffs_received(&self) -> u64 {
        self.handoffs_received.get()
    }

    /// Bus messages this shard dropped because the target inbox was full.
    pub fn bus_overflows(&self) -> u64 {
        self.bus_overflows.get()
    }

    /// Sessions disconnected because their outbound queue passed its byte limit.
    pub fn slow_consumers(&self) -> u64 {
        self.disconnects(CloseReason::SlowConsumer)
    }

    /// WebSocket connections closed (1009) for a message over `--max-payload`.
    pub fn messages_too_big(&self) -> u64 {
        self.disconnects(CloseReason::MessageTooBig)
    }

    /// WebSocket connections closed (1008) for a message in more than `--ws-max-fragments`
    /// frames.
    pub fn fragment_floods(&self) -> u64 {
        self.disconnects(CloseReason::PolicyViolation(Limit::Fragments))
    }

    /// WebSocket connections closed (1008) for control frames faster than `--ws-control-rate`.
    pub fn control_floods(&self) -> u64 {
        self.disconnects(CloseReason::PolicyViolation(Limit::ControlFrames))
    }

    /// Connections closed (1008) for exceeding `--max-event-rate` persistently.
    pub fn event_floods(&self) -> u64 {
        self.disconnects(CloseReason::PolicyViolation(Limit::EventRate))
    }

    /// Socket.IO packets refused (the connection closes, "parse error") for JSON nested deeper
    /// than `--max-json-depth` or a namespace or event name longer than `--max-name-length`.
    pub fn packets_over_limits(&self) -> u64 {
        self.packets_over_limits.get()
    }

    /// Socket.IO events refused for exceeding `--max-event-rate` (answered with an error ack
    /// when they asked for one, dropped otherwise).
    pub fn events_refused(&self) -> u64 {
        self.events_refused.get()
    }

    /// Requests refused with 431: a head over `--max-head-bytes` or `--max-headers`.
    pub fn heads_too_large(&self) -> u64 {
        self.heads_too_large.get()
    }

    /// Connections closed with 408 because their request head did not arrive within
    /// `--head-timeout`.
    pub fn head_timeouts(&self) -> u64 {
        self.head_timeouts.get()
    }

    /// Requests refused with 400 because their head does not parse or frames its body in a
    /// way that cannot be trusted (`Content-Length` with `Transfer-Encoding`).
    pub fn requests_malformed(&self) -> u64 {
        self.requests_malformed.get()
    }

    /// Requests refused with 408 because their body did not arrive within `--body-timeout`.
    pub fn body_timeouts(&self) -> u64 {
        self.body_timeouts.get()
    }

    /// Handshakes refused with 503 because the process held `--max-connections` sessions.
    pub fn over_max_connections(&self) -> u64 {
        self.over_max_connections.get()
    }

    /// Handshakes refused with 503 because of `--max-handshakes-per-second`.
    pub fn over_handshake_rate(&self) -> u64 {
        self.over_handshake_rate.get()
    }

    /// Times `accept` failed (out of file descriptors, mostly).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.get()
    }

    /// Panics caught while serving a connection or a session, or handling a bus message: each
    /// closed what it served, and the shard went on.
    pub fn panics(&self) -> u64 {
        self.panics.get()
    }

    /// Tasks serving HTTP connections on this shard now (reading requests, answering them,
    /// waiting for the next one). A WebSocket is served by its session's task instead, counted
    /// in [`sessions_open`](Self::sessions_open).
    pub fn connection_tasks(&self) -> u64 {
        self.connection_tasks.get()
    }

    /// TLS handshakes completed on this shard (`--tls-cert`).
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_handshakes.get()
    }

    /// Connections closed because their TLS handshake failed (not TLS, no common protocol or
    /// cipher, a bad record) or did not finish within `--head-timeout`.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// Messages this shard took from its bus inbox: broadcasts, replies, questions and
    /// commands of the other shards and the Redis bridge, and hand-offs.
    pub fn bus_messages_received(&self) -> u64 {
        self.bus_received.get()
    }

    /// Parcels this shard took from its bus inbox: what one sender queued for it within one
    /// turn of its loop travels as one parcel (and wakes it once).
    pub fn bus_parcels_received(&self) -> u64 {
        self.bus_parcels.get()
    }

    /// WebSocket connections that negotiated permessage-deflate (`--websocket-compression`).
    pub fn deflate_negotiated(&self) -> u64 {
        self.deflate_negotiated.get()
    }

    /// WebSocket messages queued compressed (each recipient of a broadcast counts; the
    /// compression itself is done once per message).
    pub fn messages_out_compressed(&self) -> u64 {
        self.messages_out_compressed.get()
    }

    /// Bytes compression took off the frames queued to clients.
    pub fn compression_saved_bytes(&self) -> u64 {
        self.compression_saved_bytes.get()
    }

    /// Compressed WebSocket messages received from clients (and inflated).
    pub fn messages_in_compressed(&self) -> u64 {
        self.messages_in_compressed.get()
    }
}
