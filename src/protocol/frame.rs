//! Outbound packets, encoded once: a complete server-to-client WebSocket frame whose payload is
//! also the packet's polling form. Broadcasts share one `OutFrame` between every recipient.

use bytes::Bytes;

/// Room reserved in front of a payload for the longest server frame header (no mask).
const HEADER_ROOM: usize = 10;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// One outbound Engine.IO packet (or WebSocket control frame), cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFrame {
    /// The whole WebSocket frame: header, then payload.
    wire: Bytes,
    /// Where the payload starts in `wire`.
    payload_at: u8,
    kind: FrameKind,
}

/// What an outbound frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// An Engine.IO text packet (`4...`, `2`, `0{...}`).
    Text,
    /// A binary `message` packet: raw bytes on WebSocket, `b`+base64 on polling.
    Binary,
    /// A WebSocket control frame; never sent on polling.
    Control,
}

impl OutFrame {
    /// A text packet whose payload `write` appends to the buffer it is given.
    pub fn text(capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> OutFrame {
        let mut buf = Vec::with_capacity(HEADER_ROOM + capacity);
        buf.resize(HEADER_ROOM, 0);
        write(&mut buf);
        Self::finish(buf, OP_TEXT, FrameKind::Text)
    }

    /// A binary message packet.
    pub fn binary(data: &[u8]) -> OutFrame {
        let mut buf = Vec::with_capacity(HEADER_ROOM + data.len());
        buf.resize(HEADER_ROOM, 0);
        buf.extend_from_slice(data);
        Self::finish(buf, OP_BINARY, FrameKind::Binary)
    }

    /// A WebSocket close frame with a status code.
    pub fn close(code: u16) -> OutFrame {
        let mut buf = vec![0u8; HEADER_ROOM];
        buf.extend_from_slice(&code.to_be_bytes());
        Self::finish(buf, OP_CLOSE, FrameKind::Control)
    }

    /// A WebSocket close frame without a status code (the peer sees 1005, "no status").
    pub fn close_without_code() -> OutFrame {
        Self::finish(vec![0u8; HEADER_ROOM], OP_CLOSE, FrameKind::Control)
    }

    /// A WebSocket pong answering a ping with `data` (at most 125 bytes, checked by the reader).
    pub fn pong(data: &[u8]) -> OutFrame {
        let mut buf = vec![0u8; HEADER_ROOM];
        buf.extend_from_slice(data);
        Self::finish(buf, OP_PONG, FrameKind::Control)
    }

    fn finish(mut buf: Vec<u8>, opcode: u8, kind: FrameKind) -> OutFrame {
        let len = buf.len() - HEADER_ROOM;
        let mut header = [0u8; HEADER_ROOM];
        header[0] = 0x80 | opcode;
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if len <= u16::MAX as usize {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = HEADER_ROOM - header_len;
        buf[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
        OutFrame {
            wire: Bytes::from(buf).slice(start..),
            payload_at: header_len as u8,
            kind,
        }
    }

    /// The complete WebSocket frame.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The Engine.IO packet alone (text packet, or the raw binary data).
    pub fn payload(&self) -> &[u8] {
        &self.wire[self.payload_at as usize..]
    }

    /// What the frame carries.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// Bytes this frame holds in a socket's outbound queue.
    pub fn len(&self) -> usize {
        self.wire.len()
    }

    /// Never true for a built frame; here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_text_frame() {
        let f = OutFrame::text(8, |b| b.extend_from_slice(b"4hello"));
        assert_eq!(f.wire().as_ref(), b"\x81\x064hello");
        assert_eq!(f.payload(), b"4hello");
        assert_eq!(f.kind(), FrameKind::Text);
    }

    #[test]
    fn medium_and_large_frames_use_extended_lengths() {
        let data = vec![7u8; 300];
        let f = OutFrame::binary(&data);
        assert_eq!(&f.wire()[..4], &[0x82, 126, 0x01, 0x2c]);
        assert_eq!(f.payload(), &data[..]);
        let data = vec![1u8; 70_000];
        let f = OutFrame::binary(&data);
        assert_eq!(&f.wire()[..2], &[0x82, 127]);
        assert_eq!(&f.wire()[2..10], &70_000u64.to_be_bytes());
        assert_eq!(f.payload().len(), 70_000);
    }

    #[test]
    fn control_frames() {
        assert_eq!(
            OutFrame::close(1001).wire().as_ref(),
            &[0x88, 2, 0x03, 0xe9]
        );
        assert_eq!(OutFrame::close_without_code().wire().as_ref(), &[0x88, 0]);
        assert_eq!(
            OutFrame::pong(b"hi").wire().as_ref(),
            &[0x8a, 2, b'h', b'i']
        );
    }

    #[test]
    fn header_matches_tungstenite() {
        use tungstenite::protocol::frame::{coding::OpCode, FrameHeader};
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let f = OutFrame::binary(&vec![0u8; len]);
            let mut cursor = std::io::Cursor::new(f.wire().as_ref());
            let (header, parsed_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert_eq!(parsed_len, len as u64);
            assert_eq!(
                header.opcode,
                OpCode::Data(tungstenite::protocol::frame::coding::Data::Binary)
            );
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(cursor.position() as usize, f.wire().len() - len);
        }
    }
}
