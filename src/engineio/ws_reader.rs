//! Reading WebSocket frames: the incremental frame reader of one connection, parsing in place
//! out of one scratch buffer per shard thread, and the connection it reads from.
//!
//! Memory: an idle connection holds no read buffer. Reads go into the shard's scratch buffer,
//! are parsed in place, and only an incomplete frame is copied into the connection's own
//! `partial` buffer (bounded by `max_payload`).

use std::cell::RefCell;
use std::io::{self, Cursor};

use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::close::CloseReason;
use crate::protocol::frame::OutFrame;

/// Size of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// A WebSocket connection carrying (or about to carry) a session.
pub(crate) struct WsTransport {
    pub(super) stream: TcpStream,
    pub(super) reader: Reader,
}

impl WsTransport {
    /// `leftover`: bytes the client sent after the upgrade request, read with its head.
    pub(super) fn new(stream: TcpStream, leftover: Vec<u8>, max_payload: usize) -> Self {
        WsTransport {
            stream,
            reader: Reader::new(leftover, max_payload),
        }
    }
}

/// Where the reader delivers what it decodes: the session, or a probing candidate.
pub(super) trait FrameSink {
    /// Whether more frames are wanted (false once the session is closing).
    fn is_open(&self) -> bool;
    /// One complete data message.
    fn message(&mut self, text: bool, data: &[u8]) -> Result<(), CloseReason>;
    /// A control frame to send back (pong, close echo).
    fn control(&mut self, frame: OutFrame);
}

/// Reads once, parsing frames straight out of the shard's scratch buffer. `Ok(true)` when the
/// read filled the buffer (more is probably waiting).
pub(super) fn read_ready(
    stream: &TcpStream,
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
    /// A fragmented message being assembled: whether it is text, and its bytes so far.
    fragments: Option<(bool, Vec<u8>)>,
    max_payload: usize,
}

impl Reader {
    /// A reader that starts with `partial`, bytes already read from the connection.
    pub(super) fn new(partial: Vec<u8>, max_payload: usize) -> Self {
        Reader {
            partial,
            fragments: None,
            max_payload,
        }
    }

    /// Bytes the reader holds between reads: an incomplete frame and a fragmented message.
    pub(super) fn buffered(&self) -> usize {
        self.partial.len() + self.fragments.as_ref().map_or(0, |(_, f)| f.len())
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
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(CloseReason::TransportError);
            }
            let is_control = matches!(header.opcode, OpCode::Control(_));
            if is_control && (len > 125 || !header.is_final) {
                return Err(CloseReason::TransportError);
            }
            let assembled = self.fragments.as_ref().map_or(0, |(_, f)| f.len());
            if !is_control && len.saturating_add(assembled as u64) > self.max_payload as u64 {
                return Err(CloseReason::MessageTooBig);
            }
            // RFC 6455 §5.2: a 64-bit length has its top bit clear. Without a practical limit
            // (`max_payload` near usize::MAX) nothing else stops one (found by fuzzing).
            let Some(end) = usize::try_from(len)
                .ok()
                .filter(|_| len >> 63 == 0)
                .and_then(|len| start.checked_add(len))
            else {
                return Err(CloseReason::TransportError);
            };
            if end > buf.len() {
                break;
            }
            let payload = &mut buf[start..end];
            unmask(payload, mask);
            self.on_frame(header.opcode, header.is_final, payload, sink)?;
            pos = end;
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<(), CloseReason> {
        match opcode {
            OpCode::Control(Control::Close) => {
                // Echo the client's code, then close.
                let code = match payload {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1000,
                };
                sink.control(OutFrame::close(code));
                Err(CloseReason::TransportClose)
            }
            OpCode::Control(Control::Ping) => {
                sink.control(OutFrame::pong(payload));
                Ok(())
            }
            OpCode::Control(Control::Pong) => Ok(()),
            OpCode::Data(Data::Continue) => {
                let Some((_, data)) = self.fragments.as_mut() else {
                    return Err(CloseReason::TransportError);
                };
                data.extend_from_slice(payload);
                if fin {
                    if let Some((text, data)) = self.fragments.take() {
                        sink.message(text, &data)?;
                    }
                }
                Ok(())
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(CloseReason::TransportError);
                }
                let text = kind == Data::Text;
                if fin {
                    sink.message(text, payload)
                } else {
                    self.fragments = Some((text, payload.to_vec()));
                    Ok(())
                }
            }
            _ => Err(CloseReason::TransportError),
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}
