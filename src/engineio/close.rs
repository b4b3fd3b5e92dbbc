//! Why a session closes, what each reason means on the wire, and which counter it adds to.

use crate::metrics::ShardMetrics;

/// Why a session closed. Socket.IO maps these to its disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection (TCP close, WebSocket close, or a `1` packet).
    TransportClose,
    /// The transport broke: a read or write failed, the client broke the WebSocket protocol,
    /// or it misused polling (overlapping requests, an aborted long poll, binary content).
    TransportError,
    /// No pong within `ping_timeout`.
    PingTimeout,
    /// The client sent something that does not decode.
    ParseError,
    /// The client sent a message over `max_payload`.
    MessageTooBig,
    /// The outbound queue passed `max_buffered_bytes`.
    SlowConsumer,
    /// The server closed the session (an app decision).
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
    /// A text message, or the reason of a close frame, that is not UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// The client passed a limit on how it may use the connection (not a size limit).
    PolicyViolation(Limit),
}

/// The limits whose violation closes a connection with 1008 (policy violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More fragments in one WebSocket message than `EngineConfig::max_fragments`.
    Fragments,
    /// WebSocket control frames (pings, pongs) faster than `EngineConfig::control_frame_rate`.
    ControlFrames,
    /// Socket.IO events faster than the application's event rate, persistently.
    EventRate,
}

impl CloseReason {
    /// The reason string Node's engine.io and socket.io use.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError | CloseReason::MessageTooBig => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            CloseReason::InvalidUtf8 => "transport error",
            CloseReason::PolicyViolation(_) => "policy violation",
        }
    }

    /// The WebSocket close code sent for this reason, if a close frame can be sent at all.
    pub(crate) fn ws_close_code(self) -> Option<u16> {
        match self {
            CloseReason::ServerShutdown => Some(1001),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::TransportError => Some(1002),
            CloseReason::InvalidUtf8 => Some(1007),
            CloseReason::PolicyViolation(_) => Some(1008),
            CloseReason::ParseError | CloseReason::PingTimeout | CloseReason::ForcedClose => {
                Some(1000)
            }
            CloseReason::TransportClose | CloseReason::SlowConsumer => None,
        }
    }

    /// Whether the packets already queued are still delivered before the close: when the
    /// server chose to close, as Node drains its write buffer first; not when the transport
    /// failed or the client left.
    pub(crate) fn flushes_queue(self) -> bool {
        matches!(self, CloseReason::ForcedClose | CloseReason::ServerShutdown)
    }

    /// Adds the close to the shard's counter of the limit it hit, if it hit one.
    pub(crate) fn count(self, metrics: &ShardMetrics) {
        match self {
            CloseReason::SlowConsumer => metrics.slow_consumer(),
            CloseReason::MessageTooBig => metrics.message_too_big(),
            CloseReason::PolicyViolation(Limit::Fragments) => metrics.fragment_flood(),
            CloseReason::PolicyViolation(Limit::ControlFrames) => metrics.control_flood(),
            CloseReason::PolicyViolation(Limit::EventRate) => metrics.event_flood(),
            _ => {}
        }
    }
}
