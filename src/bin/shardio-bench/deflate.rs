//! permessage-deflate (RFC 7692) for the generator's connections: the offer, the server's
//! answer, inflating what the server compressed and, in `compress` mode, compressing what the
//! client sends (as browsers do, every message).

use std::cell::RefCell;

use flate2::{Compress, Compression as Level, Decompress, FlushCompress, FlushDecompress};

use crate::ws::FrameError;

/// How the generator's connections use WebSocket compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Compression {
    /// No offer: plain WebSocket.
    #[default]
    Off,
    /// Offer permessage-deflate as Node's `ws` does, inflate what the server compresses, send
    /// plain (as `ws` does below its 1 KiB threshold).
    Negotiate,
    /// Also compress every message sent, as browsers do (each on its own, but without telling
    /// the server, so a server keeps its inflater for the connection).
    Compress,
}

/// The offer's header line: what `ws` and browsers send.
pub(crate) const OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// The bytes RFC 7692 §7.2.1 has the sender remove and the receiver append.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    /// Every message the generator compresses is compressed on its own: one per thread.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Level::default(), false));
}

/// One connection's side of the extension, once the server agreed to it.
pub(crate) struct Deflate {
    /// The server compresses each message on its own (`server_no_context_takeover`).
    server_resets: bool,
    /// Compress what this connection sends.
    compress_out: bool,
    /// Made on the first compressed message.
    inflater: Option<Box<Decompress>>,
}

impl Deflate {
    /// The agreement in a `101` head (`None`: the server declined, or was not asked).
    pub(crate) fn from_response(head: &[u8], mode: Compression) -> Option<Deflate> {
        if mode == Compression::Off {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(head).ok()?;
        let value = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .and_then(|h| std::str::from_utf8(h.value).ok())?;
        let mut params = value.split(';').map(str::trim);
        (params.next()? == "permessage-deflate").then(|| Deflate {
            server_resets: params.any(|p| p == "server_no_context_takeover"),
            compress_out: mode == Compression::Compress,
            inflater: None,
        })
    }

    /// Whether what this connection sends goes compressed.
    pub(crate) fn compresses(&self) -> bool {
        self.compress_out
    }

    /// Inflates one compressed message into `out` (cleared first).
    pub(crate) fn inflate(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        if self.server_resets {
            inflater.reset(false);
        }
        out.clear();
        for mut input in [payload, &TAIL[..]] {
            while !input.is_empty() || out.len() == out.capacity() {
                if out.len() as u64 >= crate::ws::MAX_FRAME {
                    return Err(FrameError::TooLarge(out.len() as u64));
                }
                out.reserve(input.len().max(4096) * 2);
                let before = inflater.total_in();
                inflater
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|_| FrameError::BadHeader(0xC1))?;
                let used = (inflater.total_in() - before) as usize;
                input = &input[used..];
                if used == 0 && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// `payload` compressed as one message (§7.2.1) into `out` (cleared first).
pub(crate) fn compress(payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(payload.len() + 64);
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut input = payload;
        loop {
            let before = c.total_in();
            // Writing to a Vec with room cannot fail.
            let _ = c.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(c.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
    });
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_answer_and_round_trips_a_message() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert!(Deflate::from_response(head, Compression::Off).is_none());
        let mut d = Deflate::from_response(head, Compression::Compress).expect("agreed");
        assert!(d.server_resets && d.compresses());
        let plain = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert!(Deflate::from_response(plain, Compression::Negotiate).is_none());
        let message = "42[\"bench\",[1,2,3,\"some padding words\"]]".repeat(100);
        let mut compressed = Vec::new();
        compress(message.as_bytes(), &mut compressed);
        assert!(compressed.len() < message.len() / 10);
        let mut out = Vec::new();
        for _ in 0..2 {
            d.inflate(&compressed, &mut out).unwrap();
            assert_eq!(out, message.as_bytes());
        }
    }
}
