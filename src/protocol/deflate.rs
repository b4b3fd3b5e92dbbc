//! permessage-deflate (RFC 7692): the `Sec-WebSocket-Extensions` negotiation as shardio answers
//! it (§7), and the codec. Outbound messages are compressed each on its own (shardio always
//! answers `server_no_context_takeover`), so one compressed form serves every recipient;
//! inbound messages are inflated within a byte limit. Pure: bytes in, bytes out.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's token.
const NAME: &str = "permessage-deflate";

/// Payload bytes from which an outbound message is compressed: Node's `ws` default
/// (`threshold: 1024`). Below it a message is mostly headers and short JSON, where DEFLATE
/// saves a few bytes at best and costs a compression per message.
pub(crate) const THRESHOLD: usize = 1024;

/// DEFLATE level of outbound messages: zlib's and Node's default (6). A broadcast is
/// compressed once for all its recipients, so the bytes saved are multiplied by the fan-out
/// while the CPU is not; a level past 6 costs much more time for a few percent.
const LEVEL: u32 = 6;

/// The end of a sync flush (an empty stored block): the sender removes it from every message,
/// the receiver appends it again (§7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The largest LZ77 window, as a power of two (§7.1.2): 32 KiB.
pub(crate) const MAX_WINDOW_BITS: u8 = 15;

/// What a connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The client offered `client_no_context_takeover`: it compresses every message on its
    /// own, so no inflater is kept between its messages.
    pub(crate) client_no_context_takeover: bool,
    /// The client limited the window of what we send (`server_max_window_bits`); 15 when it
    /// did not.
    pub(crate) server_max_window_bits: u8,
    /// Whether `server_max_window_bits` was offered (and so is answered).
    server_window_offered: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101 answer (§7): always
    /// `server_no_context_takeover` (§7.1.1.1 allows it unasked), the client's
    /// `client_no_context_takeover` and `server_max_window_bits` accepted as offered, and never
    /// `client_max_window_bits`, as our 15-bit window inflates whatever window the client uses.
    pub(crate) fn response(&self) -> String {
        let mut value = format!("{NAME}; server_no_context_takeover");
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.server_window_offered {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        value
    }

    /// Whether a message of `len` bytes, compressed with a 32 KiB window, suits this
    /// connection: under a smaller window only a message no longer than the window can be
    /// sent compressed (no DEFLATE distance reaches further back than the message's length).
    pub(crate) fn fits_window(&self, len: usize) -> bool {
        self.server_max_window_bits >= MAX_WINDOW_BITS || len <= 1 << self.server_max_window_bits
    }
}

/// The first permessage-deflate offer of the request's `Sec-WebSocket-Extensions` headers that
/// shardio can accept (§7.1). An offer with an unknown, repeated or invalid parameter is
/// declined and the next one considered; a header that does not parse (RFC 6455 §9.1) declines
/// them all. `None`: no extension.
pub(crate) fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    let mut offers = Vec::new();
    for value in headers {
        offers.extend(parse_header(value)?);
    }
    offers
        .into_iter()
        .filter(|offer| offer.name.eq_ignore_ascii_case(NAME))
        .find_map(|offer| accept(&offer.params))
}

/// One extension of an offer, with its parameters.
struct Offer<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// Parses one header value: `1#( token *( ";" token [ "=" ( token / quoted-string ) ] ) )`
/// with optional white space around separators and empty list elements allowed (RFC 7230
/// §7). `None` when it does not parse.
fn parse_header(value: &str) -> Option<Vec<Offer<'_>>> {
    let mut c = Cursor { s: value, at: 0 };
    let mut offers = Vec::new();
    loop {
        c.skip_space();
        if c.eat(b',') {
            continue;
        }
        if c.at == c.s.len() {
            return Some(offers);
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.skip_space();
            if !c.eat(b';') {
                break;
            }
            c.skip_space();
            let key = c.token()?;
            c.skip_space();
            let value = if c.eat(b'=') {
                c.skip_space();
                Some(if c.peek() == Some(b'"') {
                    c.quoted()?
                } else {
                    c.token()?.to_owned()
                })
            } else {
                None
            };
            params.push((key, value));
        }
        offers.push(Offer { name, params });
        c.skip_space();
        if c.at < c.s.len() && !c.eat(b',') {
            return None;
        }
    }
}

/// Accepts one permessage-deflate offer, or declines it (`None`) for a parameter that is
/// unknown, repeated, or has a value it must not have (§7.1).
fn accept(params: &[(&str, Option<String>)]) -> Option<Agreement> {
    let mut agreed = Agreement {
        client_no_context_takeover: false,
        server_max_window_bits: MAX_WINDOW_BITS,
        server_window_offered: false,
    };
    let mut seen = [false; 4];
    for (key, value) in params {
        let index = match *key {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value.as_deref()) {
            // Answered whether offered or not.
            (0, None) => {}
            (1, None) => agreed.client_no_context_takeover = true,
            (2, Some(bits)) => {
                agreed.server_max_window_bits = window_bits(bits)?;
                agreed.server_window_offered = true;
            }
            // The client may answer a limit; we set none (any window inflates with ours).
            (3, None) => {}
            (3, Some(bits)) => {
                window_bits(bits)?;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

/// A window size parameter: a decimal 8 to 15, no leading zero (§7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (8..=MAX_WINDOW_BITS).contains(bits))
}

/// Reads a header value left to right.
struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// A token (RFC 7230 §3.2.6): one or more of its characters.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.at += 1;
        }
        (self.at > start).then(|| &self.s[start..self.at])
    }

    /// A quoted string, unescaped; its content must be a token (RFC 6455 §9.1).
    fn quoted(&mut self) -> Option<String> {
        self.eat(b'"').then_some(())?;
        let mut value = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    break;
                }
                b'\\' => {
                    self.at += 1;
                    value.push(char::from(self.peek()?));
                }
                byte => value.push(char::from(byte)),
            }
            self.at += 1;
        }
        let mut inner = Cursor { s: &value, at: 0 };
        (inner.token().is_some() && inner.at == value.len()).then_some(value)
    }
}

thread_local! {
    /// The thread's compressor. Every outbound message is compressed on its own (no context
    /// takeover), so one per shard serves all its connections; made on first use.
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// Appends `payload` compressed as one message to `out` (§7.2.1: a raw DEFLATE stream, flushed
/// to a byte boundary, without its last four bytes). False, with `out` as it was, when that
/// would not be shorter than `payload`.
pub(crate) fn compress_into(payload: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    // Room for what would save something, tail included; a full buffer means it saves nothing.
    let room = payload.len() + TAIL.len();
    out.reserve_exact(room);
    let done = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = cell.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        compressor.reset();
        let status = compressor.compress_vec(payload, out, FlushCompress::Sync);
        matches!(status, Ok(Status::Ok))
            && compressor.total_in() == payload.len() as u64
            && out.len() < out.capacity()
    });
    let saves = done && out.ends_with(&TAIL) && out.len() - start < room;
    if saves {
        out.truncate(out.len() - TAIL.len());
    } else {
        out.truncate(start);
    }
    saves
}

/// Why an inbound message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the limit (inflating stopped there).
    TooBig,
    /// It is not a DEFLATE stream.
    Corrupt,
}

/// Inflates the compressed messages of one connection (or, reset before each, of any).
pub(crate) struct Inflater(Decompress);

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(false))
    }
}

impl Inflater {
    /// Forgets earlier messages: the next one starts a new stream.
    pub(crate) fn reset(&mut self) {
        self.0.reset(false);
    }

    /// Inflates one message, `data` being its frames' payloads joined (§7.2.2): at most
    /// `limit` bytes, or [`InflateError::TooBig`] as soon as more would come, so that a small
    /// message inflating to gigabytes costs `limit` bytes and the time to make them.
    pub(crate) fn message(&mut self, data: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        self.message_into(data, limit, &mut out)?;
        Ok(out)
    }

    /// [`Self::message`] into `out`, which starts empty and never holds more than `limit + 1`
    /// bytes of room.
    fn message_into(
        &mut self,
        data: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if !self.feed(data, limit, out)? {
            self.feed(&TAIL, limit, out)?;
        }
        Ok(())
    }

    /// Inflates `input` onto `out` within `limit`. `Ok(true)`: the stream ended (a block with
    /// BFINAL set, §7.2.3.4), and the inflater was reset for the next message.
    fn feed(
        &mut self,
        mut input: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, InflateError> {
        loop {
            if out.len() == out.capacity() {
                // Room for one byte past the limit: that byte says the message is too big.
                let room = (limit + 1 - out.len()).min(out.len().max(input.len() * 4).max(1024));
                out.reserve_exact(room);
            }
            let (before_in, before_out) = (self.0.total_in(), self.0.total_out());
            let status = self
                .0
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let used = (self.0.total_in() - before_in) as usize;
            let made = self.0.total_out() - before_out;
            input = &input[used..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let full = out.len() == out.capacity();
            if status == Status::StreamEnd {
                // Nothing of the message may follow its final block, bar the tail we add.
                if !input.is_empty() && input != TAIL {
                    return Err(InflateError::Corrupt);
                }
                self.reset();
                return Ok(true);
            }
            // With all input taken, an output with room left (or nothing more made) is all.
            if input.is_empty() && (!full || made == 0) {
                return Ok(false);
            }
            if used == 0 && made == 0 && !full {
                return Err(InflateError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(headers: &[&str]) -> Option<String> {
        negotiate(headers.iter().copied()).map(|a| a.response())
    }

    #[test]
    fn answers_the_first_offer_it_can_honour() {
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(
            offer(&["permessage-deflate;client_no_context_takeover;server_no_context_takeover"])
                .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            offer(&[
                "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, \
                 permessage-deflate; server_max_window_bits=\"10\"; client_max_window_bits=9"
            ])
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
            "the first offer's window is invalid: the second is taken"
        );
        assert_eq!(
            offer(&[
                "foo",
                "PerMessage-Deflate ;\tclient_no_context_takeover , ,"
            ])
            .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "several header lines, white space, case, empty elements"
        );
    }

    #[test]
    fn declines_what_it_cannot_honour_or_parse() {
        for declined in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            // Syntax errors decline the whole header, later valid offers too.
            "permessage-deflate; client_max_window_bits=\"10, permessage-deflate",
            "permessage-deflate;; client_no_context_takeover, permessage-deflate",
            "permessage-deflate client_no_context_takeover, permessage-deflate",
            "permessage-deflate; =1, permessage-deflate",
            "\"permessage-deflate\"",
            "permessage-deflate; a=\"\\",
        ] {
            assert_eq!(offer(&[declined]), None, "{declined:?}");
        }
        assert_eq!(offer(&["permessage-deflate", "bad;;"]), None);
    }

    #[test]
    fn no_header_bytes_panic_the_parser() {
        let alphabet = b"permessage-deflate;=, \t\"\\8150xyz_\xc3\xa9";
        let mut seed = 0x2545_f491u32;
        for _ in 0..20_000 {
            let len = (seed % 40) as usize;
            let mut s = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                s.push(alphabet[seed as usize % alphabet.len()]);
            }
            let s = String::from_utf8_lossy(&s);
            let _ = negotiate([s.as_ref()]);
        }
    }

    #[test]
    fn a_smaller_server_window_takes_only_short_messages() {
        let a = negotiate(["permessage-deflate; server_max_window_bits=10"]).unwrap();
        assert!(a.fits_window(1024) && !a.fits_window(1025));
        let a = negotiate(["permessage-deflate"]).unwrap();
        assert!(a.fits_window(10 << 20));
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("42[\"news\",[");
        for i in 0..n {
            s.push_str(&format!(
                "{{\"id\":{i},\"title\":\"headline number {i}\"}},"
            ));
        }
        s.push_str("{}]]");
        s.into_bytes()
    }

    #[test]
    fn compresses_each_message_on_its_own() {
        let payload = json(100);
        let mut out = vec![9u8; 3];
        assert!(compress_into(&payload, &mut out));
        assert_eq!(&out[..3], &[9, 9, 9], "appended");
        assert!(out.len() - 3 < payload.len() / 3, "{} bytes", out.len());
        // Independent of what the compressor did before.
        let mut again = vec![9u8; 3];
        assert!(compress_into(&payload, &mut again));
        assert_eq!(out, again);
        // Any inflater reads it, as any message (no shared context).
        for _ in 0..2 {
            let mut inflater = Inflater::default();
            assert_eq!(inflater.message(&out[3..], 1 << 20), Ok(payload.clone()));
        }
        // Random bytes do not compress: left as they were.
        let mut seed = 7u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        let mut out = vec![1];
        assert!(!compress_into(&noise, &mut out));
        assert_eq!(out, [1]);
    }

    #[test]
    fn inflates_within_the_limit_and_no_further() {
        let payload = json(2000);
        let mut compressed = Vec::new();
        assert!(compress_into(&payload, &mut compressed));
        let mut inflater = Inflater::default();
        assert_eq!(
            inflater
                .message(&compressed, payload.len())
                .map(|m| m.len()),
            Ok(payload.len()),
            "exactly the limit passes"
        );
        inflater.reset();
        assert_eq!(
            inflater.message(&compressed, payload.len() - 1),
            Err(InflateError::TooBig)
        );
        // A bomb: 10 MB of zeros in about 10 KB.
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        assert!(compress_into(&zeros, &mut bomb));
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        inflater.reset();
        let mut out = Vec::new();
        assert_eq!(
            inflater.message_into(&bomb, 100_000, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= 100_001, "held {} bytes", out.capacity());
        inflater.reset();
        assert_eq!(
            inflater.message(b"\xff\xff\xff\xff", 1000),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn context_takeover_carries_the_window_between_messages() {
        // A client compressor that keeps its context, as `ws` and browsers do by default.
        let mut client = Compress::new(Compression::default(), false);
        let mut inflater = Inflater::default();
        let message = json(20);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::with_capacity(message.len() + 64);
            client
                .compress_vec(&message, &mut out, FlushCompress::Sync)
                .unwrap();
            assert!(out.ends_with(&TAIL));
            out.truncate(out.len() - 4);
            sizes.push(out.len());
            assert_eq!(inflater.message(&out, 1 << 20), Ok(message.clone()));
        }
        assert!(sizes[1] < sizes[0] / 4, "the second refers back: {sizes:?}");
        // A message ending its stream with BFINAL: inflated, and the next starts afresh.
        let mut finished = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(message.len() + 64);
        finished
            .compress_vec(&message, &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(inflater.message(&out, 1 << 20), Ok(message.clone()));
        let mut fresh = Vec::new();
        assert!(compress_into(&message, &mut fresh));
        assert_eq!(inflater.message(&fresh, 1 << 20), Ok(message));
    }
}
