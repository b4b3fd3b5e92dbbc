//! Engine.IO v4 packets and polling payloads (docs/PROTOCOL.md §1.3). Pure: bytes in, values out.

use base64::Engine as _;
use thiserror::Error;

/// The Engine.IO packet types, by their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: the server's handshake answer.
    Open = 0,
    /// `1`: close the session.
    Close = 1,
    /// `2`: heartbeat (from the server in v4), or upgrade probe.
    Ping = 2,
    /// `3`: answer to a ping or a probe.
    Pong = 3,
    /// `4`: an application message.
    Message = 4,
    /// `5`: the transport switches to WebSocket.
    Upgrade = 5,
    /// `6`: nothing; ends a long poll during an upgrade.
    Noop = 6,
}

impl PacketType {
    /// The ASCII digit that starts a text packet of this type.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    fn from_digit(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }
}

/// One decoded Engine.IO packet, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A text packet: its type and the data after the type digit.
    Text(PacketType, &'a str),
    /// A binary `message` packet (a WebSocket binary frame, or `b`+base64 on polling).
    Binary(&'a [u8]),
}

/// Why a packet or payload could not be decoded. Either way the session closes with "parse error".
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet was empty or its first character is not a known type digit.
    #[error("unknown Engine.IO packet type")]
    UnknownType,
    /// A `b`-prefixed polling packet did not hold valid base64.
    #[error("invalid base64 in a binary polling packet")]
    Base64,
}

/// Decodes one text packet (a WebSocket text frame, or one record of a polling payload that is
/// not `b`-prefixed).
pub fn decode_text(s: &str) -> Result<Packet<'_>, DecodeError> {
    let first = *s.as_bytes().first().ok_or(DecodeError::UnknownType)?;
    let ty = PacketType::from_digit(first).ok_or(DecodeError::UnknownType)?;
    Ok(Packet::Text(ty, &s[1..]))
}

/// Appends a text packet to `out`: the type digit, then the data.
pub fn encode_text(ty: PacketType, data: &str, out: &mut Vec<u8>) {
    out.push(ty.digit());
    out.extend_from_slice(data.as_bytes());
}

/// The record separator between packets of a polling payload.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// One packet of a decoded polling payload; binary packets are decoded from base64, so owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadPacket<'a> {
    /// A text packet: its type and data.
    Text(PacketType, &'a str),
    /// A binary message (`b`+base64 on polling), decoded.
    Binary(Vec<u8>),
}

/// Splits a polling payload on `\x1e` and decodes every record. Like the reference parser,
/// the first bad record fails the whole payload.
pub fn decode_payload(body: &str) -> Result<Vec<PayloadPacket<'_>>, DecodeError> {
    payload_packets(body).collect()
}

/// The packets of a polling payload, in order. Like the reference parser (`decodePayload`),
/// a transport stops at the first error: the packets before it have been delivered.
pub fn payload_packets(body: &str) -> impl Iterator<Item = Result<PayloadPacket<'_>, DecodeError>> {
    body.split(RECORD_SEPARATOR as char)
        .map(|record| match record.strip_prefix('b') {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(PayloadPacket::Binary)
                .map_err(|_| DecodeError::Base64),
            None => {
                let first = *record.as_bytes().first().ok_or(DecodeError::UnknownType)?;
                let ty = PacketType::from_digit(first).ok_or(DecodeError::UnknownType)?;
                Ok(PayloadPacket::Text(ty, &record[1..]))
            }
        })
}

/// Appends a binary packet in its polling form (`b` + base64) to `out`.
pub fn encode_binary_for_polling(data: &[u8], out: &mut Vec<u8>) {
    out.push(b'b');
    let start = out.len();
    out.resize(start + base64_len(data.len()), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// An already encoded packet on its way into a polling payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedPacket<'a> {
    /// A text packet, type digit first (`4hello`, `2`).
    Text(&'a [u8]),
    /// The raw data of a binary message.
    Binary(&'a [u8]),
}

impl EncodedPacket<'_> {
    /// Bytes this packet takes in a payload, separator excluded.
    pub fn payload_len(&self) -> usize {
        match self {
            EncodedPacket::Text(t) => t.len(),
            EncodedPacket::Binary(b) => 1 + base64_len(b.len()),
        }
    }
}

/// Appends one packet to the polling payload being built in `out`: the record separator when
/// `out` already holds a packet, then the packet (binary as `b`+base64).
pub fn append_to_payload(out: &mut Vec<u8>, packet: EncodedPacket<'_>) {
    if !out.is_empty() {
        out.push(RECORD_SEPARATOR);
    }
    match packet {
        EncodedPacket::Text(text) => out.extend_from_slice(text),
        EncodedPacket::Binary(data) => encode_binary_for_polling(data, out),
    }
}

/// The handshake JSON of the `open` packet: exactly the keys Node sends (§1.2), in its order.
pub fn open_packet(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    let upgrades = upgrades
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "0{{\"sid\":\"{sid}\",\"upgrades\":[{upgrades}],\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms},\"maxPayload\":{max_payload}}}"
    )
}

/// Engine.IO handshake errors (`server.ts` `errors` and `errorMessages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Code 0, "Transport unknown".
    UnknownTransport = 0,
    /// Code 1, "Session ID unknown".
    UnknownSid = 1,
    /// Code 2, "Bad handshake method".
    BadHandshakeMethod = 2,
    /// Code 3, "Bad request".
    BadRequest = 3,
    /// Code 4, "Forbidden".
    Forbidden = 4,
    /// Code 5, "Unsupported protocol version".
    UnsupportedProtocolVersion = 5,
}

impl HandshakeError {
    /// The message Node sends for this code.
    pub fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::Forbidden => "Forbidden",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// The JSON body of a polling error, e.g. `{"code":1,"message":"Session ID unknown"}`.
    pub fn json_body(self) -> String {
        format!(
            "{{\"code\":{},\"message\":\"{}\"}}",
            self as u8,
            self.message()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_packets() {
        assert_eq!(
            decode_text("4hello"),
            Ok(Packet::Text(PacketType::Message, "hello"))
        );
        assert_eq!(
            decode_text("2probe"),
            Ok(Packet::Text(PacketType::Ping, "probe"))
        );
        assert_eq!(decode_text("3"), Ok(Packet::Text(PacketType::Pong, "")));
        assert_eq!(decode_text("6"), Ok(Packet::Text(PacketType::Noop, "")));
        assert_eq!(decode_text(""), Err(DecodeError::UnknownType));
        assert_eq!(decode_text("7x"), Err(DecodeError::UnknownType));
        assert_eq!(decode_text("abc"), Err(DecodeError::UnknownType));
    }

    #[test]
    fn encodes_text_packets() {
        let mut out = Vec::new();
        encode_text(PacketType::Message, "hello", &mut out);
        encode_text(PacketType::Ping, "", &mut out);
        assert_eq!(out, b"4hello2");
    }

    #[test]
    fn decodes_the_spec_payload() {
        // docs/PROTOCOL.md §1.3: `4hello\x1e2\x1e4world`, and `bAQIDBA==` is <01 02 03 04>.
        let packets = decode_payload("4hello\x1e2\x1e4world\x1ebAQIDBA==").unwrap();
        assert_eq!(
            packets,
            vec![
                PayloadPacket::Text(PacketType::Message, "hello"),
                PayloadPacket::Text(PacketType::Ping, ""),
                PayloadPacket::Text(PacketType::Message, "world"),
                PayloadPacket::Binary(vec![1, 2, 3, 4]),
            ]
        );
        assert_eq!(decode_payload("4a\x1ex"), Err(DecodeError::UnknownType));
        assert_eq!(decode_payload("b!!"), Err(DecodeError::Base64));
    }

    #[test]
    fn encodes_binary_for_polling() {
        let mut out = Vec::new();
        encode_binary_for_polling(&[1, 2, 3, 4], &mut out);
        assert_eq!(out, b"bAQIDBA==");
    }

    #[test]
    fn payload_packets_stop_at_the_first_error_like_node() {
        let mut it = payload_packets("4a\x1e7\x1e4b");
        assert_eq!(
            it.next(),
            Some(Ok(PayloadPacket::Text(PacketType::Message, "a")))
        );
        assert_eq!(it.next(), Some(Err(DecodeError::UnknownType)));
        // An empty body is one empty record, which is an error (Node's decodePacket("")).
        assert_eq!(decode_payload(""), Err(DecodeError::UnknownType));
        assert_eq!(
            decode_payload("4\x1e3"),
            Ok(vec![
                PayloadPacket::Text(PacketType::Message, ""),
                PayloadPacket::Text(PacketType::Pong, "")
            ])
        );
        // `b` alone is an empty binary message.
        assert_eq!(decode_payload("b"), Ok(vec![PayloadPacket::Binary(vec![])]));
    }

    #[test]
    fn builds_polling_payloads() {
        let mut out = Vec::new();
        let packets = [
            EncodedPacket::Text(b"4hello"),
            EncodedPacket::Text(b"2"),
            EncodedPacket::Binary(&[1, 2, 3, 4]),
            EncodedPacket::Text("4€".as_bytes()),
        ];
        for p in packets {
            append_to_payload(&mut out, p);
        }
        assert_eq!(out, "4hello\x1e2\x1ebAQIDBA==\x1e4€".as_bytes());
        let sizes: usize = packets.iter().map(EncodedPacket::payload_len).sum();
        assert_eq!(out.len(), sizes + packets.len() - 1);
        // And back.
        assert_eq!(
            decode_payload(std::str::from_utf8(&out).unwrap()),
            Ok(vec![
                PayloadPacket::Text(PacketType::Message, "hello"),
                PayloadPacket::Text(PacketType::Ping, ""),
                PayloadPacket::Binary(vec![1, 2, 3, 4]),
                PayloadPacket::Text(PacketType::Message, "€"),
            ])
        );
        for n in 0..8 {
            let mut out = Vec::new();
            append_to_payload(&mut out, EncodedPacket::Binary(&vec![0xff; n]));
            assert_eq!(out.len(), EncodedPacket::Binary(&vec![0; n]).payload_len());
        }
        let mut out = Vec::new();
        append_to_payload(&mut out, EncodedPacket::Binary(&[]));
        assert_eq!(out, b"b");
    }

    #[test]
    fn open_packet_has_exactly_the_node_keys() {
        let open = open_packet(
            "lv_VI97HAXpY6yYWAAAC",
            &["websocket"],
            25000,
            20000,
            1000000,
        );
        assert_eq!(
            open,
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 5);
        assert_eq!(
            open_packet("x", &[], 300, 200, 1000000),
            r#"0{"sid":"x","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn handshake_error_bodies_match_node() {
        assert_eq!(
            HandshakeError::UnsupportedProtocolVersion.json_body(),
            r#"{"code":5,"message":"Unsupported protocol version"}"#
        );
        assert_eq!(
            HandshakeError::UnknownTransport.json_body(),
            r#"{"code":0,"message":"Transport unknown"}"#
        );
        assert_eq!(
            HandshakeError::BadRequest.json_body(),
            r#"{"code":3,"message":"Bad request"}"#
        );
        assert_eq!(
            HandshakeError::UnknownSid.json_body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(
            HandshakeError::BadHandshakeMethod.json_body(),
            r#"{"code":2,"message":"Bad handshake method"}"#
        );
    }
}
