//! Outbound packets, encoded once: a complete server-to-client WebSocket frame whose payload is
//! also the packet's polling form. Broadcasts share one `OutFrame` between every recipient, and
//! so its compressed form (permessage-deflate), made at most once by the first recipient that
//! takes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::deflate;

/// Room reserved in front of a payload for the longest server frame header (no mask).
const HEADER_ROOM: usize = 10;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// RSV1: the frame starts a compressed message (RFC 7692 §6).
const RSV1: u8 = 0x40;

/// One outbound Engine.IO packet (or WebSocket control frame), cheap to clone.
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// The whole WebSocket frame: header, then payload.
    wire: Bytes,
    /// Where the payload starts in `wire`.
    payload_at: u8,
    kind: FrameKind,
    /// The compressed form, for data frames of [`deflate::THRESHOLD`] bytes or more: shared by
    /// every clone, so a broadcast is compressed once whoever its recipients are.
    deflated: Option<Arc<Deflated>>,
}

/// Two frames are equal when they put the same bytes on the wire.
impl PartialEq for OutFrame {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.wire == other.wire
    }
}

impl Eq for OutFrame {}

/// The compressed form of a frame, made by the first connection that wants it.
#[derive(Debug, Default)]
struct Deflated {
    /// Someone is making it, or made it: nobody else does (and nobody waits: a connection
    /// that finds it in the making sends the plain frame, which RFC 7692 allows any time).
    claimed: AtomicBool,
    /// The compressed frame; `None` when compression saves nothing.
    form: OnceLock<Option<OutFrame>>,
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

    fn finish(buf: Vec<u8>, opcode: u8, kind: FrameKind) -> OutFrame {
        let compressible =
            kind != FrameKind::Control && buf.len() - HEADER_ROOM >= deflate::THRESHOLD;
        let mut frame = Self::framed(buf, 0x80 | opcode, kind);
        if compressible {
            frame.deflated = Some(Arc::default());
        }
        frame
    }

    /// The frame whose payload follows `HEADER_ROOM` bytes in `buf`, with `first` as the
    /// header's first byte (FIN, RSV bits, opcode).
    fn framed(mut buf: Vec<u8>, first: u8, kind: FrameKind) -> OutFrame {
        let len = buf.len() - HEADER_ROOM;
        let mut header = [0u8; HEADER_ROOM];
        header[0] = first;
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
            deflated: None,
        }
    }

    /// The frame as a connection that negotiated permessage-deflate under `agreement` gets it:
    /// the compressed form (RSV1 set) of a data frame of [`deflate::THRESHOLD`] bytes or more,
    /// made on first use and shared by every clone; `None` where the plain frame goes instead
    /// (smaller, incompressible, too long for the connection's window, or being compressed by
    /// another thread right now). The compressed frame's payload is the compressed message.
    pub(crate) fn deflated(&self, agreement: &deflate::Agreement) -> Option<&OutFrame> {
        let cell = self.deflated.as_deref()?;
        if !agreement.fits_window(self.payload().len()) {
            return None;
        }
        if let Some(form) = cell.form.get() {
            return form.as_ref();
        }
        if cell.claimed.swap(true, Ordering::AcqRel) {
            return None;
        }
        let mut buf = vec![0u8; HEADER_ROOM];
        let form = deflate::compress_into(self.payload(), &mut buf)
            .then(|| Self::framed(buf, 0x80 | RSV1 | (self.wire[0] & 0x0F), self.kind));
        cell.form.get_or_init(|| form).as_ref()
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
    fn the_compressed_form_is_made_once_and_shared() {
        let agreement = deflate::negotiate(["permessage-deflate"]).unwrap();
        let small = OutFrame::text(8, |b| b.extend_from_slice(b"4hello"));
        assert!(small.deflated(&agreement).is_none(), "below the threshold");
        assert!(OutFrame::close(1000).deflated(&agreement).is_none());
        let text = "4".to_string() + &"{\"k\":\"value\"},".repeat(200);
        let frame = OutFrame::text(text.len(), |b| b.extend_from_slice(text.as_bytes()));
        let copy = frame.clone();
        let deflated = frame.deflated(&agreement).expect("compressible");
        assert_eq!(deflated.wire()[0], 0xC1, "FIN, RSV1, text");
        assert!(deflated.len() < frame.len() / 10, "{}", deflated.len());
        let shared = copy.deflated(&agreement).unwrap();
        assert_eq!(
            shared.wire().as_ptr(),
            deflated.wire().as_ptr(),
            "compressed once, shared by the clones"
        );
        let mut inflater = deflate::Inflater::default();
        let inflated = inflater.message(deflated.payload(), 1 << 20).unwrap();
        assert_eq!(inflated, text.as_bytes());
        let narrow = deflate::negotiate(["permessage-deflate; server_max_window_bits=9"]).unwrap();
        assert!(frame.deflated(&narrow).is_none(), "longer than the window");
        let mut seed = 0x9e37_79b9u32;
        let noise: Vec<u8> = (0..2000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let binary = OutFrame::binary(&noise);
        assert!(binary.deflated(&agreement).is_none(), "incompressible");
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
