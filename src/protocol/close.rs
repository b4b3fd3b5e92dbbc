//! Why an Engine.IO session closes, what each reason means on the wire (Node's reason string,
//! the WebSocket close code), and its name in the counters.

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

    /// Every reason, in the order of [`index`](Self::index).
    pub const ALL: [CloseReason; 12] = [
        CloseReason::TransportClose,
        CloseReason::TransportError,
        CloseReason::PingTimeout,
        CloseReason::ParseError,
        CloseReason::MessageTooBig,
        CloseReason::SlowConsumer,
        CloseReason::ForcedClose,
        CloseReason::ServerShutdown,
        CloseReason::InvalidUtf8,
        CloseReason::PolicyViolation(Limit::Fragments),
        CloseReason::PolicyViolation(Limit::ControlFrames),
        CloseReason::PolicyViolation(Limit::EventRate),
    ];

    /// The reason's place in [`ALL`](Self::ALL), for counters kept per reason.
    pub fn index(self) -> usize {
        match self {
            CloseReason::TransportClose => 0,
            CloseReason::TransportError => 1,
            CloseReason::PingTimeout => 2,
            CloseReason::ParseError => 3,
            CloseReason::MessageTooBig => 4,
            CloseReason::SlowConsumer => 5,
            CloseReason::ForcedClose => 6,
            CloseReason::ServerShutdown => 7,
            CloseReason::InvalidUtf8 => 8,
            CloseReason::PolicyViolation(Limit::Fragments) => 9,
            CloseReason::PolicyViolation(Limit::ControlFrames) => 10,
            CloseReason::PolicyViolation(Limit::EventRate) => 11,
        }
    }

    /// The reason's name in metrics (`reason` label), one per reason.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport_close",
            CloseReason::TransportError => "transport_error",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::ParseError => "parse_error",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ForcedClose => "forced_close",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::PolicyViolation(Limit::Fragments) => "fragments",
            CloseReason::PolicyViolation(Limit::ControlFrames) => "control_frames",
            CloseReason::PolicyViolation(Limit::EventRate) => "event_rate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_index_and_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            assert!(labels.insert(reason.label()), "{reason:?}");
        }
    }
}
