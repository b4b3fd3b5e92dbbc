//! Engine.IO v4 / Socket.IO v5 for the generator's client: pure, bytes in and values out.
//!
//! Only namespace `/` and text packets. Decoding does no JSON parse on the hot path: a
//! benchmark delivery is `2["<event>",[<publisher>,<seq>,<sent_us>(,"<padding>")]]` (the data
//! of a `publish`, re-serialised by the server), and its three integers are read in place.

use std::io::Write;

/// The WebSocket upgrade request that starts a Socket.IO session without polling.
///
/// The key is fixed: it only has to be 16 bytes in base64, and the generator does not check
/// `Sec-WebSocket-Accept` (it trusts the server it measures).
/// `extra`: more header lines, each ending in CRLF (an extension offer).
pub(crate) fn upgrade_request(host: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The HTTP status and head length of a response, once the whole head has arrived.
pub(crate) fn parse_response_head(buf: &[u8]) -> Result<Option<(u16, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf)? {
        httparse::Status::Complete(len) => Ok(Some((resp.code.unwrap_or(0), len))),
        httparse::Status::Partial => Ok(None),
    }
}

/// A Socket.IO packet on namespace `/` (the bytes after the Engine.IO `4`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SioPacket<'a> {
    /// `0{"sid":".."}`: the namespace CONNECT succeeded; the bytes are its JSON body.
    Connect(&'a [u8]),
    /// `4{..}`: CONNECT refused; the body is the error object.
    ConnectError(&'a [u8]),
    /// `2[..]`: an event without ack id; the bytes are the JSON array.
    Event(&'a [u8]),
    /// `3<id>[..]`: the answer to one of our acks.
    Ack { id: u64, body: &'a [u8] },
    /// `1`: the server left the namespace.
    Disconnect,
    /// Anything else (other namespaces, binary events, events asking us for an ack).
    Other,
}

pub(crate) fn parse_sio(p: &[u8]) -> SioPacket<'_> {
    let Some((&kind, rest)) = p.split_first() else {
        return SioPacket::Other;
    };
    if rest.first() == Some(&b'/') {
        return SioPacket::Other;
    }
    match kind {
        b'0' => SioPacket::Connect(rest),
        b'1' => SioPacket::Disconnect,
        b'2' if rest.first() == Some(&b'[') => SioPacket::Event(rest),
        b'3' => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            match parse_u64(&rest[..digits]) {
                Some(id) => SioPacket::Ack {
                    id,
                    body: &rest[digits..],
                },
                None => SioPacket::Other,
            }
        }
        b'4' => SioPacket::ConnectError(rest),
        _ => SioPacket::Other,
    }
}

/// What a subscriber reads from one benchmark delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub publisher: u32,
    pub seq: u64,
    /// Microseconds since the generator's epoch when the publisher encoded it.
    pub sent_us: u64,
}

/// Reads `["<event>",[p,s,t...` without a JSON parse. `None` for anything else.
pub(crate) fn parse_delivery(event: &[u8]) -> Option<Delivery> {
    let rest = event.strip_prefix(b"[\"")?;
    // Benchmark event names carry no escapes, so the first quote closes the name.
    let close = rest.iter().position(|&b| b == b'"')?;
    let mut rest = rest[close + 1..].strip_prefix(b",[")?;
    let mut nums = [0u64; 3];
    for (i, n) in nums.iter_mut().enumerate() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        *n = parse_u64(&rest[..digits])?;
        let sep = *rest.get(digits)?;
        if sep != b',' && !(i == 2 && sep == b']') {
            return None;
        }
        rest = &rest[digits + 1..];
    }
    Some(Delivery {
        publisher: u32::try_from(nums[0]).ok()?,
        seq: nums[1],
        sent_us: nums[2],
    })
}

/// The string value of `"key":"..."` in a small JSON object such as a CONNECT reply (ids and
/// offsets carry no escapes).
pub(crate) fn json_str<'a>(body: &'a [u8], key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let at = body
        .windows(pattern.len())
        .position(|w| w == pattern.as_bytes())?;
    let rest = &body[at + pattern.len()..];
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The recovery offset a delivery carries as its last argument (`[..,"<offset>"]`), if any.
pub(crate) fn trailing_offset(event: &[u8]) -> Option<&str> {
    let inner = event.strip_suffix(b"\"]")?;
    let start = inner.iter().rposition(|&b| b == b'"')?;
    (start > 0 && inner[start - 1] == b',')
        .then(|| std::str::from_utf8(&inner[start + 1..]).ok())
        .flatten()
}

/// True when an ack body is `[{"ok":true}]` (whatever the key order or spacing of the server).
pub(crate) fn ack_is_ok(body: &[u8]) -> bool {
    body.windows(9).any(|w| w == b"\"ok\":true") || body.windows(10).any(|w| w == b"\"ok\": true")
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Appends the Socket.IO text (without the Engine.IO `4`) of `emit("join", "<room>", ack)`.
pub(crate) fn join_packet(out: &mut Vec<u8>, ack_id: u64, room: &str) {
    // Room names are generated by the benchmark (`r<n>`), so they need no JSON escaping.
    let _ = write!(out, "2{ack_id}[\"join\",\"{room}\"]");
}

/// `len` bytes of padding for a payload: words of plain text, so that it compresses as text
/// does (about 3:1 with DEFLATE), not as one repeated byte would; the same on every run.
pub(crate) fn padding(len: usize) -> String {
    const WORDS: [&str; 16] = [
        "the", "market", "opened", "higher", "after", "news", "of", "a", "deal", "between", "two",
        "large", "firms", "shares", "rose", "sharply",
    ];
    let mut seed = 0x2545_f491u32;
    let mut out = String::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        out.push_str(WORDS[(seed % 16) as usize]);
        out.push(if seed % 7 == 0 { '.' } else { ' ' });
    }
    out.truncate(len);
    out
}

/// Appends the Socket.IO text (without the Engine.IO `4`) of one benchmark publish:
/// `2<id>["publish",{"to":"<room>","event":"<event>","data":[p,s,t(,"pad")]}]`.
pub(crate) fn publish_packet(
    out: &mut Vec<u8>,
    ack_id: u64,
    room: &str,
    event: &str,
    d: Delivery,
    padding: &str,
) {
    let _ = write!(
        out,
        "2{ack_id}[\"publish\",{{\"to\":\"{room}\",\"event\":\"{event}\",\"data\":[{},{},{}",
        d.publisher, d.seq, d.sent_us
    );
    if !padding.is_empty() {
        let _ = write!(out, ",\"{padding}\"");
    }
    out.extend_from_slice(b"]}]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_deliveries_as_node_and_serde_write_them() {
        let d = Delivery {
            publisher: 3,
            seq: 17,
            sent_us: 123_456_789,
        };
        for wire in [
            &b"[\"bench\",[3,17,123456789]]"[..],
            b"[\"bench\",[3,17,123456789,\"xxxx\"]]",
        ] {
            assert_eq!(parse_delivery(wire), Some(d));
        }
        for bad in [
            &b"[\"bench\",{\"p\":3}]"[..],
            b"[\"bench\",[3,17]]",
            b"[\"bench\",[3,-1,5]]",
            b"[\"bench\",[3,17,5x]]",
            b"[\"bench\"",
            b"",
        ] {
            assert_eq!(
                parse_delivery(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn publish_packet_is_what_the_gateway_expects() {
        let mut out = Vec::new();
        let d = Delivery {
            publisher: 1,
            seq: 2,
            sent_us: 3,
        };
        publish_packet(&mut out, 9, "r4", "bench", d, "ab");
        assert_eq!(
            out,
            b"29[\"publish\",{\"to\":\"r4\",\"event\":\"bench\",\"data\":[1,2,3,\"ab\"]}]"
        );
        // What the subscribers get back parses to the same delivery.
        assert_eq!(parse_delivery(b"[\"bench\",[1,2,3,\"ab\"]]"), Some(d));
    }

    #[test]
    fn classifies_socketio_packets() {
        assert_eq!(
            parse_sio(b"0{\"sid\":\"abc\"}"),
            SioPacket::Connect(b"{\"sid\":\"abc\"}")
        );
        assert_eq!(
            parse_sio(b"312[{\"ok\":true}]"),
            SioPacket::Ack {
                id: 12,
                body: b"[{\"ok\":true}]"
            }
        );
        assert_eq!(parse_sio(b"2[\"x\"]"), SioPacket::Event(b"[\"x\"]"));
        assert_eq!(parse_sio(b"2/admin,[\"x\"]"), SioPacket::Other);
        assert_eq!(parse_sio(b"25[\"x\"]"), SioPacket::Other);
        assert!(ack_is_ok(b"[{\"ok\":true}]"));
        assert!(!ack_is_ok(b"[{\"error\":\"no\"}]"));
    }

    #[test]
    fn reads_recovery_ids_and_offsets() {
        let connect = br#"{"sid":"abc","pid":"def"}"#;
        assert_eq!(json_str(connect, "pid"), Some("def"));
        assert_eq!(json_str(connect, "sid"), Some("abc"));
        assert_eq!(json_str(br#"{"sid":"abc"}"#, "pid"), None);
        assert_eq!(trailing_offset(br#"["bench",[1,2,3],"1f"]"#), Some("1f"));
        assert_eq!(
            trailing_offset(br#"["bench",[1,2,3,"pad"],"1f"]"#),
            Some("1f")
        );
        assert_eq!(trailing_offset(br#"["bench",[1,2,3,"pad"]]"#), None);
        assert_eq!(trailing_offset(br#"["bench",[1,2,3]]"#), None);
    }

    #[test]
    fn response_head_needs_the_blank_line() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x01x";
        assert_eq!(parse_response_head(&head[..20]), Ok(None));
        assert_eq!(parse_response_head(head), Ok(Some((101, head.len() - 3))));
    }
}
