//! WebSocket framing for a client (RFC 6455 §5): pure, bytes in and out.
//!
//! Only what the generator needs: masked client frames out, unmasked server frames in,
//! continuation frames reassembled by the caller. The one extension is permessage-deflate
//! (`deflate.rs`): RSV1 is reported, for the caller to accept only where it was negotiated;
//! RSV2 and RSV3 must be zero.

/// Frame opcodes (RFC 6455 §5.2).
pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;
/// RSV1: a compressed message (RFC 7692), OR-ed into an opcode given to [`encode_frame`].
pub(crate) const RSV1: u8 = 0x40;

/// A frame the peer sent that no server may send; the caller drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// RSV bits set without a negotiated extension, or an unknown opcode.
    #[error("invalid frame header {0:#04x}")]
    BadHeader(u8),
    /// Servers must not mask their frames (RFC 6455 §5.1).
    #[error("masked frame from the server")]
    Masked,
    /// Larger than the generator accepts; see [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u64),
}

/// The largest frame accepted: far above any benchmark payload, low enough that a broken
/// length field cannot make the generator allocate gigabytes.
pub(crate) const MAX_FRAME: u64 = 16 << 20;

/// One complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub fin: bool,
    /// RSV1: the message is compressed.
    pub rsv1: bool,
    pub opcode: u8,
    /// Byte range of the payload within the buffer given to [`parse_frame`].
    pub payload: (usize, usize),
}

/// Parses the frame at the start of `buf`. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let opcode = b0 & 0x0F;
    if b0 & 0x30 != 0 || !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameError::BadHeader(b0));
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, head) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    // Bounded by MAX_FRAME above, so the cast cannot truncate.
    let end = head + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & RSV1 != 0,
        opcode,
        payload: (head, end),
    }))
}

/// Appends one final, masked frame carrying `payload` to `out`.
///
/// The mask key comes from the caller (a cheap per-connection PRNG): servers only check that
/// the mask bit is set, and the XOR is the whole per-byte cost of a client frame.
pub(crate) fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        // Fits in 7 bits by the branch condition.
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `data` with the repeating 4-byte `mask`, a word at a time.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(b) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_roundtrips_at_every_length_class() {
        for len in [0usize, 5, 125, 126, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
            assert_eq!(out[0], 0x81);
            assert_ne!(out[1] & 0x80, 0, "client frames are masked");
            // Unmask it the way a server does, then parse it as a server frame.
            let head = match out[1] & 0x7F {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let mask = [out[head], out[head + 1], out[head + 2], out[head + 3]];
            let mut body = out[head + 4..].to_vec();
            apply_mask(&mut body, mask);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn parses_server_frames_and_waits_for_more() {
        let frame = b"\x81\x0242";
        assert_eq!(parse_frame(&frame[..1]), Ok(None));
        assert_eq!(parse_frame(&frame[..3]), Ok(None));
        let f = parse_frame(frame).unwrap().unwrap();
        assert_eq!((f.fin, f.opcode, f.payload), (true, OP_TEXT, (2, 4)));

        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let f = parse_frame(&long).unwrap().unwrap();
        assert_eq!(f.payload, (4, 260));
    }

    #[test]
    fn rejects_what_a_server_must_not_send() {
        assert_eq!(parse_frame(b"\x81\x82abcd"), Err(FrameError::Masked));
        assert_eq!(parse_frame(b"\xA1\x00"), Err(FrameError::BadHeader(0xA1)));
        assert!(parse_frame(b"\xC1\x00").unwrap().unwrap().rsv1);
        assert_eq!(parse_frame(b"\x83\x00"), Err(FrameError::BadHeader(0x83)));
        let huge = [0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(parse_frame(&huge), Err(FrameError::TooLarge(_))));
    }
}
