//! Why a session closes, and what each reason means on the wire.

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
        }
    }

    /// The WebSocket close code sent for this reason, if a close frame can be sent at all.
    pub(crate) fn ws_close_code(self) -> Option<u16> {
        match self {
            CloseReason::ServerShutdown => Some(1001),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::TransportError => Some(1002),
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
}
