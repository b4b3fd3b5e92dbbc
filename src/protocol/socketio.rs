//! Socket.IO v5 packets (docs/PROTOCOL.md §2): the string grammar, validation, binary placeholders.
//! Pure: bytes in, values out.

use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;

use super::frame::OutFrame;
use crate::config::defaults;

/// The Socket.IO packet types, by their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: join a namespace (and the server's answer).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: an answer to an event.
    Ack = 3,
    /// `4`: the server refused the CONNECT.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an answer with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Event names the parser refuses on input and the server refuses to emit
/// (`RESERVED_EVENTS` in socket.io-parser).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Whether `event` is reserved: the parser refuses it on input and the server refuses to emit
/// it. The one check of the rule, wherever an event name comes in or goes out.
pub fn is_reserved_event(event: &str) -> bool {
    RESERVED_EVENTS.contains(&event)
}

/// A decoded Socket.IO packet. Binary packets still wait for `attachments` buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    /// The packet type.
    pub ty: PacketType,
    /// The namespace, `/` when the packet names none.
    pub nsp: &'a str,
    /// The ack id, when the sender wants an answer (or this answers one).
    pub id: Option<u64>,
    /// How many binary attachments follow (binary types only).
    pub attachments: usize,
    /// The JSON payload, already validated for the packet type.
    pub data: Option<Value>,
}

/// Why a Socket.IO packet was refused. Every variant closes the Engine.IO connection
/// (`client.ts ondata -> onerror -> conn.close()`).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The first character is not a packet type.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary packet without a valid attachment count.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// More attachments than allowed.
    #[error("too many attachments")]
    TooManyAttachments,
    /// An ack id that does not fit.
    #[error("invalid ack id")]
    InvalidAckId,
    /// JSON that does not parse, or a payload the packet type does not allow.
    #[error("invalid payload")]
    InvalidPayload,
    /// JSON nested deeper than allowed (refused before it is parsed).
    #[error("payload nested too deep")]
    TooDeep,
    /// A namespace or event name longer than allowed.
    #[error("name too long")]
    NameTooLong,
}

impl DecodeError {
    /// Whether the packet was refused for passing one of the [`DecodeLimits`] rather than for
    /// breaking the grammar.
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::TooManyAttachments | DecodeError::TooDeep | DecodeError::NameTooLong
        )
    }
}

/// What a client's packet may hold; passing a bound refuses the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Binary attachments of one packet.
    pub max_attachments: usize,
    /// Nesting of arrays and objects in the JSON payload, checked before it is parsed.
    pub max_depth: usize,
    /// Bytes of the namespace name, and of the event name of an EVENT.
    pub max_name_length: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_attachments: defaults::MAX_ATTACHMENTS,
            max_depth: defaults::MAX_JSON_DEPTH,
            max_name_length: defaults::MAX_NAME_LENGTH,
        }
    }
}

/// Decodes a Socket.IO packet from the data of an Engine.IO `message` (`Decoder.decodeString`),
/// with `max_attachments` and the default depth and name bounds.
pub fn decode(s: &str, max_attachments: usize) -> Result<Packet<'_>, DecodeError> {
    decode_with(
        s,
        &DecodeLimits {
            max_attachments,
            ..DecodeLimits::default()
        },
    )
}

/// Decodes a Socket.IO packet within `limits`.
pub fn decode_with<'a>(s: &'a str, limits: &DecodeLimits) -> Result<Packet<'a>, DecodeError> {
    let max_attachments = limits.max_attachments;
    let bytes = s.as_bytes();
    let ty = bytes
        .first()
        .copied()
        .and_then(PacketType::from_digit)
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if ty.is_binary() {
        let dash = bytes[i..]
            .iter()
            .position(|&b| b == b'-')
            .ok_or(DecodeError::IllegalAttachments)?;
        let digits = &s[i..i + dash];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = digits
            .parse::<usize>()
            .map_err(|_| DecodeError::TooManyAttachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::TooManyAttachments);
        }
        i += dash + 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        // The namespace runs up to `,` or the end (`40/custom` without a comma is accepted).
        let end = bytes[i..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |p| i + p);
        nsp = &s[i..end];
        if nsp.len() > limits.max_name_length {
            return Err(DecodeError::NameTooLong);
        }
        i = (end + 1).min(bytes.len());
    }

    let mut id = None;
    let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 {
        id = Some(
            s[i..i + digits]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidAckId)?,
        );
        i += digits;
    }

    let data = if i < bytes.len() {
        // serde_json recurses once per level: bound the depth before it starts.
        if json_nests_deeper(&bytes[i..], limits.max_depth) {
            return Err(DecodeError::TooDeep);
        }
        let value: Value =
            serde_json::from_str(&s[i..]).map_err(|_| DecodeError::InvalidPayload)?;
        if !payload_is_valid(ty, &value) {
            return Err(DecodeError::InvalidPayload);
        }
        if let Some(Value::String(event)) = value.as_array().and_then(|a| a.first()) {
            if matches!(ty, PacketType::Event | PacketType::BinaryEvent)
                && event.len() > limits.max_name_length
            {
                return Err(DecodeError::NameTooLong);
            }
        }
        Some(value)
    } else {
        if matches!(ty, PacketType::Event | PacketType::BinaryEvent) {
            // An event without arguments has no name to dispatch on.
            return Err(DecodeError::InvalidPayload);
        }
        None
    };

    Ok(Packet {
        ty,
        nsp,
        id,
        attachments,
        data,
    })
}

/// Whether `json` nests arrays and objects deeper than `max` levels: one pass over the bytes,
/// skipping strings, with no recursion. Malformed JSON is left for the parser to refuse.
pub fn json_nests_deeper(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `Decoder.isPayloadValid`.
fn payload_is_valid(ty: PacketType, v: &Value) -> bool {
    match ty {
        PacketType::Connect => v.is_object(),
        PacketType::Disconnect => false,
        PacketType::ConnectError => v.is_object() || v.is_string(),
        PacketType::Event | PacketType::BinaryEvent => match v.as_array().and_then(|a| a.first()) {
            Some(Value::Number(_)) => true,
            Some(Value::String(name)) => !is_reserved_event(name),
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => v.is_array(),
    }
}

/// Event arguments: JSON values in which binary arguments are `{"_placeholder":true,"num":N}`
/// objects pointing into `bins`, the form Socket.IO uses on the wire (§2.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The JSON arguments, binary ones as placeholders.
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub bins: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a JSON argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends a binary argument (a placeholder in `args`, the bytes in `bins`).
    pub fn bin(mut self, data: impl Into<Bytes>) -> Self {
        self.args.push(placeholder(self.bins.len()));
        self.bins.push(data.into());
        self
    }

    /// The first argument, or `Null` when there is none.
    pub fn first(&self) -> &Value {
        self.args.first().unwrap_or(&Value::Null)
    }
}

impl From<Value> for Payload {
    /// One JSON argument (an array stays one argument).
    fn from(value: Value) -> Self {
        Payload {
            args: vec![value],
            bins: Vec::new(),
        }
    }
}

impl From<&str> for Payload {
    fn from(value: &str) -> Self {
        Payload::from(Value::from(value))
    }
}

impl From<Vec<Value>> for Payload {
    /// Several JSON arguments.
    fn from(args: Vec<Value>) -> Self {
        Payload {
            args,
            bins: Vec::new(),
        }
    }
}

/// The placeholder object that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

/// Checks that every placeholder in `v` points at one of `count` attachments
/// (`_reconstructPacket` throws "illegal attachments" otherwise).
pub fn placeholders_in_range(v: &Value, count: usize) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|i| placeholders_in_range(i, count)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                return map
                    .get("num")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| (n as usize) < count);
            }
            map.values().all(|i| placeholders_in_range(i, count))
        }
        _ => true,
    }
}

/// Appends the packet header `<type>[<n>-][<nsp>,][<id>]` to `out`. Event and ack types become
/// their binary forms when `attachments > 0`.
pub fn encode_header(
    ty: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    out: &mut Vec<u8>,
) {
    let ty = match (ty, attachments) {
        (PacketType::Event, 1..) => PacketType::BinaryEvent,
        (PacketType::Ack, 1..) => PacketType::BinaryAck,
        (ty, _) => ty,
    };
    out.push(b'0' + ty as u8);
    if ty.is_binary() {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
}

/// Appends `["event",arg1,arg2,...]` to `out`.
pub fn encode_event_args(event: &str, args: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    write_json(&Value::from(event), out);
    for arg in args {
        out.push(b',');
        write_json(arg, out);
    }
    out.push(b']');
}

/// Appends `[arg1,arg2,...]` to `out`.
pub fn encode_args(args: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(arg, out);
    }
    out.push(b']');
}

/// Appends a JSON value to `out`. Serializing a `Value` into a Vec cannot fail.
pub fn write_json(v: &Value, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, v);
}

/// An EVENT (BINARY_EVENT when `data` has attachments) as Engine.IO message frames: the text
/// packet, then one binary frame per attachment. Encoded once; every recipient shares them.
pub fn event_frames(nsp: &str, event: &str, ack: Option<u64>, data: &Payload) -> Vec<OutFrame> {
    packet_frames(PacketType::Event, nsp, Some(event), ack, data)
}

/// A recoverable EVENT (connection state recovery, docs/PROTOCOL.md): the arguments, then
/// `offset` as one more string argument, which the client sends back when it reconnects.
pub fn event_frames_with_offset(
    nsp: &str,
    event: &str,
    data: &Payload,
    offset: &str,
) -> Vec<OutFrame> {
    let mut frames = Vec::with_capacity(1 + data.bins.len());
    frames.push(OutFrame::text(64 + offset.len(), |b| {
        b.push(ENGINEIO_MESSAGE);
        encode_header(PacketType::Event, nsp, None, data.bins.len(), b);
        encode_event_args(event, &data.args, b);
        b.pop(); // the closing bracket, reopened for the offset
        b.push(b',');
        write_json(&Value::from(offset), b);
        b.push(b']');
    }));
    frames.extend(data.bins.iter().map(|bin| OutFrame::binary(bin)));
    frames
}

/// An ACK (BINARY_ACK with attachments) answering `id`, as Engine.IO message frames.
pub fn ack_frames(nsp: &str, id: u64, data: &Payload) -> Vec<OutFrame> {
    packet_frames(PacketType::Ack, nsp, None, Some(id), data)
}

fn packet_frames(
    ty: PacketType,
    nsp: &str,
    event: Option<&str>,
    id: Option<u64>,
    data: &Payload,
) -> Vec<OutFrame> {
    let mut frames = Vec::with_capacity(1 + data.bins.len());
    frames.push(OutFrame::text(64, |b| {
        b.push(ENGINEIO_MESSAGE);
        encode_header(ty, nsp, id, data.bins.len(), b);
        match event {
            Some(event) => encode_event_args(event, &data.args, b),
            None => encode_args(&data.args, b),
        }
    }));
    frames.extend(data.bins.iter().map(|bin| OutFrame::binary(bin)));
    frames
}

/// A CONNECT, CONNECT_ERROR or DISCONNECT packet as an Engine.IO message frame.
pub fn control_frame(ty: PacketType, nsp: &str, data: Option<&Value>) -> OutFrame {
    OutFrame::text(32 + nsp.len(), |b| {
        b.push(ENGINEIO_MESSAGE);
        encode_header(ty, nsp, None, 0, b);
        if let Some(data) = data {
            write_json(data, b);
        }
    })
}

/// The Engine.IO `message` type digit every Socket.IO packet rides in.
const ENGINEIO_MESSAGE: u8 = b'4';

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_encoded_once_into_a_text_frame_and_its_attachments() {
        let data = Payload::new().arg("a").bin(vec![1u8, 2]).bin(vec![3u8]);
        let frames = event_frames("/chat", "ev", Some(7), &data);
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0].payload(),
            br#"452-/chat,7["ev","a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(frames[1].wire().as_ref(), &[0x82, 2, 1, 2]);
        assert_eq!(frames[2].wire().as_ref(), &[0x82, 1, 3]);
        // Recipients share the encoded bytes: a clone is a reference, not a copy.
        let copy = frames[0].clone();
        assert_eq!(copy.wire().as_ptr(), frames[0].wire().as_ptr());
        let plain = event_frames("/", "ev", None, &Payload::from(serde_json::json!({"k": 1})));
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].wire().as_ref(), b"\x81\x1042[\"ev\",{\"k\":1}]");
    }

    #[test]
    fn a_recoverable_event_carries_its_offset_as_the_last_argument() {
        let data = Payload::from(serde_json::json!({"k": 1}));
        let frames = event_frames_with_offset("/", "ev", &data, "00a");
        assert_eq!(frames[0].payload(), br#"42["ev",{"k":1},"00a"]"#);
        let none = event_frames_with_offset("/c", "ev", &Payload::new(), "01");
        assert_eq!(none[0].payload(), br#"42/c,["ev","01"]"#);
        let bin = event_frames_with_offset("/", "b", &Payload::new().bin(vec![1u8]), "2");
        assert_eq!(bin.len(), 2);
        assert_eq!(
            bin[0].payload(),
            br#"451-["b",{"_placeholder":true,"num":0},"2"]"#
        );
    }

    #[test]
    fn acks_and_control_packets_are_framed_like_node() {
        let ack = ack_frames("/", 12, &Payload::from("ok"));
        assert_eq!(ack[0].payload(), br#"4312["ok"]"#);
        let bin_ack = ack_frames("/a", 3, &Payload::new().bin(vec![9u8]));
        assert_eq!(
            bin_ack[0].payload(),
            br#"461-/a,3[{"_placeholder":true,"num":0}]"#
        );
        let connect = control_frame(
            PacketType::Connect,
            "/",
            Some(&serde_json::json!({"sid": "x"})),
        );
        assert_eq!(connect.payload(), br#"40{"sid":"x"}"#);
        let disconnect = control_frame(PacketType::Disconnect, "/chat", None);
        assert_eq!(disconnect.payload(), b"41/chat,");
    }

    #[test]
    fn reserved_events_are_recognised() {
        assert!(is_reserved_event("connect"));
        assert!(is_reserved_event("removeListener"));
        assert!(!is_reserved_event("message"));
        assert!(!is_reserved_event("Connect"));
    }
    use serde_json::json;

    fn dec(s: &str) -> Result<Packet<'_>, DecodeError> {
        decode(s, 10)
    }

    #[test]
    fn decodes_the_spec_examples() {
        let p = dec("0").unwrap();
        assert_eq!(
            (p.ty, p.nsp, p.id, p.data),
            (PacketType::Connect, "/", None, None)
        );
        let p = dec("0/admin,").unwrap();
        assert_eq!((p.ty, p.nsp, p.data), (PacketType::Connect, "/admin", None));
        let p = dec(r#"0{"token":"123"}"#).unwrap();
        assert_eq!(p.data, Some(json!({"token": "123"})));
        let p = dec(r#"0/admin,{"token":"abc"}"#).unwrap();
        assert_eq!((p.nsp, p.data), ("/admin", Some(json!({"token": "abc"}))));
        let p = dec(r#"2["foo"]"#).unwrap();
        assert_eq!((p.ty, p.nsp, p.id), (PacketType::Event, "/", None));
        let p = dec(r#"2/admin,["bar"]"#).unwrap();
        assert_eq!((p.nsp, p.data), ("/admin", Some(json!(["bar"]))));
        let p = dec(r#"212["foo"]"#).unwrap();
        assert_eq!(p.id, Some(12));
        let p = dec(r#"3/admin,13["bar"]"#).unwrap();
        assert_eq!((p.ty, p.nsp, p.id), (PacketType::Ack, "/admin", Some(13)));
        let p = dec(r#"51-["baz",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.ty, p.attachments), (PacketType::BinaryEvent, 1));
        let p = dec(r#"61-15["bar",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            (p.ty, p.attachments, p.id),
            (PacketType::BinaryAck, 1, Some(15))
        );
        let p = dec("1").unwrap();
        assert_eq!((p.ty, p.nsp), (PacketType::Disconnect, "/"));
        let p = dec("1/admin,").unwrap();
        assert_eq!((p.ty, p.nsp), (PacketType::Disconnect, "/admin"));
        let p = dec(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#).unwrap();
        assert_eq!(p.id, Some(456));
        let p = dec(r#"452-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert!(
            p.is_err(),
            "type 4 is CONNECT_ERROR and its data must not be an array"
        );
        let p = dec(r#"52-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!((p.attachments, p.id), (2, Some(789)));
    }

    #[test]
    fn nesting_is_bounded_before_parsing() {
        assert!(!json_nests_deeper(br#"["a",{"b":[1,[2]]}]"#, 4));
        assert!(json_nests_deeper(br#"["a",{"b":[1,[2]]}]"#, 3));
        assert!(
            !json_nests_deeper(br#"["[[[[{{{{\"[["]"#, 1),
            "brackets in strings do not count"
        );
        let limits = DecodeLimits {
            max_depth: 32,
            ..DecodeLimits::default()
        };
        let ok = format!("2[\"e\",{}1{}]", "[".repeat(31), "]".repeat(31));
        assert!(decode_with(&ok, &limits).is_ok());
        let deep = format!("2[\"e\",{}1{}]", "[".repeat(32), "]".repeat(32));
        assert_eq!(decode_with(&deep, &limits), Err(DecodeError::TooDeep));
        // Far past serde_json's own limit: refused before any recursion.
        let bomb = format!("2[\"e\",{}]", "[".repeat(100_000));
        assert_eq!(decode_with(&bomb, &limits), Err(DecodeError::TooDeep));
    }

    #[test]
    fn names_are_bounded() {
        let limits = DecodeLimits {
            max_name_length: 8,
            ..DecodeLimits::default()
        };
        assert!(decode_with("0/1234567,", &limits).is_ok());
        assert_eq!(
            decode_with("0/12345678,", &limits),
            Err(DecodeError::NameTooLong)
        );
        assert_eq!(
            decode_with(&format!("0/{}", "n".repeat(100_000)), &limits),
            Err(DecodeError::NameTooLong)
        );
        assert!(decode_with(r#"2["12345678"]"#, &limits).is_ok());
        assert_eq!(
            decode_with(r#"2["123456789"]"#, &limits),
            Err(DecodeError::NameTooLong)
        );
        assert!(
            decode_with(r#"3["123456789"]"#, &limits).is_ok(),
            "an ack has no event name"
        );
        assert!(DecodeError::NameTooLong.is_over_limit());
        assert!(!DecodeError::InvalidPayload.is_over_limit());
    }

    #[test]
    fn namespace_without_comma_is_accepted() {
        let p = dec("0/custom").unwrap();
        assert_eq!(
            (p.ty, p.nsp, p.data),
            (PacketType::Connect, "/custom", None)
        );
    }

    #[test]
    fn refuses_what_the_suite_refuses() {
        // The suite's invalid packets (after the EIO `4`): `abc`, `2{}`, `2abc[...]`.
        assert_eq!(dec("abc"), Err(DecodeError::UnknownType));
        assert_eq!(dec("2{}"), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"2abc["x"]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec("9"), Err(DecodeError::UnknownType));
        assert_eq!(dec(""), Err(DecodeError::UnknownType));
        assert_eq!(dec(r#"2["connect"]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"2[]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"2[{}]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"3{}"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"0[]"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec(r#"1{}"#), Err(DecodeError::InvalidPayload));
        assert_eq!(dec("2"), Err(DecodeError::InvalidPayload));
        assert_eq!(
            dec("3/admin,13").unwrap().data,
            None,
            "an ack may carry no data"
        );
        assert_eq!(dec(r#"5x-["a"]"#), Err(DecodeError::IllegalAttachments));
        assert_eq!(dec(r#"5["a"]"#), Err(DecodeError::IllegalAttachments));
        assert_eq!(dec(r#"511-["a"]"#), Err(DecodeError::TooManyAttachments));
        assert_eq!(
            dec(r#"299999999999999999999999["a"]"#),
            Err(DecodeError::InvalidAckId)
        );
        assert!(dec(r#"4"error""#).is_ok());
        assert!(dec(r#"4{"message":"x"}"#).is_ok());
        assert!(dec(r#"2[1,2]"#).is_ok(), "numeric event names are valid");
    }

    #[test]
    fn encodes_headers() {
        let mut out = Vec::new();
        encode_header(PacketType::Connect, "/", None, 0, &mut out);
        assert_eq!(out, b"0");
        out.clear();
        encode_header(PacketType::Disconnect, "/admin", None, 0, &mut out);
        assert_eq!(out, b"1/admin,");
        out.clear();
        encode_header(PacketType::Event, "/", Some(12), 0, &mut out);
        assert_eq!(out, b"212");
        out.clear();
        encode_header(PacketType::Ack, "/admin", Some(13), 0, &mut out);
        assert_eq!(out, b"3/admin,13");
        out.clear();
        encode_header(PacketType::Event, "/", None, 1, &mut out);
        assert_eq!(out, b"51-");
        out.clear();
        encode_header(PacketType::Ack, "/", Some(15), 1, &mut out);
        assert_eq!(out, b"61-15");
        out.clear();
        encode_header(PacketType::Ack, "/admin", Some(1), 1, &mut out);
        assert_eq!(out, b"61-/admin,1");
    }

    #[test]
    fn encodes_event_arguments() {
        let mut out = Vec::new();
        let p = Payload::new()
            .arg("a")
            .bin(vec![1u8, 2, 3])
            .arg(json!({"k": [1]}));
        encode_event_args("message-back", &p.args, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["message-back","a",{"_placeholder":true,"num":0},{"k":[1]}]"#
        );
        let mut out = Vec::new();
        encode_args(&[], &mut out);
        assert_eq!(out, b"[]");
    }

    #[test]
    fn checks_placeholder_ranges() {
        let v = json!(["m", {"_placeholder": true, "num": 0}, [{"_placeholder": true, "num": 1}]]);
        assert!(placeholders_in_range(&v, 2));
        assert!(!placeholders_in_range(&v, 1));
        let bad = json!([{"_placeholder": true, "num": "0"}]);
        assert!(!placeholders_in_range(&bad, 3));
        assert!(placeholders_in_range(&json!([{"_placeholder": false}]), 0));
    }
}
