//! Reading WebSocket frames (RFC 6455 §5-7): the incremental frame reader of one connection,
//! parsing in place out of one scratch buffer per shard thread, and the connection it reads
//! from. What the reader refuses, and the close code each refusal gets (§7.4): a frame that
//! breaks the protocol (unmasked, RSV bits, reserved opcode, a bad control frame, a bad
//! continuation, a bad close frame) 1002; text that is not UTF-8 1007, as soon as the bytes
//! that make it invalid arrive; more fragments in one message than `max_fragments`, or control
//! frames faster than their rate, 1008; a message over `max_payload` 1009, from the frame
//! header, before anything is buffered.
//!
//! permessage-deflate (RFC 7692), when negotiated: RSV1 on the first frame of a data message
//! marks it compressed (RSV1 anywhere else, or without the extension, is 1002). Its frames are
//! bounded by `max_payload` as they come; the whole message is then inflated within
//! `max_payload` (1009 as soon as it would pass: a decompression bomb costs the limit), and
//! its text checked once inflated (1007). Data that does not inflate is 1002.
//!
//! Memory: an idle connection holds no read buffer. Reads go into the shard's scratch buffer,
//! are parsed in place, and only an incomplete frame is copied into the connection's own
//! `partial` buffer; it and a fragmented message being assembled hold at most `max_payload`
//! bytes together.

use std::cell::{Cell, RefCell};
use std::io::{self, Cursor};
use std::rc::Rc;

use crate::net::Stream;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::config::EngineConfig;
use super::rate::{RateLimit, RateState, Verdict};
use crate::protocol::close::{CloseReason, Limit};
use crate::protocol::deflate::{Agreement, InflateError, Inflater};
use crate::protocol::frame::OutFrame;

/// Size of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
    /// The inflater of the shard's clients that compress each message on its own, reset
    /// before each message (taken out while in use).
    static FRESH_INFLATER: Cell<Option<Inflater>> = const { Cell::new(None) };
}

/// A WebSocket connection carrying (or about to carry) a session.
pub(crate) struct WsTransport {
    pub(super) stream: Stream,
    pub(super) reader: Reader,
    /// permessage-deflate, when the handshake negotiated it.
    pub(super) deflate: Option<Agreement>,
}

impl WsTransport {
    /// `leftover`: bytes the client sent after the upgrade request, read with its head.
    pub(super) fn new(
        stream: Stream,
        leftover: Vec<u8>,
        limits: Rc<FrameLimits>,
        deflate: Option<Agreement>,
    ) -> Self {
        WsTransport {
            stream,
            reader: Reader::new(leftover, limits, deflate),
            deflate,
        }
    }
}

/// The limits on what a client sends, the same for every connection of an endpoint.
#[derive(Debug)]
pub(crate) struct FrameLimits {
    /// The largest message, in bytes.
    pub(super) max_payload: usize,
    /// Frames one message may come in.
    pub(super) max_fragments: usize,
    /// Control frames (pings, pongs) per second, bursts of as many.
    pub(super) control: RateLimit,
}

impl FrameLimits {
    pub(crate) fn new(config: &EngineConfig) -> Self {
        FrameLimits {
            max_payload: config.max_payload,
            max_fragments: config.max_fragments,
            control: RateLimit::new(config.control_frame_rate, config.control_frame_rate),
        }
    }
}

/// One complete data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WsMessage<'a> {
    /// A text message, valid UTF-8.
    Text(&'a str),
    Binary(&'a [u8]),
}

/// Where the reader delivers what it decodes: the session, or a probing candidate.
pub(super) trait FrameSink {
    /// Whether more frames are wanted (false once the session is closing).
    fn is_open(&self) -> bool;
    /// One complete data message.
    fn message(&mut self, message: WsMessage<'_>) -> Result<(), CloseReason>;
    /// A control frame to send back (pong, close echo); an error when it cannot be queued.
    fn control(&mut self, frame: OutFrame) -> Result<(), CloseReason>;
    /// The message about to be delivered came compressed (permessage-deflate).
    fn inflated(&mut self) {}
}

/// Reads once, parsing frames straight out of the shard's scratch buffer. `Ok(true)` when the
/// read filled the buffer (more is probably waiting).
pub(super) fn read_ready(
    stream: &Stream,
    reader: &mut Reader,
    sink: &mut impl FrameSink,
) -> Result<bool, CloseReason> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match stream.try_read(&mut scratch[..]) {
            Ok(0) => Err(CloseReason::TransportClose),
            Ok(n) => {
                reader.feed(&mut scratch[..n], sink)?;
                Ok(n == SCRATCH_LEN)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => Err(CloseReason::TransportError),
        }
    })
}

/// Incremental WebSocket frame reader of one connection.
pub(super) struct Reader {
    /// An incomplete frame carried over to the next read; empty (no allocation) when idle.
    partial: Vec<u8>,
    /// A fragmented message being assembled (boxed: idle connections stay small).
    fragments: Option<Box<Fragmented>>,
    limits: Rc<FrameLimits>,
    /// The client's control frames against `limits.control`.
    control: RateState,
    /// The text message being received, checked as its bytes arrive (fail fast).
    utf8: Utf8Check,
    /// Payload bytes of the incomplete frame at the front of `partial` already checked.
    checked: usize,
    inflate: Inflate,
}

/// permessage-deflate on the way in.
enum Inflate {
    /// Not negotiated: RSV1 is a protocol error.
    Off,
    /// The client compresses each message on its own (`client_no_context_takeover`): the
    /// shard's inflater serves, reset per message.
    Fresh,
    /// The client keeps its context between messages: this connection's inflater, made on its
    /// first compressed message and kept to the end.
    Kept(Option<Box<Inflater>>),
}

/// A fragmented message being assembled.
struct Fragmented {
    text: bool,
    /// Its frames' payloads: the message, or (`compressed`) the message compressed.
    data: Vec<u8>,
    /// Frames received so far.
    frames: usize,
    compressed: bool,
}

impl Reader {
    pub(super) fn new(
        leftover: Vec<u8>,
        limits: Rc<FrameLimits>,
        deflate: Option<Agreement>,
    ) -> Self {
        Reader {
            partial: leftover,
            fragments: None,
            limits,
            control: RateState::default(),
            utf8: Utf8Check::default(),
            checked: 0,
            inflate: match deflate {
                None => Inflate::Off,
                Some(a) if a.client_no_context_takeover => Inflate::Fresh,
                Some(_) => Inflate::Kept(None),
            },
        }
    }

    /// Bytes the reader holds between reads: an incomplete frame and a fragmented message.
    pub(super) fn buffered(&self) -> usize {
        self.partial.len() + self.fragments.as_ref().map_or(0, |f| f.data.len())
    }

    pub(super) fn feed(
        &mut self,
        data: &mut [u8],
        sink: &mut impl FrameSink,
    ) -> Result<(), CloseReason> {
        if self.partial.is_empty() {
            let used = self.parse(data, sink)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.parse(&mut buf, sink)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
        }
        Ok(())
    }

    /// Whether a frame with `opcode` (and `rsv1`) carries text of the message being received,
    /// as it will be delivered (not compressed).
    fn carries_text(&self, opcode: OpCode, rsv1: bool) -> bool {
        match opcode {
            OpCode::Data(Data::Text) => self.fragments.is_none() && !rsv1,
            OpCode::Data(Data::Continue) => self
                .fragments
                .as_ref()
                .is_some_and(|f| f.text && !f.compressed),
            _ => false,
        }
    }

    /// Handles every complete frame at the start of `buf`; returns the bytes consumed.
    fn parse(&mut self, buf: &mut [u8], sink: &mut impl FrameSink) -> Result<usize, CloseReason> {
        let mut pos = 0;
        while pos < buf.len() && sink.is_open() {
            let mut cursor = Cursor::new(&buf[pos..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => return Err(CloseReason::TransportError),
            };
            let start = pos + cursor.position() as usize;
            let Some(mask) = header.mask else {
                return Err(CloseReason::TransportError); // clients must mask (RFC 6455 5.1)
            };
            if header.rsv2 || header.rsv3 {
                return Err(CloseReason::TransportError);
            }
            // RSV1 marks the first frame of a compressed message (RFC 7692 §6.1), and only
            // where the extension was negotiated.
            let first_data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            if header.rsv1 && (matches!(self.inflate, Inflate::Off) || !first_data) {
                return Err(CloseReason::TransportError);
            }
            let is_control = matches!(header.opcode, OpCode::Control(_));
            if is_control && (len > 125 || !header.is_final) {
                return Err(CloseReason::TransportError);
            }
            let assembled = self.fragments.as_ref().map_or(0, |f| f.data.len());
            if !is_control && len.saturating_add(assembled as u64) > self.limits.max_payload as u64
            {
                return Err(CloseReason::MessageTooBig);
            }
            // RFC 6455 §5.2: a 64-bit length has its top bit clear. Without a practical limit
            // (`max_payload` near usize::MAX) nothing else stops one (found by fuzzing).
            let Some(len) = usize::try_from(len).ok().filter(|_| len >> 63 == 0) else {
                return Err(CloseReason::TransportError);
            };
            let Some(end) = start.checked_add(len) else {
                return Err(CloseReason::TransportError);
            };
            let text = self.carries_text(header.opcode, header.rsv1);
            if text && self.checked == 0 && header.opcode == OpCode::Data(Data::Text) {
                self.utf8 = Utf8Check::default(); // a new text message starts
            }
            if end > buf.len() {
                // Check what has arrived of a text frame, so that invalid UTF-8 fails now
                // rather than when the rest of the frame comes (RFC 6455 §8.1).
                if text && self.checked < buf.len() - start {
                    let fresh = &buf[start + self.checked..];
                    if !self.utf8.push_masked(fresh, mask, self.checked) {
                        return Err(CloseReason::InvalidUtf8);
                    }
                    self.checked = buf.len() - start;
                }
                break;
            }
            let payload = &mut buf[start..end];
            unmask(payload, mask);
            // A final frame is checked whole with the message; a fragment before it now.
            if text && !header.is_final && !self.utf8.push(&payload[self.checked.min(len)..]) {
                return Err(CloseReason::InvalidUtf8);
            }
            self.checked = 0;
            self.on_frame(header.opcode, header.is_final, header.rsv1, payload, sink)?;
            pos = end;
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        compressed: bool,
        payload: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<(), CloseReason> {
        match opcode {
            OpCode::Control(Control::Close) => {
                sink.control(close_reply(payload)?)?;
                Err(CloseReason::TransportClose)
            }
            OpCode::Control(control @ (Control::Ping | Control::Pong)) => {
                if self.limits.control.check(&mut self.control) != Verdict::Allowed {
                    return Err(CloseReason::PolicyViolation(Limit::ControlFrames));
                }
                if control == Control::Ping {
                    sink.control(OutFrame::pong(payload))?;
                }
                Ok(())
            }
            OpCode::Data(Data::Continue) => {
                let Some(message) = self.fragments.as_mut() else {
                    return Err(CloseReason::TransportError);
                };
                message.frames += 1;
                if message.frames > self.limits.max_fragments {
                    return Err(CloseReason::PolicyViolation(Limit::Fragments));
                }
                message.data.extend_from_slice(payload);
                match self.fragments.take() {
                    Some(message) if fin => {
                        self.deliver(message.text, message.compressed, &message.data, sink)
                    }
                    unfinished => {
                        self.fragments = unfinished;
                        Ok(())
                    }
                }
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(CloseReason::TransportError);
                }
                let text = kind == Data::Text;
                if fin {
                    self.deliver(text, compressed, payload, sink)
                } else {
                    self.fragments = Some(Box::new(Fragmented {
                        text,
                        data: payload.to_vec(),
                        frames: 1,
                        compressed,
                    }));
                    Ok(())
                }
            }
            _ => Err(CloseReason::TransportError),
        }
    }

    /// Hands a complete message to the sink, inflated first if it came compressed.
    fn deliver(
        &mut self,
        text: bool,
        compressed: bool,
        data: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<(), CloseReason> {
        if !compressed {
            return deliver(text, data, sink);
        }
        let limit = self.limits.max_payload;
        let inflated = match &mut self.inflate {
            Inflate::Off => Err(InflateError::Corrupt),
            Inflate::Kept(inflater) => inflater
                .get_or_insert_with(Box::default)
                .message(data, limit),
            Inflate::Fresh => FRESH_INFLATER.with(|cell| {
                let mut inflater = cell.take().unwrap_or_default();
                inflater.reset();
                let inflated = inflater.message(data, limit);
                cell.set(Some(inflater));
                inflated
            }),
        };
        let inflated = inflated.map_err(|e| match e {
            InflateError::TooBig => CloseReason::MessageTooBig,
            InflateError::Corrupt => CloseReason::TransportError,
        })?;
        sink.inflated();
        deliver(text, &inflated, sink)
    }
}

/// Hands a complete message to the sink; text must be UTF-8.
fn deliver(text: bool, data: &[u8], sink: &mut impl FrameSink) -> Result<(), CloseReason> {
    if text {
        let text = std::str::from_utf8(data).map_err(|_| CloseReason::InvalidUtf8)?;
        sink.message(WsMessage::Text(text))
    } else {
        sink.message(WsMessage::Binary(data))
    }
}

/// The close frame that answers a client's close (RFC 6455 §5.5.1): its code echoed, 1000 for
/// a close without one. A malformed close (one byte, a code no endpoint may send) is a
/// protocol error (1002), a reason that is not UTF-8 invalid data (1007) (§7.4).
fn close_reply(payload: &[u8]) -> Result<OutFrame, CloseReason> {
    match payload {
        [] => Ok(OutFrame::close(1000)),
        [_] => Err(CloseReason::TransportError),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !close_code_is_valid(code) {
                return Err(CloseReason::TransportError);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(CloseReason::InvalidUtf8);
            }
            Ok(OutFrame::close(code))
        }
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4.1 and the IANA registry):
/// 1000-1003 and 1007-1014 are defined for the wire (1004 is reserved, 1005, 1006 and 1015
/// must never be sent), 3000-3999 are registered for libraries and 4000-4999 private; all else
/// (0-999, 1016-2999, 5000 and up) is invalid.
fn close_code_is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Checks a text piece by piece as it arrives: the incomplete code point a piece ends with is
/// carried to the next. `std::str::from_utf8` does the checking.
#[derive(Debug, Default, Clone, Copy)]
struct Utf8Check {
    carry: [u8; 3],
    carried: u8,
}

impl Utf8Check {
    /// Takes the next bytes of the text; false when no continuation can make it UTF-8.
    fn push(&mut self, mut bytes: &[u8]) -> bool {
        if self.carried > 0 {
            let have = self.carried as usize;
            let width = match self.carry[0] {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (width - have).min(bytes.len());
            let mut point = [0u8; 4];
            point[..have].copy_from_slice(&self.carry[..have]);
            point[have..have + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            match std::str::from_utf8(&point[..have + take]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: every byte given was taken.
                    self.carry[..have + take].copy_from_slice(&point[..have + take]);
                    self.carried = (have + take) as u8;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carried = rest.len() as u8;
                true
            }
        }
    }

    /// [`Self::push`] of bytes still masked, the first of which is at `offset` in its frame.
    fn push_masked(&mut self, bytes: &[u8], mask: [u8; 4], offset: usize) -> bool {
        const CHUNK: usize = 256;
        let mut plain = [0u8; CHUNK];
        for (i, piece) in bytes.chunks(CHUNK).enumerate() {
            let at = offset + i * CHUNK;
            for (j, b) in piece.iter().enumerate() {
                plain[j] = b ^ mask[(at + j) & 3];
            }
            if !self.push(&plain[..piece.len()]) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_checked_across_pieces() {
        let text = "a€😀b".as_bytes();
        for split in 0..text.len() {
            for split2 in split..text.len() {
                let mut check = Utf8Check::default();
                assert!(check.push(&text[..split]));
                assert!(check.push(&text[split..split2]));
                assert!(check.push(&text[split2..]));
            }
        }
        let mut check = Utf8Check::default();
        assert!(check.push(&[0xE2, 0x82]));
        assert!(!check.push(&[0x41]), "a broken code point fails at once");
        let mut check = Utf8Check::default();
        assert!(
            !check.push(&[0xED, 0xA0]),
            "a surrogate fails at its second byte"
        );
        let mut check = Utf8Check::default();
        assert!(check.push(&[0xF0]));
        assert!(check.push(&[0x9F]));
        assert!(!check.push(&[0x98, 0xFF]));
        let mut check = Utf8Check::default();
        let mask = [1, 2, 3, 4];
        let masked: Vec<u8> = "€€€"
            .bytes()
            .enumerate()
            .map(|(i, b)| b ^ mask[(i + 2) & 3])
            .collect();
        assert!(check.push_masked(&masked, mask, 2));
        assert_eq!(check.carried, 0);
    }

    #[test]
    fn close_codes_follow_rfc_6455_7_4() {
        for valid in [
            1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 3999, 4000, 4999,
        ] {
            assert!(close_code_is_valid(valid), "{valid}");
        }
        for invalid in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!close_code_is_valid(invalid), "{invalid}");
        }
        assert!(close_reply(&[0x03, 0xE8, b'o', b'k']).is_ok());
        assert_eq!(
            close_reply(&[0x03, 0xE8, 0xFF]).err(),
            Some(CloseReason::InvalidUtf8)
        );
        assert_eq!(
            close_reply(&[0x03]).err(),
            Some(CloseReason::TransportError)
        );
        assert_eq!(
            close_reply(&[0x03, 0xE7]).err(),
            Some(CloseReason::TransportError)
        );
        assert_eq!(close_reply(&[]).ok(), Some(OutFrame::close(1000)));
    }
}
