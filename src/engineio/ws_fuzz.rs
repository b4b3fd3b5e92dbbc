//! The WebSocket frame reader driven without a connection, for the fuzz targets (`fuzz/`) and
//! their corpus test: bytes in, in the pieces a socket might deliver them, and what the reader
//! made of them out. Exported as `shardio::fuzz`; not part of the API.

use std::rc::Rc;

use super::rate::RateLimit;
use super::ws_reader::{FrameLimits, FrameSink, Reader, WsMessage};
use crate::config::defaults;
use crate::protocol::close::CloseReason;
use crate::protocol::frame::OutFrame;

/// What the frame reader made of the bytes it was fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete data message: whether it is text, and its bytes.
    Message(bool, Vec<u8>),
    /// A control frame the server sends back (a pong, a close): its whole wire bytes.
    Control(Vec<u8>),
    /// The reader ended the connection.
    Closed(CloseReason),
}

/// What feeding the reader gave: the events in order, and the most bytes it held between two
/// reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsRun {
    /// Messages, control frames and the close, in order.
    pub events: Vec<WsEvent>,
    /// The largest `partial frame + fragmented message` held after any piece.
    pub max_buffered: usize,
}

struct Recorder(Vec<WsEvent>);

impl FrameSink for Recorder {
    fn is_open(&self) -> bool {
        true
    }

    fn message(&mut self, message: WsMessage<'_>) -> Result<(), CloseReason> {
        self.0.push(match message {
            WsMessage::Text(text) => WsEvent::Message(true, text.as_bytes().to_vec()),
            WsMessage::Binary(data) => WsEvent::Message(false, data.to_vec()),
        });
        Ok(())
    }

    fn control(&mut self, frame: OutFrame) -> Result<(), CloseReason> {
        self.0.push(WsEvent::Control(frame.wire().to_vec()));
        Ok(())
    }
}

/// Feeds `pieces` to a fresh reader of a connection whose messages may be `max_payload` bytes
/// (in at most the default number of fragments), one piece per read, until the reader ends the
/// connection. Control frames are not rate limited here, so that a run does not depend on the
/// clock.
pub fn ws_read<'a>(max_payload: usize, pieces: impl IntoIterator<Item = &'a [u8]>) -> WsRun {
    let limits = FrameLimits {
        max_payload,
        max_fragments: defaults::WS_MAX_FRAGMENTS,
        control: RateLimit::new(0, 0),
    };
    let mut reader = Reader::new(Vec::new(), Rc::new(limits), None);
    let mut sink = Recorder(Vec::new());
    let mut max_buffered = 0;
    for piece in pieces {
        // The reader unmasks in place, as it does in the shard's scratch buffer.
        let mut read = piece.to_vec();
        if let Err(reason) = reader.feed(&mut read, &mut sink) {
            sink.0.push(WsEvent::Closed(reason));
            break;
        }
        max_buffered = max_buffered.max(reader.buffered());
    }
    WsRun {
        events: sink.0,
        max_buffered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked binary frame header with a 64-bit length.
    fn header_with_length(len: u64) -> Vec<u8> {
        let mut frame = vec![0x82, 0xff];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame
    }

    #[test]
    fn a_length_with_its_top_bit_set_is_a_protocol_error_even_without_a_limit() {
        // Found by the ws_frames fuzz target: with `max_payload` at usize::MAX the frame's end
        // overflowed (a panic in the session's task, and a session never removed).
        for len in [u64::MAX, 1 << 63] {
            let frame = header_with_length(len);
            let run = ws_read(usize::MAX, [&frame[..]]);
            assert_eq!(
                run.events,
                vec![WsEvent::Closed(CloseReason::TransportError)]
            );
        }
        // The largest length RFC 6455 allows waits for its payload.
        let frame = header_with_length(i64::MAX as u64);
        assert_eq!(ws_read(usize::MAX, [&frame[..]]).events, vec![]);
    }
}
