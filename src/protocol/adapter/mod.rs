//! Wire formats of Node's `@socket.io/redis-adapter` (classic, v8) and `@socket.io/redis-emitter`
//! (`shared/protocol/SOCKETIO.md` §3.1-3.6 and §3.8): channel names, broadcast messages,
//! requests and responses. Pure: bytes in, values out.
//!
//! * Broadcasts are msgpack `[uid, {type, data, nsp}, {rooms, except, flags}]` ([`BroadcastMessage`]).
//! * Requests and responses are JSON, except BROADCAST (7) requests and BROADCAST_ACK (9)
//!   responses, which are msgpack maps because they may carry binary. Receivers tell them apart by
//!   the first byte (`{` means JSON), as Node does ([`Request`], [`Response`]).
//! * Packet data is arbitrary JavaScript data with binary anywhere ([`JsValue`]); the server keeps
//!   it in Socket.IO's placeholder form (JSON plus attachments), see
//!   [`JsValue::into_placeholder_json`] and [`JsValue::from_placeholder_json`].
//!
//! The msgpack codec is written here rather than taken from `rmpv`: the encoder must reproduce
//! notepack.io's choices byte for byte (integral numbers as ints, floats as float64, Date as the
//! timestamp extension), the decoder must accept notepack 2.x quirks, hand binary out as zero-copy
//! [`Bytes`] slices of the received message, and bound both nesting depth and allocations against
//! hostile input. Tests cross-check it against `rmpv`.

use std::borrow::Cow;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Channel prefix of Node's adapter and emitter (their `key` option).
pub const DEFAULT_PREFIX: &str = "socket.io";

/// The uid `@socket.io/redis-emitter` puts in its broadcasts and server-side emits.
pub const EMITTER_UID: &str = "emitter";

/// Deepest nesting of arrays and maps accepted in any message. It equals serde_json's own
/// recursion limit (which bounds the JSON messages), so data the server accepted from a client
/// can cross Redis, while a hostile message cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// What can go wrong decoding an adapter message. Every variant means the message is unusable:
/// the caller drops it (Node ignores such messages too), counts it and logs at debug level; a
/// malformed message from another node is never a reason to disconnect anything.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The msgpack input ends inside a value. Drop the message: it was cut or is not msgpack.
    #[error("msgpack input ends early")]
    Truncated,
    /// Bytes remain after the top-level msgpack value (notepack rejects this as well). Drop it.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
    /// A byte that starts no msgpack value (0xc1). Drop the message.
    #[error("invalid msgpack marker 0x{0:02x}")]
    InvalidMarker(u8),
    /// A msgpack map key that is neither a string nor an integer, which no JavaScript object has.
    /// Drop the message.
    #[error("msgpack map key is neither a string nor an integer")]
    InvalidMapKey,
    /// Arrays and maps nested deeper than [`MAX_DEPTH`]: most likely hostile. Drop the message.
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The payload starts with `{` but is not valid JSON. Drop the message.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the message cannot be used without is absent or null. Drop the message.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds the wrong kind of value. Drop the message.
    #[error("field `{field}` is not {expected}")]
    WrongType {
        /// The field, as named on the wire.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A request or response type that is unknown or has no meaning on this channel (Node ignores
    /// these). Drop the message.
    #[error("unexpected message type {0}")]
    UnexpectedType(i64),
    /// A binary placeholder whose `num` is not an index into the attachments. The packet is
    /// malformed: treat it as a Socket.IO parse error, as socket.io-parser does ("illegal
    /// attachments").
    #[error("illegal attachment placeholder")]
    IllegalAttachment,
}

type Result<T> = std::result::Result<T, AdapterError>;

// ---------------------------------------------------------------------------------------------
// Channels

/// The Redis channels of one namespace, named as Node's classic adapter names them.
/// Build it once per namespace: [`Channels::room_of`] runs for every received broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    broadcast: String,
    request: String,
    response: String,
    pattern: String,
}

impl Channels {
    /// The channels for `prefix` (usually [`DEFAULT_PREFIX`]) and the namespace `nsp` (e.g. `/`).
    pub fn new(prefix: &str, nsp: &str) -> Self {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
            // Node does not escape, so a namespace with glob characters would also match other
            // namespaces' channels; escaping makes the pattern match this namespace only.
            pattern: format!("{}#{}#*", glob_escape(prefix), glob_escape(nsp)),
        }
    }

    /// `prefix#nsp#`: broadcasts to the whole namespace or to several rooms.
    pub fn broadcast(&self) -> &str {
        &self.broadcast
    }

    /// `prefix#nsp#room#`: broadcasts to exactly one room.
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.broadcast)
    }

    /// Where a broadcast to `rooms` is published: the room's channel when it targets exactly one
    /// room (Node counts distinct rooms, it holds them in a Set), else the namespace channel.
    pub fn publish_channel(&self, rooms: &[String]) -> Cow<'_, str> {
        match rooms.split_first() {
            Some((first, rest)) if rest.iter().all(|room| room == first) => {
                Cow::Owned(self.room(first))
            }
            _ => Cow::Borrowed(&self.broadcast),
        }
    }

    /// `prefix-request#nsp#`: requests (SUBSCRIBE, and PUBSUB NUMSUB counts the servers).
    pub fn request(&self) -> &str {
        &self.request
    }

    /// `prefix-response#nsp#`: responses, by default.
    pub fn response(&self) -> &str {
        &self.response
    }

    /// `prefix-response#nsp#uid#`: responses for the node `uid` when Node's
    /// `publishOnSpecificResponseChannel` is on.
    pub fn specific_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// `prefix#nsp#*`, glob characters of prefix and nsp escaped: the PSUBSCRIBE pattern that
    /// receives both the namespace channel and every room channel.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The room a broadcast received on `channel` targets, with Node's
    /// `channel.slice(prefix.length, -1)` semantics: `Some("")` for the namespace channel,
    /// `Some(room)` for a room channel, `None` for a channel of another namespace. Like Node, the
    /// last character is dropped whatever it is.
    pub fn room_of<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        let mut chars = rest.chars();
        chars.next_back();
        Some(chars.as_str())
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Values

/// A JavaScript value as notepack.io carries it: JSON's values plus binary and Date.
///
/// JavaScript has only doubles: integers that fit in `i64` decode to [`JsValue::Int`], other
/// numbers to [`JsValue::Float`]. `undefined` decodes as [`JsValue::Null`], as notepack 3 writes
/// it. Maps keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub enum JsValue {
    /// `null` or `undefined`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integral number.
    Int(i64),
    /// Any other number; an integral float encodes exactly like the same [`JsValue::Int`].
    Float(f64),
    /// A string.
    Str(String),
    /// A Buffer, ArrayBuffer or typed array.
    Bin(Bytes),
    /// An array.
    Array(Vec<JsValue>),
    /// An object, keys in order.
    Map(Vec<(String, JsValue)>),
    /// A Date, in milliseconds since the Unix epoch.
    Date(i64),
}

/// Milliseconds bounding a valid JavaScript Date (ECMA-262 TimeClip).
const MAX_DATE_MS: i64 = 8_640_000_000_000_000;

impl JsValue {
    /// The value of the last entry `key` of a map (JavaScript keeps the last duplicate).
    pub fn get(&self, key: &str) -> Option<&JsValue> {
        match self {
            JsValue::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The Socket.IO placeholder form: every binary replaced, depth first and in order, by
    /// `{"_placeholder":true,"num":N}`, with the binaries as attachments `0..N`. A Date becomes its
    /// ISO string and a non-finite number `null`, as `JSON.stringify` makes them.
    pub fn into_placeholder_json(self) -> (serde_json::Value, Vec<Bytes>) {
        let mut attachments = Vec::new();
        let json = self.into_json_with(&mut attachments);
        (json, attachments)
    }

    fn into_json_with(self, attachments: &mut Vec<Bytes>) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            JsValue::Null => J::Null,
            JsValue::Bool(b) => J::Bool(b),
            JsValue::Int(i) => J::from(i),
            JsValue::Float(f) => match js_integer(f) {
                // JSON.stringify(3.0) is "3": keep integral numbers integers.
                Some(i) => J::from(i),
                None => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            },
            JsValue::Str(s) => J::String(s),
            JsValue::Bin(bin) => {
                let num = attachments.len();
                attachments.push(bin);
                serde_json::json!({ "_placeholder": true, "num": num })
            }
            JsValue::Array(items) => J::Array(
                items
                    .into_iter()
                    .map(|item| item.into_json_with(attachments))
                    .collect(),
            ),
            JsValue::Map(entries) => J::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, value.into_json_with(attachments)))
                    .collect(),
            ),
            JsValue::Date(ms) => iso_date(ms).map_or(J::Null, J::String),
        }
    }

    /// The value a Socket.IO placeholder form stands for: each `{"_placeholder":true,"num":N}` is
    /// replaced by `attachments[N]`. A `num` that is not an index into `attachments` is
    /// [`AdapterError::IllegalAttachment`]; nesting beyond [`MAX_DEPTH`] is
    /// [`AdapterError::TooDeep`].
    pub fn from_placeholder_json(json: &serde_json::Value, attachments: &[Bytes]) -> Result<Self> {
        from_placeholder_json(json, attachments, 0)
    }
}

/// `f` as an `i64` when JavaScript would treat it as an integer that fits one.
fn js_integer(f: f64) -> Option<i64> {
    // 2^63 is exact in f64; every integral f64 in [-2^63, 2^63) converts without loss.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

fn from_placeholder_json(
    json: &serde_json::Value,
    attachments: &[Bytes],
    depth: usize,
) -> Result<JsValue> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => JsValue::Null,
        J::Bool(b) => JsValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => JsValue::Int(i),
            None => JsValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => JsValue::Str(s.clone()),
        J::Array(items) => {
            check_depth(depth)?;
            let items = items
                .iter()
                .map(|item| from_placeholder_json(item, attachments, depth + 1))
                .collect::<Result<_>>()?;
            JsValue::Array(items)
        }
        J::Object(map) if map.get("_placeholder") == Some(&J::Bool(true)) => {
            // socket.io-parser's check: `num` must be a number indexing the attachments.
            return map
                .get("num")
                .and_then(J::as_u64)
                .and_then(|num| usize::try_from(num).ok())
                .and_then(|num| attachments.get(num))
                .map(|bin| JsValue::Bin(bin.clone()))
                .ok_or(AdapterError::IllegalAttachment);
        }
        J::Object(map) => {
            check_depth(depth)?;
            let entries = map
                .iter()
                .map(|(key, value)| {
                    Ok((
                        key.clone(),
                        from_placeholder_json(value, attachments, depth + 1)?,
                    ))
                })
                .collect::<Result<_>>()?;
            JsValue::Map(entries)
        }
    })
}

fn check_depth(depth: usize) -> Result<()> {
    if depth >= MAX_DEPTH {
        Err(AdapterError::TooDeep)
    } else {
        Ok(())
    }
}

/// `JSON.stringify` semantics, for the JSON requests and responses: a binary becomes Node's
/// `Buffer.toJSON()` shape `{"type":"Buffer","data":[..]}` and a Date its ISO string.
impl Serialize for JsValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            JsValue::Null => serializer.serialize_unit(),
            JsValue::Bool(b) => serializer.serialize_bool(*b),
            JsValue::Int(i) => serializer.serialize_i64(*i),
            JsValue::Float(f) => match js_integer(*f) {
                Some(i) => serializer.serialize_i64(i),
                None if f.is_finite() => serializer.serialize_f64(*f),
                None => serializer.serialize_unit(),
            },
            JsValue::Str(s) => serializer.serialize_str(s),
            JsValue::Bin(bin) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "Buffer")?;
                map.serialize_entry("data", &bin[..])?;
                map.end()
            }
            JsValue::Array(items) => serializer.collect_seq(items),
            JsValue::Map(entries) => serializer.collect_map(entries.iter().map(|(k, v)| (k, v))),
            JsValue::Date(ms) => match iso_date(*ms) {
                Some(iso) => serializer.serialize_str(&iso),
                None => serializer.serialize_unit(),
            },
        }
    }
}

/// Plain JSON, keys kept in order (a `serde_json::Value` would sort them). Nesting is bounded by
/// serde_json's recursion limit, which equals [`MAX_DEPTH`].
impl<'de> Deserialize<'de> for JsValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(JsValueVisitor)
    }
}

struct JsValueVisitor;

impl<'de> Visitor<'de> for JsValueVisitor {
    type Value = JsValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Null)
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> std::result::Result<JsValue, E> {
        Ok(i64::try_from(u).map_or(JsValue::Float(u as f64), JsValue::Int))
    }

    fn visit_f64<E>(self, f: f64) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> std::result::Result<JsValue, E> {
        Ok(JsValue::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<JsValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<JsValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(JsValue::Map(entries))
    }
}

/// `Date.prototype.toISOString()`: `2000-06-13T00:00:00.000Z`, six-digit signed years outside
/// 0..=9999; `None` for an Invalid Date, which `JSON.stringify` writes as null.
fn iso_date(ms: i64) -> Option<String> {
    if !(-MAX_DATE_MS..=MAX_DATE_MS).contains(&ms) {
        return None;
    }
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    Some(format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    ))
}

/// `Date.prototype.toString()` of a Node process running in UTC, the form of `handshake.time` in
/// fetchSockets answers (SOCKETIO.md §2.4): `Wed Nov 25 2026 11:27:04 GMT+0000 (Coordinated
/// Universal Time)`. `None` for an Invalid Date.
pub fn js_date_string(ms: i64) -> Option<String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if !(-MAX_DATE_MS..=MAX_DATE_MS).contains(&ms) {
        return None;
    }
    let days = ms.div_euclid(86_400_000);
    let secs = ms.rem_euclid(86_400_000) / 1000;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[(days + 4).rem_euclid(7) as usize];
    let year = if year < 0 {
        format!("-{:06}", -year)
    } else {
        format!("{year:04}")
    };
    Some(format!(
        "{weekday} {} {day:02} {year} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// Broadcasts

/// The unencoded Socket.IO packet inside a broadcast or a BROADCAST request.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The Socket.IO packet type: 2 (EVENT), even when `data` holds binary; each receiver
    /// re-encodes the packet as BINARY_EVENT for its own clients.
    pub kind: u8,
    /// The event name and arguments, `[ev, ...args]` for an EVENT. [`JsValue::Null`] if absent.
    pub data: JsValue,
    /// The namespace; a message without one means `/`.
    pub nsp: String,
}

/// Broadcast flags. Unknown flags are ignored when decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Drop the packet for clients that cannot take it right now.
    pub volatile: bool,
    /// Per-message compression, when the sender chose.
    pub compress: Option<bool>,
    /// Deliver on the sender's node only. Node never publishes such a broadcast.
    pub local: bool,
    /// Ack timeout in milliseconds, for broadcasts with acks.
    pub timeout: Option<u64>,
}

/// Which sockets a broadcast (or fetch, join, leave, disconnect) targets, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOpts {
    /// Target these rooms; empty means every socket of the namespace. Should hold no duplicates.
    pub rooms: Vec<String>,
    /// Skip sockets in these rooms (socket ids are rooms: `socket.broadcast` excludes its own).
    pub except: Vec<String>,
    /// Delivery flags.
    pub flags: BroadcastFlags,
}

/// A broadcast published on [`Channels::publish_channel`]: msgpack `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The sending node's uid ([`EMITTER_UID`] for the emitter); receivers drop their own.
    pub uid: String,
    /// The packet to deliver.
    pub packet: Packet,
    /// Its targets.
    pub opts: BroadcastOpts,
}

impl BroadcastMessage {
    /// Decodes a broadcast leniently: keys in any order, extra keys and unknown flags ignored,
    /// integer rooms turned into their decimal strings, notepack 2.x encodings accepted.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let JsValue::Array(items) = decode_msgpack(payload)? else {
            return Err(wrong_type("message", "an array"));
        };
        let mut items = items.into_iter();
        let mut next = |field| non_null(items.next(), field);
        let uid = into_string(next("uid")?, "uid")?;
        let packet = Packet::from_value(next("packet")?)?;
        let opts = BroadcastOpts::from_value(next("opts")?)?;
        Ok(BroadcastMessage { uid, packet, opts })
    }

    /// Encodes exactly as Node's adapter does (keys `type,data,nsp` and `rooms,except,flags`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = MsgpackWriter::default();
        w.array_len(3);
        w.str(&self.uid);
        self.packet.write(&mut w);
        self.opts.write(&mut w);
        w.buf
    }
}

impl Packet {
    fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "packet")?;
        let kind = fields.integer("type")?;
        let kind = u8::try_from(kind).map_err(|_| wrong_type("type", "a packet type"))?;
        let data = fields.take("data").unwrap_or(JsValue::Null);
        let nsp = fields.opt_string("nsp")?.unwrap_or_else(|| "/".to_owned());
        Ok(Packet { kind, data, nsp })
    }

    fn write(&self, w: &mut MsgpackWriter) {
        w.map_len(3);
        w.str("type");
        w.int(i64::from(self.kind));
        w.str("data");
        w.value(&self.data);
        w.str("nsp");
        w.str(&self.nsp);
    }
}

impl BroadcastOpts {
    fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "opts")?;
        let rooms = fields.rooms("rooms")?;
        let except = fields.rooms("except")?;
        let flags = match fields.take("flags") {
            Some(flags) => BroadcastFlags::from_value(flags)?,
            None => BroadcastFlags::default(),
        };
        Ok(BroadcastOpts {
            rooms,
            except,
            flags,
        })
    }

    fn write(&self, w: &mut MsgpackWriter) {
        w.map_len(3);
        w.str("rooms");
        w.str_array(&self.rooms);
        w.str("except");
        w.str_array(&self.except);
        w.str("flags");
        self.flags.write(w);
    }

    fn json(&self) -> JsonOpts<'_> {
        JsonOpts {
            rooms: &self.rooms,
            except: &self.except,
        }
    }
}

impl BroadcastFlags {
    fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "flags")?;
        Ok(BroadcastFlags {
            volatile: fields.opt_bool("volatile")?.unwrap_or(false),
            compress: fields.opt_bool("compress")?,
            local: fields.opt_bool("local")?.unwrap_or(false),
            timeout: fields.opt_uint("timeout")?,
        })
    }

    /// Node writes the flags in the order the application chained them; this order is fixed.
    fn write(&self, w: &mut MsgpackWriter) {
        let len = usize::from(self.volatile)
            + usize::from(self.compress.is_some())
            + usize::from(self.local)
            + usize::from(self.timeout.is_some());
        w.map_len(len);
        if self.volatile {
            w.str("volatile");
            w.bool(true);
        }
        if let Some(compress) = self.compress {
            w.str("compress");
            w.bool(compress);
        }
        if self.local {
            w.str("local");
            w.bool(true);
        }
        if let Some(timeout) = self.timeout {
            w.str("timeout");
            w.uint(timeout);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and responses

/// Node's `RequestType`: the `type` of requests and of some responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RequestType {
    /// Socket ids in some rooms (legacy; adapter 8 no longer sends it).
    Sockets = 0,
    /// Every room of every node.
    AllRooms = 1,
    /// Make matching sockets join rooms.
    RemoteJoin = 2,
    /// Make matching sockets leave rooms.
    RemoteLeave = 3,
    /// Disconnect matching sockets.
    RemoteDisconnect = 4,
    /// Describe matching sockets (`fetchSockets`).
    RemoteFetch = 5,
    /// An event for the other servers (`serverSideEmit`).
    ServerSideEmit = 6,
    /// A broadcast whose acks are collected.
    Broadcast = 7,
    /// Response: how many clients a BROADCAST reached on one node.
    BroadcastClientCount = 8,
    /// Response: one client's ack to a BROADCAST.
    BroadcastAck = 9,
}

impl RequestType {
    /// The type for a wire code, if known.
    pub fn from_code(code: i64) -> Option<Self> {
        use RequestType::*;
        Some(match code {
            0 => Sockets,
            1 => AllRooms,
            2 => RemoteJoin,
            3 => RemoteLeave,
            4 => RemoteDisconnect,
            5 => RemoteFetch,
            6 => ServerSideEmit,
            7 => Broadcast,
            8 => BroadcastClientCount,
            9 => BroadcastAck,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A message on [`Channels::request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The requesting node's uid. The emitter's join, leave and disconnect requests carry none.
    pub uid: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// The request proper. Which ones must be answered, and how often, is in SOCKETIO.md §3.4.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// SOCKETS (0): answer [`Response::Sockets`] with the ids of local sockets in `rooms`.
    Sockets {
        /// Echoed in the response.
        request_id: String,
        /// Rooms to look in; empty means all.
        rooms: Vec<String>,
    },
    /// ALL_ROOMS (1): answer [`Response::AllRooms`].
    AllRooms {
        /// Echoed in the response.
        request_id: String,
    },
    /// REMOTE_JOIN (2): matching sockets join `rooms`. No response. Flags are not sent.
    RemoteJoin {
        /// The sockets.
        opts: BroadcastOpts,
        /// The rooms to join.
        rooms: Vec<String>,
    },
    /// REMOTE_LEAVE (3): matching sockets leave `rooms`. No response. Flags are not sent.
    RemoteLeave {
        /// The sockets.
        opts: BroadcastOpts,
        /// The rooms to leave.
        rooms: Vec<String>,
    },
    /// REMOTE_DISCONNECT (4): disconnect matching sockets. No response. Flags are not sent.
    RemoteDisconnect {
        /// The sockets.
        opts: BroadcastOpts,
        /// Also close the underlying connection.
        close: bool,
    },
    /// Legacy REMOTE_JOIN `{sid, room, requestId}`: the node holding `sid` answers
    /// [`Response::Done`].
    LegacyJoin {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// The room to join.
        room: String,
    },
    /// Legacy REMOTE_LEAVE `{sid, room, requestId}`: the node holding `sid` answers
    /// [`Response::Done`].
    LegacyLeave {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// The room to leave.
        room: String,
    },
    /// Legacy REMOTE_DISCONNECT `{sid, close, requestId}`: the node holding `sid` answers
    /// [`Response::Done`].
    LegacyDisconnect {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// Also close the underlying connection.
        close: bool,
    },
    /// REMOTE_FETCH (5): answer [`Response::RemoteFetch`] with the matching local sockets.
    /// Flags are not sent.
    RemoteFetch {
        /// Echoed in the response.
        request_id: String,
        /// The sockets.
        opts: BroadcastOpts,
    },
    /// SERVER_SIDE_EMIT (6): `[ev, ...args]` for the server-side listeners. With a request id,
    /// answer once with [`Response::ServerSideEmit`] (only the first ack argument travels).
    ServerSideEmit {
        /// Present when the sender waits for acks.
        request_id: Option<String>,
        /// The event name and arguments.
        data: Vec<JsValue>,
    },
    /// BROADCAST (7), msgpack: deliver `packet` locally with acks, answer exactly one
    /// [`Response::BroadcastClientCount`] (even for 0 clients), then one
    /// [`Response::BroadcastAck`] per client ack.
    Broadcast {
        /// Echoed in the responses.
        request_id: String,
        /// The packet to deliver.
        packet: Packet,
        /// Its targets; `flags.timeout` bounds the wait for acks.
        opts: BroadcastOpts,
    },
}

impl Request {
    /// Decodes a request: JSON if the first byte is `{`, else msgpack (as Node's `onrequest`).
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut fields = Fields::of(decode_payload(payload)?, "request")?;
        let uid = fields.opt_string("uid")?;
        let code = fields.integer("type")?;
        use RequestType as T;
        let body = match RequestType::from_code(code) {
            Some(T::Sockets) => RequestBody::Sockets {
                request_id: fields.string("requestId")?,
                rooms: fields.rooms("rooms")?,
            },
            Some(T::AllRooms) => RequestBody::AllRooms {
                request_id: fields.string("requestId")?,
            },
            Some(kind @ (T::RemoteJoin | T::RemoteLeave)) => {
                let join = kind == T::RemoteJoin;
                // Node takes the legacy per-socket path when `opts` is falsy.
                match fields.take("opts") {
                    Some(opts) => {
                        let opts = BroadcastOpts::from_value(opts)?;
                        let rooms = fields.rooms("rooms")?;
                        if join {
                            RequestBody::RemoteJoin { opts, rooms }
                        } else {
                            RequestBody::RemoteLeave { opts, rooms }
                        }
                    }
                    None => {
                        let request_id = fields.string("requestId")?;
                        let sid = fields.string("sid")?;
                        let room = into_room(fields.required("room")?, "room")?;
                        if join {
                            RequestBody::LegacyJoin {
                                request_id,
                                sid,
                                room,
                            }
                        } else {
                            RequestBody::LegacyLeave {
                                request_id,
                                sid,
                                room,
                            }
                        }
                    }
                }
            }
            Some(T::RemoteDisconnect) => {
                let close = fields.opt_bool("close")?.unwrap_or(false);
                match fields.take("opts") {
                    Some(opts) => RequestBody::RemoteDisconnect {
                        opts: BroadcastOpts::from_value(opts)?,
                        close,
                    },
                    None => RequestBody::LegacyDisconnect {
                        request_id: fields.string("requestId")?,
                        sid: fields.string("sid")?,
                        close,
                    },
                }
            }
            Some(T::RemoteFetch) => RequestBody::RemoteFetch {
                request_id: fields.string("requestId")?,
                opts: BroadcastOpts::from_value(fields.required("opts")?)?,
            },
            Some(T::ServerSideEmit) => RequestBody::ServerSideEmit {
                request_id: fields.opt_string("requestId")?,
                data: match fields.required("data")? {
                    JsValue::Array(items) => items,
                    _ => return Err(wrong_type("data", "an array")),
                },
            },
            Some(T::Broadcast) => RequestBody::Broadcast {
                request_id: fields.string("requestId")?,
                packet: Packet::from_value(fields.required("packet")?)?,
                opts: BroadcastOpts::from_value(fields.required("opts")?)?,
            },
            Some(T::BroadcastClientCount | T::BroadcastAck) | None => {
                return Err(AdapterError::UnexpectedType(code))
            }
        };
        Ok(Request { uid, body })
    }

    /// Encodes as Node does: JSON with Node's key order, msgpack for BROADCAST.
    pub fn encode(&self) -> Vec<u8> {
        let uid = self.uid.as_deref();
        let kind = self.request_type().code();
        let json = match &self.body {
            RequestBody::Broadcast {
                request_id,
                packet,
                opts,
            } => {
                let mut w = MsgpackWriter::default();
                w.map_len(if uid.is_some() { 5 } else { 4 });
                if let Some(uid) = uid {
                    w.str("uid");
                    w.str(uid);
                }
                w.str("requestId");
                w.str(request_id);
                w.str("type");
                w.int(i64::from(kind));
                w.str("packet");
                packet.write(&mut w);
                w.str("opts");
                opts.write(&mut w);
                return w.buf;
            }
            RequestBody::Sockets { request_id, rooms } => JsonRequest {
                request_id: Some(request_id),
                rooms: Some(rooms),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::AllRooms { request_id } => JsonRequest {
                request_id: Some(request_id),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::RemoteJoin { opts, rooms } | RequestBody::RemoteLeave { opts, rooms } => {
                JsonRequest {
                    opts: Some(opts.json()),
                    rooms: Some(rooms),
                    ..JsonRequest::new(uid, kind)
                }
            }
            RequestBody::RemoteDisconnect { opts, close } => JsonRequest {
                opts: Some(opts.json()),
                close: Some(*close),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::LegacyJoin {
                request_id,
                sid,
                room,
            }
            | RequestBody::LegacyLeave {
                request_id,
                sid,
                room,
            } => JsonRequest {
                request_id: Some(request_id),
                sid: Some(sid),
                room: Some(room),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::LegacyDisconnect {
                request_id,
                sid,
                close,
            } => JsonRequest {
                request_id: Some(request_id),
                sid: Some(sid),
                close: Some(*close),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::RemoteFetch { request_id, opts } => JsonRequest {
                request_id: Some(request_id),
                opts: Some(opts.json()),
                ..JsonRequest::new(uid, kind)
            },
            RequestBody::ServerSideEmit { request_id, data } => JsonRequest {
                request_id: request_id.as_deref(),
                data: Some(data),
                ..JsonRequest::new(uid, kind)
            },
        };
        to_json(&json)
    }

    /// The wire type of this request.
    pub fn request_type(&self) -> RequestType {
        use RequestType as T;
        match self.body {
            RequestBody::Sockets { .. } => T::Sockets,
            RequestBody::AllRooms { .. } => T::AllRooms,
            RequestBody::RemoteJoin { .. } | RequestBody::LegacyJoin { .. } => T::RemoteJoin,
            RequestBody::RemoteLeave { .. } | RequestBody::LegacyLeave { .. } => T::RemoteLeave,
            RequestBody::RemoteDisconnect { .. } | RequestBody::LegacyDisconnect { .. } => {
                T::RemoteDisconnect
            }
            RequestBody::RemoteFetch { .. } => T::RemoteFetch,
            RequestBody::ServerSideEmit { .. } => T::ServerSideEmit,
            RequestBody::Broadcast { .. } => T::Broadcast,
        }
    }

    /// The id responses must echo; `None` when no response is expected.
    pub fn request_id(&self) -> Option<&str> {
        match &self.body {
            RequestBody::Sockets { request_id, .. }
            | RequestBody::AllRooms { request_id }
            | RequestBody::LegacyJoin { request_id, .. }
            | RequestBody::LegacyLeave { request_id, .. }
            | RequestBody::LegacyDisconnect { request_id, .. }
            | RequestBody::RemoteFetch { request_id, .. }
            | RequestBody::Broadcast { request_id, .. } => Some(request_id),
            RequestBody::ServerSideEmit { request_id, .. } => request_id.as_deref(),
            RequestBody::RemoteJoin { .. }
            | RequestBody::RemoteLeave { .. }
            | RequestBody::RemoteDisconnect { .. } => None,
        }
    }
}

/// One socket in a REMOTE_FETCH response; Node builds a `RemoteSocket` from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// `{headers, time, address, xdomain, secure, issued, url, query, auth}` (SOCKETIO.md §2.4).
    pub handshake: JsValue,
    /// The rooms it is in, its own id included.
    pub rooms: Vec<String>,
    /// The application's `socket.data`.
    pub data: JsValue,
}

/// A message on [`Channels::response`] (or [`Channels::specific_response`]). Route it by
/// [`Response::request_id`]; responses to other nodes' requests arrive too and are ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Answer to SOCKETS (0): local socket ids.
    Sockets {
        /// The request's id.
        request_id: String,
        /// Socket ids.
        sockets: Vec<String>,
    },
    /// Answer to REMOTE_FETCH (5): local matching sockets.
    RemoteFetch {
        /// The request's id.
        request_id: String,
        /// The sockets.
        sockets: Vec<RemoteSocket>,
    },
    /// Answer to ALL_ROOMS (1): local rooms.
    AllRooms {
        /// The request's id.
        request_id: String,
        /// Room names, socket-id rooms included.
        rooms: Vec<String>,
    },
    /// Answer to a legacy per-socket join, leave or disconnect: it was done.
    Done {
        /// The request's id.
        request_id: String,
    },
    /// Answer to SERVER_SIDE_EMIT (6) with a request id: the first ack argument.
    ServerSideEmit {
        /// The request's id.
        request_id: String,
        /// The ack argument, [`JsValue::Null`] if none.
        data: JsValue,
    },
    /// BROADCAST_CLIENT_COUNT (8): how many clients one node sent a BROADCAST to.
    BroadcastClientCount {
        /// The request's id.
        request_id: String,
        /// Clients reached on that node.
        client_count: u64,
    },
    /// BROADCAST_ACK (9), msgpack: one client's ack to a BROADCAST.
    BroadcastAck {
        /// The request's id.
        request_id: String,
        /// The client's first ack argument.
        packet: JsValue,
    },
}

impl Response {
    /// Decodes a response: JSON if the first byte is `{`, else msgpack (as Node's `onresponse`).
    ///
    /// Node's `{requestId, sockets}` does not say whether it answers SOCKETS or REMOTE_FETCH;
    /// a list of strings is read as [`Response::Sockets`], anything else (the empty list
    /// included) as [`Response::RemoteFetch`].
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut fields = Fields::of(decode_payload(payload)?, "response")?;
        let request_id = fields.string("requestId")?;
        if let Some(code) = fields.opt_integer("type")? {
            return match RequestType::from_code(code) {
                Some(RequestType::ServerSideEmit) => Ok(Response::ServerSideEmit {
                    request_id,
                    data: fields.take("data").unwrap_or(JsValue::Null),
                }),
                Some(RequestType::BroadcastClientCount) => Ok(Response::BroadcastClientCount {
                    request_id,
                    client_count: fields
                        .opt_uint("clientCount")?
                        .ok_or(AdapterError::MissingField("clientCount"))?,
                }),
                Some(RequestType::BroadcastAck) => Ok(Response::BroadcastAck {
                    request_id,
                    packet: fields.take("packet").unwrap_or(JsValue::Null),
                }),
                _ => Err(AdapterError::UnexpectedType(code)),
            };
        }
        if let Some(sockets) = fields.take("sockets") {
            let JsValue::Array(sockets) = sockets else {
                return Err(wrong_type("sockets", "an array"));
            };
            if !sockets.is_empty() && sockets.iter().all(|s| matches!(s, JsValue::Str(_))) {
                let sockets = sockets
                    .into_iter()
                    .map(|id| into_string(id, "sockets"))
                    .collect::<Result<_>>()?;
                return Ok(Response::Sockets {
                    request_id,
                    sockets,
                });
            }
            let sockets = sockets
                .into_iter()
                .map(RemoteSocket::from_value)
                .collect::<Result<_>>()?;
            return Ok(Response::RemoteFetch {
                request_id,
                sockets,
            });
        }
        Ok(match fields.rooms_if_present("rooms")? {
            Some(rooms) => Response::AllRooms { request_id, rooms },
            None => Response::Done { request_id },
        })
    }

    /// Encodes as Node does: JSON with Node's key order, msgpack for BROADCAST_ACK.
    pub fn encode(&self) -> Vec<u8> {
        let json = match self {
            Response::BroadcastAck { request_id, packet } => {
                let mut w = MsgpackWriter::default();
                w.map_len(3);
                w.str("type");
                w.int(i64::from(RequestType::BroadcastAck.code()));
                w.str("requestId");
                w.str(request_id);
                w.str("packet");
                w.value(packet);
                return w.buf;
            }
            Response::Sockets {
                request_id,
                sockets,
            } => JsonResponse {
                sockets: Some(JsonSockets::Ids(sockets)),
                ..JsonResponse::new(None, request_id)
            },
            Response::RemoteFetch {
                request_id,
                sockets,
            } => JsonResponse {
                sockets: Some(JsonSockets::Full(sockets)),
                ..JsonResponse::new(None, request_id)
            },
            Response::AllRooms { request_id, rooms } => JsonResponse {
                rooms: Some(rooms),
                ..JsonResponse::new(None, request_id)
            },
            Response::Done { request_id } => JsonResponse::new(None, request_id),
            Response::ServerSideEmit { request_id, data } => JsonResponse {
                data: Some(data),
                ..JsonResponse::new(Some(RequestType::ServerSideEmit), request_id)
            },
            Response::BroadcastClientCount {
                request_id,
                client_count,
            } => JsonResponse {
                client_count: Some(*client_count),
                ..JsonResponse::new(Some(RequestType::BroadcastClientCount), request_id)
            },
        };
        to_json(&json)
    }

    /// The id of the request this answers.
    pub fn request_id(&self) -> &str {
        match self {
            Response::Sockets { request_id, .. }
            | Response::RemoteFetch { request_id, .. }
            | Response::AllRooms { request_id, .. }
            | Response::Done { request_id }
            | Response::ServerSideEmit { request_id, .. }
            | Response::BroadcastClientCount { request_id, .. }
            | Response::BroadcastAck { request_id, .. } => request_id,
        }
    }
}

impl RemoteSocket {
    fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "sockets")?;
        Ok(RemoteSocket {
            id: fields.string("id")?,
            handshake: fields.take("handshake").unwrap_or(JsValue::Null),
            rooms: fields.rooms("rooms")?,
            data: fields.take("data").unwrap_or(JsValue::Null),
        })
    }
}

fn decode_payload(payload: &Bytes) -> Result<JsValue> {
    if payload.first() == Some(&b'{') {
        Ok(serde_json::from_slice(payload)?)
    } else {
        decode_msgpack(payload)
    }
}

// JSON shapes. Field order is Node's key order; absent fields are left out.

#[derive(Serialize)]
struct JsonRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    opts: Option<JsonOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [JsValue]>,
}

impl<'a> JsonRequest<'a> {
    fn new(uid: Option<&'a str>, kind: u8) -> Self {
        JsonRequest {
            uid,
            request_id: None,
            kind,
            sid: None,
            room: None,
            opts: None,
            rooms: None,
            close: None,
            data: None,
        }
    }
}

#[derive(Serialize)]
struct JsonOpts<'a> {
    rooms: &'a [String],
    except: &'a [String],
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<u8>,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sockets: Option<JsonSockets<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rooms: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a JsValue>,
    #[serde(rename = "clientCount", skip_serializing_if = "Option::is_none")]
    client_count: Option<u64>,
}

impl<'a> JsonResponse<'a> {
    fn new(kind: Option<RequestType>, request_id: &'a str) -> Self {
        JsonResponse {
            kind: kind.map(RequestType::code),
            request_id,
            sockets: None,
            rooms: None,
            data: None,
            client_count: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonSockets<'a> {
    Ids(&'a [String]),
    Full(&'a [RemoteSocket]),
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value)
        .expect("adapter JSON cannot fail to encode: all map keys are strings, no I/O involved")
}

// ---------------------------------------------------------------------------------------------
// Reading typed fields out of decoded values

/// The entries of a decoded map, taken out one by one so that payloads move instead of copying.
struct Fields(Vec<(String, JsValue)>);

impl Fields {
    fn of(value: JsValue, field: &'static str) -> Result<Self> {
        match value {
            JsValue::Map(entries) => Ok(Fields(entries)),
            _ => Err(wrong_type(field, "a map")),
        }
    }

    /// The last entry `key` (JavaScript keeps the last duplicate); null counts as absent, since
    /// notepack 2.x wrote `undefined` values as nil-like extensions.
    fn take(&mut self, key: &str) -> Option<JsValue> {
        let index = self.0.iter().rposition(|(k, _)| k == key)?;
        match self.0.swap_remove(index).1 {
            JsValue::Null => None,
            value => Some(value),
        }
    }

    fn required(&mut self, key: &'static str) -> Result<JsValue> {
        self.take(key).ok_or(AdapterError::MissingField(key))
    }

    fn string(&mut self, key: &'static str) -> Result<String> {
        into_string(self.required(key)?, key)
    }

    fn opt_string(&mut self, key: &'static str) -> Result<Option<String>> {
        self.take(key).map(|v| into_string(v, key)).transpose()
    }

    fn integer(&mut self, key: &'static str) -> Result<i64> {
        self.opt_integer(key)?
            .ok_or(AdapterError::MissingField(key))
    }

    fn opt_integer(&mut self, key: &'static str) -> Result<Option<i64>> {
        self.take(key)
            .map(|v| as_integer(&v).ok_or_else(|| wrong_type(key, "an integer")))
            .transpose()
    }

    fn opt_uint(&mut self, key: &'static str) -> Result<Option<u64>> {
        self.opt_integer(key)?
            .map(|i| u64::try_from(i).map_err(|_| wrong_type(key, "a non-negative integer")))
            .transpose()
    }

    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(JsValue::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(wrong_type(key, "a boolean")),
        }
    }

    /// A list of room names; absent means none (Node: `new Set(undefined)`).
    fn rooms(&mut self, key: &'static str) -> Result<Vec<String>> {
        Ok(self.rooms_if_present(key)?.unwrap_or_default())
    }

    fn rooms_if_present(&mut self, key: &'static str) -> Result<Option<Vec<String>>> {
        match self.take(key) {
            None => Ok(None),
            Some(JsValue::Array(items)) => items
                .into_iter()
                .map(|room| into_room(room, key))
                .collect::<Result<_>>()
                .map(Some),
            Some(_) => Err(wrong_type(key, "an array of rooms")),
        }
    }
}

fn wrong_type(field: &'static str, expected: &'static str) -> AdapterError {
    AdapterError::WrongType { field, expected }
}

fn non_null(value: Option<JsValue>, field: &'static str) -> Result<JsValue> {
    match value {
        None | Some(JsValue::Null) => Err(AdapterError::MissingField(field)),
        Some(value) => Ok(value),
    }
}

fn into_string(value: JsValue, field: &'static str) -> Result<String> {
    match value {
        JsValue::Str(s) => Ok(s),
        _ => Err(wrong_type(field, "a string")),
    }
}

/// Rooms are strings, but JavaScript lets `io.to(123)` through: take integers as their decimal
/// string, which is how the room would print.
fn into_room(value: JsValue, field: &'static str) -> Result<String> {
    match value {
        JsValue::Str(s) => Ok(s),
        other => as_integer(&other)
            .map(|i| i.to_string())
            .ok_or_else(|| wrong_type(field, "a room (string or integer)")),
    }
}

/// Integral floats count: JavaScript has no separate integer type.
fn as_integer(value: &JsValue) -> Option<i64> {
    match value {
        JsValue::Int(i) => Some(*i),
        JsValue::Float(f) => js_integer(*f),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// msgpack, as notepack.io 3 writes it

#[derive(Default)]
struct MsgpackWriter {
    buf: Vec<u8>,
}

impl MsgpackWriter {
    fn value(&mut self, value: &JsValue) {
        match value {
            JsValue::Null => self.buf.push(0xc0),
            JsValue::Bool(b) => self.bool(*b),
            JsValue::Int(i) => self.int(*i),
            JsValue::Float(f) => self.number(*f),
            JsValue::Str(s) => self.str(s),
            JsValue::Bin(bin) => {
                self.len_header(bin.len(), None, Some(0xc4), 0xc5, 0xc6);
                self.buf.extend_from_slice(bin);
            }
            JsValue::Array(items) => {
                self.array_len(items.len());
                for item in items {
                    self.value(item);
                }
            }
            JsValue::Map(entries) => {
                self.map_len(entries.len());
                for (key, value) in entries {
                    self.str(key);
                    self.value(value);
                }
            }
            JsValue::Date(ms) => self.date(*ms),
        }
    }

    fn bool(&mut self, b: bool) {
        self.buf.push(if b { 0xc3 } else { 0xc2 });
    }

    /// notepack: integral numbers take the smallest int format, everything else is float64.
    fn number(&mut self, f: f64) {
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        if let Some(i) = js_integer(f) {
            self.int(i);
        } else if f.fract() == 0.0 && f > 0.0 && f < TWO_POW_64 {
            self.uint(f as u64);
        } else {
            self.buf.push(0xcb);
            self.buf.extend_from_slice(&f.to_be_bytes());
        }
    }

    fn int(&mut self, i: i64) {
        match u64::try_from(i) {
            Ok(u) => self.uint(u),
            Err(_) => {
                if i >= -32 {
                    self.buf.push(i as u8);
                } else if let Ok(i) = i8::try_from(i) {
                    self.buf.push(0xd0);
                    self.buf.extend_from_slice(&i.to_be_bytes());
                } else if let Ok(i) = i16::try_from(i) {
                    self.buf.push(0xd1);
                    self.buf.extend_from_slice(&i.to_be_bytes());
                } else if let Ok(i) = i32::try_from(i) {
                    self.buf.push(0xd2);
                    self.buf.extend_from_slice(&i.to_be_bytes());
                } else {
                    self.buf.push(0xd3);
                    self.buf.extend_from_slice(&i.to_be_bytes());
                }
            }
        }
    }

    fn uint(&mut self, u: u64) {
        if u < 0x80 {
            self.buf.push(u as u8);
        } else if let Ok(u) = u8::try_from(u) {
            self.buf.extend_from_slice(&[0xcc, u]);
        } else if let Ok(u) = u16::try_from(u) {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&u.to_be_bytes());
        } else if let Ok(u) = u32::try_from(u) {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&u.to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&u.to_be_bytes());
        }
    }

    fn str(&mut self, s: &str) {
        self.len_header(s.len(), Some((0xa0, 32)), Some(0xd9), 0xda, 0xdb);
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn str_array(&mut self, items: &[String]) {
        self.array_len(items.len());
        for item in items {
            self.str(item);
        }
    }

    fn array_len(&mut self, len: usize) {
        self.len_header(len, Some((0x90, 16)), None, 0xdc, 0xdd);
    }

    fn map_len(&mut self, len: usize) {
        self.len_header(len, Some((0x80, 16)), None, 0xde, 0xdf);
    }

    /// Lengths past `u32::MAX` cannot occur: the server's frame limits are far below 4 GiB.
    fn len_header(
        &mut self,
        len: usize,
        fix: Option<(u8, usize)>,
        marker8: Option<u8>,
        marker16: u8,
        marker32: u8,
    ) {
        match (fix, marker8) {
            (Some((base, limit)), _) if len < limit => self.buf.push(base | len as u8),
            (_, Some(marker)) if len <= 0xff => self.buf.extend_from_slice(&[marker, len as u8]),
            _ => match u16::try_from(len) {
                Ok(len) => {
                    self.buf.push(marker16);
                    self.buf.extend_from_slice(&len.to_be_bytes());
                }
                Err(_) => {
                    self.buf.push(marker32);
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    self.buf.extend_from_slice(&len.to_be_bytes());
                }
            },
        }
    }

    /// The msgpack timestamp extension (type -1) in its smallest form, as notepack 3 writes it.
    fn date(&mut self, ms: i64) {
        let secs = ms.div_euclid(1000);
        let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
        if nanos == 0 && (0..=i64::from(u32::MAX)).contains(&secs) {
            self.buf.extend_from_slice(&[0xd6, 0xff]);
            self.buf.extend_from_slice(&(secs as u32).to_be_bytes());
        } else if (0..1 << 34).contains(&secs) {
            self.buf.extend_from_slice(&[0xd7, 0xff]);
            let packed = (u64::from(nanos) << 34) | secs as u64;
            self.buf.extend_from_slice(&packed.to_be_bytes());
        } else {
            self.buf.extend_from_slice(&[0xc7, 12, 0xff]);
            self.buf.extend_from_slice(&nanos.to_be_bytes());
            self.buf.extend_from_slice(&secs.to_be_bytes());
        }
    }
}

/// Decodes one msgpack value that must fill `payload`; binaries are slices of it.
fn decode_msgpack(payload: &Bytes) -> Result<JsValue> {
    let mut reader = MsgpackReader {
        buf: payload,
        pos: 0,
    };
    let value = reader.value(0)?;
    match payload.len() - reader.pos {
        0 => Ok(value),
        trailing => Err(AdapterError::TrailingBytes(trailing)),
    }
}

struct MsgpackReader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl MsgpackReader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn bytes(&mut self, len: usize) -> Result<Bytes> {
        if len > self.remaining() {
            return Err(AdapterError::Truncated);
        }
        let bytes = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).ok_or(AdapterError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(AdapterError::Truncated)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn len16(&mut self) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn len32(&mut self) -> Result<usize> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| AdapterError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<JsValue> {
        let marker = self.u8()?;
        Ok(match marker {
            0x00..=0x7f => JsValue::Int(i64::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.list(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f))?,
            0xc0 => JsValue::Null,
            0xc1 => return Err(AdapterError::InvalidMarker(marker)),
            0xc2 => JsValue::Bool(false),
            0xc3 => JsValue::Bool(true),
            0xc4 => {
                let len = usize::from(self.u8()?);
                JsValue::Bin(self.bytes(len)?)
            }
            0xc5 => {
                let len = self.len16()?;
                JsValue::Bin(self.bytes(len)?)
            }
            0xc6 => {
                let len = self.len32()?;
                JsValue::Bin(self.bytes(len)?)
            }
            0xc7 => {
                let len = usize::from(self.u8()?);
                self.ext(len, false)?
            }
            0xc8 => {
                let len = self.len16()?;
                self.ext(len, false)?
            }
            0xc9 => {
                let len = self.len32()?;
                self.ext(len, false)?
            }
            0xca => JsValue::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => JsValue::Float(f64::from_be_bytes(self.array()?)),
            0xcc => JsValue::Int(i64::from(self.u8()?)),
            0xcd => JsValue::Int(i64::from(u16::from_be_bytes(self.array()?))),
            0xce => JsValue::Int(i64::from(u32::from_be_bytes(self.array()?))),
            0xcf => {
                let u = u64::from_be_bytes(self.array()?);
                i64::try_from(u).map_or(JsValue::Float(u as f64), JsValue::Int)
            }
            0xd0 => JsValue::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => JsValue::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => JsValue::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => JsValue::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1, true)?,
            0xd5 => self.ext(2, true)?,
            0xd6 => self.ext(4, true)?,
            0xd7 => self.ext(8, true)?,
            0xd8 => self.ext(16, true)?,
            0xd9 => {
                let len = usize::from(self.u8()?);
                self.str(len)?
            }
            0xda => {
                let len = self.len16()?;
                self.str(len)?
            }
            0xdb => {
                let len = self.len32()?;
                self.str(len)?
            }
            0xdc => {
                let len = self.len16()?;
                self.list(len, depth)?
            }
            0xdd => {
                let len = self.len32()?;
                self.list(len, depth)?
            }
            0xde => {
                let len = self.len16()?;
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.len32()?;
                self.map(len, depth)?
            }
            0xe0..=0xff => JsValue::Int(i64::from(marker as i8)),
        })
    }

    /// Invalid UTF-8 is replaced, as Node's `Buffer.toString("utf8")` does.
    fn str(&mut self, len: usize) -> Result<JsValue> {
        let bytes = self.bytes(len)?;
        Ok(JsValue::Str(String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn list(&mut self, len: usize, depth: usize) -> Result<JsValue> {
        check_depth(depth)?;
        // Every element takes at least a byte: a hostile length cannot make us over-allocate.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(JsValue::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<JsValue> {
        check_depth(depth)?;
        let mut entries = Vec::with_capacity(len.min(self.remaining() / 2));
        for _ in 0..len {
            // JavaScript object keys are strings; notepack coerces an integer key to one.
            let key = match self.value(depth + 1)? {
                JsValue::Str(key) => key,
                JsValue::Int(key) => key.to_string(),
                _ => return Err(AdapterError::InvalidMapKey),
            };
            entries.push((key, self.value(depth + 1)?));
        }
        Ok(JsValue::Map(entries))
    }

    /// Extensions as notepack 3 decodes them, notepack 2.x encodings included.
    fn ext(&mut self, len: usize, fixed: bool) -> Result<JsValue> {
        let kind = self.u8()? as i8;
        let data = self.bytes(len)?;
        Ok(match (kind, fixed, data.len()) {
            // notepack 2.x `undefined`: fixext1 `d4 00 00`.
            (0, true, 1) => JsValue::Null,
            // notepack 2.x Date: fixext8 type 0, int64 milliseconds.
            (0, true, 8) => date(i128::from(i64::from_be_bytes(array_of(&data)))),
            // notepack 2.x ArrayBuffer: ext 8/16/32 type 0.
            (0, false, _) => JsValue::Bin(data),
            (-1, _, 4) => date(i128::from(u32::from_be_bytes(array_of(&data))) * 1000),
            (-1, _, 8) => {
                let packed = u64::from_be_bytes(array_of(&data));
                let secs = i128::from(packed & ((1 << 34) - 1));
                let nanos = i128::from(packed >> 34);
                date(secs * 1000 + nanos / 1_000_000)
            }
            (-1, _, 12) => {
                let nanos = i128::from(u32::from_be_bytes(array_of(&data[..4])));
                let secs = i128::from(i64::from_be_bytes(array_of(&data[4..])));
                date((secs * 1_000_000_000 + nanos) / 1_000_000)
            }
            // What notepack hands to JavaScript for any other extension.
            _ => JsValue::Array(vec![JsValue::Int(i64::from(kind)), JsValue::Bin(data)]),
        })
    }
}

/// A Date from milliseconds; out of JavaScript's range it is an Invalid Date, which
/// `JSON.stringify` writes as null.
fn date(ms: i128) -> JsValue {
    match i64::try_from(ms) {
        Ok(ms) if (-MAX_DATE_MS..=MAX_DATE_MS).contains(&ms) => JsValue::Date(ms),
        _ => JsValue::Null,
    }
}

/// The first `N` bytes of `data`, which the caller has sized to hold them.
fn array_of<const N: usize>(data: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden vectors: PUBLISH payloads from shared/protocol/captures/monitor-classic.txt
    // (redis-adapter 8.3.0 and redis-emitter 5.1.0, nsp "/" unless noted).

    /// `io.emit("hello", 1, "two", {three: 3})` on `socket.io#/#`.
    const BROADCAST_ALL: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x94\xa5hello\x01\xa3two\x81\xa5three\x03\xa3nsp\xa1/\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80";
    /// `io.to("room1").emit("bin", Buffer.from([1, 2, 3]))` on `socket.io#/#room1#`.
    const BROADCAST_ROOM_BIN: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x92\xa3bin\xc4\x03\x01\x02\x03\xa3nsp\xa1/\x83\xa5rooms\x91\xa5room1\xa6except\x90\xa5flags\x80";
    /// `io.volatile.to(["room1", "room2"]).except("room3").emit("multi", "x")` on `socket.io#/#`.
    const BROADCAST_VOLATILE: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x92\xa5multi\xa1x\xa3nsp\xa1/\x83\xa5rooms\x92\xa5room1\xa5room2\xa6except\x91\xa5room3\xa5flags\x81\xa8volatile\xc3";
    const FETCH_REQUEST: &[u8] =
        br#"{"uid":"b3oKUz","requestId":"yQ97m8","type":5,"opts":{"rooms":["room1"],"except":[]}}"#;
    const FETCH_RESPONSE: &[u8] = br#"{"requestId":"yQ97m8","sockets":[{"id":"sdJSO-722w6C27AaAAAA","handshake":{"headers":{"sec-websocket-version":"13","sec-websocket-key":"UWfyaKrIxCE43s2NKUPQEQ==","connection":"Upgrade","upgrade":"websocket","sec-websocket-extensions":"permessage-deflate; client_max_window_bits","host":"127.0.0.1:3002"},"time":"Wed Nov 25 2026 11:27:04 GMT+0000 (Coordinated Universal Time)","address":"::ffff:127.0.0.1","xdomain":false,"secure":false,"issued":1795606024820,"url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{}},"rooms":["sdJSO-722w6C27AaAAAA","room1"],"data":{}}]}"#;
    const JOIN_REQUEST: &[u8] =
        br#"{"uid":"b3oKUz","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room9"]}"#;
    const SSE_REQUEST: &[u8] = br#"{"uid":"b3oKUz","type":6,"data":["srv","a",1]}"#;
    const SSE_ACK_REQUEST: &[u8] =
        br#"{"uid":"b3oKUz","requestId":"Im5Lvc","type":6,"data":["srv","b"]}"#;
    const SSE_RESPONSE: &[u8] = br#"{"type":6,"requestId":"Im5Lvc","data":"pong-from-s2"}"#;
    /// `io.timeout(1000).to("room1").emit("r-ack", 42, cb)`.
    const BROADCAST_ACK_REQUEST: &[u8] = b"\x85\xa3uid\xa6b3oKUz\xa9requestId\xa6tovZCT\xa4type\x07\xa6packet\x83\xa4type\x02\xa4data\x92\xa5r-ack*\xa3nsp\xa1/\xa4opts\x83\xa5rooms\x91\xa5room1\xa6except\x90\xa5flags\x81\xa7timeout\xcd\x03\xe8";
    const CLIENT_COUNT_RESPONSE: &[u8] = br#"{"type":8,"requestId":"tovZCT","clientCount":1}"#;
    const ACK_RESPONSE: &[u8] = b"\x83\xa4type\x09\xa9requestId\xa6tovZCT\xa6packet\xaaclient-ack";
    const ALL_ROOMS_REQUEST: &[u8] = br#"{"uid":"b3oKUz","requestId":"CsX7GI","type":1}"#;
    const ALL_ROOMS_RESPONSE: &[u8] =
        br#"{"requestId":"CsX7GI","rooms":["sdJSO-722w6C27AaAAAA","room1","room9"]}"#;
    /// Emitter: `to("room1").emit("fromEmitter", "hi", Buffer.from([9]))`; keys rooms,flags,except.
    const EMITTER_BROADCAST_ROOM: &[u8] = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x93\xabfromEmitter\xa2hi\xc4\x01\x09\xa3nsp\xa1/\x83\xa5rooms\x91\xa5room1\xa5flags\x80\xa6except\x90";
    /// Emitter: `of("/admin").emit("adminEvt", 1)` on `socket.io#/admin#`.
    const EMITTER_BROADCAST_ADMIN: &[u8] = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x92\xa8adminEvt\x01\xa3nsp\xa6/admin\x83\xa5rooms\x90\xa5flags\x80\xa6except\x90";
    const EMITTER_SSE: &[u8] = br#"{"uid":"emitter","type":6,"data":["srv","from-emitter"]}"#;
    const EMITTER_LEAVE: &[u8] =
        br#"{"type":3,"opts":{"rooms":["room1"],"except":[]},"rooms":["room9"]}"#;
    const EMITTER_DISCONNECT: &[u8] = br#"{"type":4,"opts":{"rooms":[],"except":[]},"close":true}"#;

    fn payload(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    fn s(text: &str) -> JsValue {
        JsValue::Str(text.to_owned())
    }

    fn bin(bytes: &'static [u8]) -> JsValue {
        JsValue::Bin(Bytes::from_static(bytes))
    }

    fn map(entries: &[(&str, JsValue)]) -> JsValue {
        JsValue::Map(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    fn pack(value: &JsValue) -> Bytes {
        let mut w = MsgpackWriter::default();
        w.value(value);
        Bytes::from(w.buf)
    }

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOpts {
        BroadcastOpts {
            rooms: strings(rooms),
            except: strings(except),
            flags: BroadcastFlags::default(),
        }
    }

    fn event(nsp: &str, data: Vec<JsValue>) -> Packet {
        Packet {
            kind: 2,
            data: JsValue::Array(data),
            nsp: nsp.to_owned(),
        }
    }

    // --- channels

    #[test]
    fn channels_are_named_like_node() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.broadcast(), "socket.io#/#");
        assert_eq!(root.room("room1"), "socket.io#/#room1#");
        assert_eq!(root.request(), "socket.io-request#/#");
        assert_eq!(root.response(), "socket.io-response#/#");
        assert_eq!(
            root.specific_response("b3oKUz"),
            "socket.io-response#/#b3oKUz#"
        );
        assert_eq!(root.pattern(), "socket.io#/#*");
        let admin = Channels::new(DEFAULT_PREFIX, "/admin");
        assert_eq!(admin.broadcast(), "socket.io#/admin#");
        assert_eq!(admin.pattern(), "socket.io#/admin#*");
        let custom = Channels::new("app", "/chat");
        assert_eq!(custom.request(), "app-request#/chat#");
    }

    #[test]
    fn pattern_escapes_glob_characters() {
        let channels = Channels::new("my*key", r"/a?[b]\");
        assert_eq!(channels.pattern(), r"my\*key#/a\?\[b\]\\#*");
        // The channels themselves stay literal.
        assert_eq!(channels.broadcast(), r"my*key#/a?[b]\#");
    }

    #[test]
    fn room_of_follows_node_slice() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.room_of("socket.io#/#"), Some(""));
        assert_eq!(root.room_of("socket.io#/#room1#"), Some("room1"));
        assert_eq!(root.room_of("socket.io#/#a#b#"), Some("a#b"));
        assert_eq!(root.room_of("socket.io#/#salle-é#"), Some("salle-é"));
        assert_eq!(root.room_of("socket.io#/admin#"), None);
        assert_eq!(root.room_of("socket.io-request#/#"), None);
        // Node drops the last character whatever it is.
        assert_eq!(root.room_of("socket.io#/#room1é"), Some("room1"));
    }

    #[test]
    fn publish_channel_targets_a_room_only_for_exactly_one_room() {
        let root = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(root.publish_channel(&[]), "socket.io#/#");
        assert_eq!(
            root.publish_channel(&strings(&["room1"])),
            "socket.io#/#room1#"
        );
        assert_eq!(root.publish_channel(&strings(&["a", "b"])), "socket.io#/#");
        assert_eq!(
            root.publish_channel(&strings(&["a", "a"])),
            "socket.io#/#a#"
        );
    }

    // --- golden broadcasts

    #[test]
    fn golden_broadcast_to_all() {
        let message = BroadcastMessage::decode(&payload(BROADCAST_ALL)).unwrap();
        let expected = BroadcastMessage {
            uid: "b3oKUz".into(),
            packet: event(
                "/",
                vec![
                    s("hello"),
                    JsValue::Int(1),
                    s("two"),
                    map(&[("three", JsValue::Int(3))]),
                ],
            ),
            opts: opts(&[], &[]),
        };
        assert_eq!(message, expected);
        assert_eq!(message.encode(), BROADCAST_ALL);
    }

    #[test]
    fn golden_broadcast_with_binary_to_one_room() {
        let bytes = payload(BROADCAST_ROOM_BIN);
        let message = BroadcastMessage::decode(&bytes).unwrap();
        assert_eq!(message.packet, event("/", vec![s("bin"), bin(&[1, 2, 3])]));
        assert_eq!(message.opts, opts(&["room1"], &[]));
        let channels = Channels::new(DEFAULT_PREFIX, "/");
        assert_eq!(
            channels.publish_channel(&message.opts.rooms),
            "socket.io#/#room1#"
        );
        assert_eq!(message.encode(), BROADCAST_ROOM_BIN);
        // The binary is a slice of the received message, not a copy.
        let JsValue::Array(data) = &message.packet.data else {
            panic!("data is not an array")
        };
        let JsValue::Bin(attachment) = &data[1] else {
            panic!("no binary")
        };
        assert!(bytes.as_ptr_range().contains(&attachment.as_ptr()));
    }

    #[test]
    fn golden_volatile_broadcast_with_except() {
        let message = BroadcastMessage::decode(&payload(BROADCAST_VOLATILE)).unwrap();
        assert_eq!(message.packet, event("/", vec![s("multi"), s("x")]));
        assert_eq!(message.opts.rooms, strings(&["room1", "room2"]));
        assert_eq!(message.opts.except, strings(&["room3"]));
        assert_eq!(
            message.opts.flags,
            BroadcastFlags {
                volatile: true,
                ..BroadcastFlags::default()
            }
        );
        assert_eq!(message.encode(), BROADCAST_VOLATILE);
    }

    #[test]
    fn golden_emitter_broadcasts_decode_and_reencode_in_adapter_order() {
        let room = BroadcastMessage::decode(&payload(EMITTER_BROADCAST_ROOM)).unwrap();
        assert_eq!(room.uid, EMITTER_UID);
        assert_eq!(
            room.packet,
            event("/", vec![s("fromEmitter"), s("hi"), bin(&[9])])
        );
        assert_eq!(room.opts, opts(&["room1"], &[]));

        let admin = BroadcastMessage::decode(&payload(EMITTER_BROADCAST_ADMIN)).unwrap();
        assert_eq!(
            admin.packet,
            event("/admin", vec![s("adminEvt"), JsValue::Int(1)])
        );
        assert_eq!(
            Channels::new(DEFAULT_PREFIX, &admin.packet.nsp).broadcast(),
            "socket.io#/admin#"
        );

        // The emitter writes rooms,flags,except; the adapter (and we) write rooms,except,flags.
        for (message, capture) in [
            (room, EMITTER_BROADCAST_ROOM),
            (admin, EMITTER_BROADCAST_ADMIN),
        ] {
            let emitter_tail: &[u8] = b"\xa5flags\x80\xa6except\x90";
            let adapter_tail: &[u8] = b"\xa6except\x90\xa5flags\x80";
            let mut expected = capture[..capture.len() - emitter_tail.len()].to_vec();
            assert!(capture.ends_with(emitter_tail));
            expected.extend_from_slice(adapter_tail);
            assert_eq!(message.encode(), expected);
        }
    }

    // --- golden requests and responses

    #[test]
    fn golden_json_requests_round_trip() {
        let uid = Some("b3oKUz".to_owned());
        let cases = [
            (
                FETCH_REQUEST,
                Request {
                    uid: uid.clone(),
                    body: RequestBody::RemoteFetch {
                        request_id: "yQ97m8".into(),
                        opts: opts(&["room1"], &[]),
                    },
                },
            ),
            (
                JOIN_REQUEST,
                Request {
                    uid: uid.clone(),
                    body: RequestBody::RemoteJoin {
                        opts: opts(&["room1"], &[]),
                        rooms: strings(&["room9"]),
                    },
                },
            ),
            (
                SSE_REQUEST,
                Request {
                    uid: uid.clone(),
                    body: RequestBody::ServerSideEmit {
                        request_id: None,
                        data: vec![s("srv"), s("a"), JsValue::Int(1)],
                    },
                },
            ),
            (
                SSE_ACK_REQUEST,
                Request {
                    uid: uid.clone(),
                    body: RequestBody::ServerSideEmit {
                        request_id: Some("Im5Lvc".into()),
                        data: vec![s("srv"), s("b")],
                    },
                },
            ),
            (
                ALL_ROOMS_REQUEST,
                Request {
                    uid,
                    body: RequestBody::AllRooms {
                        request_id: "CsX7GI".into(),
                    },
                },
            ),
            (
                EMITTER_SSE,
                Request {
                    uid: Some(EMITTER_UID.into()),
                    body: RequestBody::ServerSideEmit {
                        request_id: None,
                        data: vec![s("srv"), s("from-emitter")],
                    },
                },
            ),
            (
                EMITTER_LEAVE,
                Request {
                    uid: None,
                    body: RequestBody::RemoteLeave {
                        opts: opts(&["room1"], &[]),
                        rooms: strings(&["room9"]),
                    },
                },
            ),
            (
                EMITTER_DISCONNECT,
                Request {
                    uid: None,
                    body: RequestBody::RemoteDisconnect {
                        opts: opts(&[], &[]),
                        close: true,
                    },
                },
            ),
        ];
        for (capture, expected) in cases {
            let text = String::from_utf8_lossy(capture);
            let request = Request::decode(&payload(capture)).unwrap();
            assert_eq!(request, expected, "{text}");
            assert_eq!(request.encode(), capture, "{text}");
        }
    }

    #[test]
    fn golden_broadcast_with_ack_request() {
        let request = Request::decode(&payload(BROADCAST_ACK_REQUEST)).unwrap();
        let expected = Request {
            uid: Some("b3oKUz".into()),
            body: RequestBody::Broadcast {
                request_id: "tovZCT".into(),
                packet: event("/", vec![s("r-ack"), JsValue::Int(42)]),
                opts: BroadcastOpts {
                    flags: BroadcastFlags {
                        timeout: Some(1000),
                        ..BroadcastFlags::default()
                    },
                    ..opts(&["room1"], &[])
                },
            },
        };
        assert_eq!(request, expected);
        assert_eq!(request.request_type(), RequestType::Broadcast);
        assert_eq!(request.request_id(), Some("tovZCT"));
        assert_eq!(request.encode(), BROADCAST_ACK_REQUEST);
    }

    #[test]
    fn golden_fetch_sockets_response() {
        let response = Response::decode(&payload(FETCH_RESPONSE)).unwrap();
        let Response::RemoteFetch {
            request_id,
            sockets,
        } = &response
        else {
            panic!("not a fetch response: {response:?}")
        };
        assert_eq!(request_id, "yQ97m8");
        assert_eq!(sockets.len(), 1);
        let socket = &sockets[0];
        assert_eq!(socket.id, "sdJSO-722w6C27AaAAAA");
        assert_eq!(socket.rooms, strings(&["sdJSO-722w6C27AaAAAA", "room1"]));
        assert_eq!(socket.data, JsValue::Map(vec![]));
        assert_eq!(
            socket.handshake.get("issued"),
            Some(&JsValue::Int(1_795_606_024_820))
        );
        assert_eq!(
            socket.handshake.get("query").and_then(|q| q.get("EIO")),
            Some(&s("4"))
        );
        assert_eq!(socket.handshake.get("xdomain"), Some(&JsValue::Bool(false)));
        assert_eq!(response.encode(), FETCH_RESPONSE);
    }

    #[test]
    fn golden_responses_round_trip() {
        let cases = [
            (
                SSE_RESPONSE,
                Response::ServerSideEmit {
                    request_id: "Im5Lvc".into(),
                    data: s("pong-from-s2"),
                },
            ),
            (
                CLIENT_COUNT_RESPONSE,
                Response::BroadcastClientCount {
                    request_id: "tovZCT".into(),
                    client_count: 1,
                },
            ),
            (
                ACK_RESPONSE,
                Response::BroadcastAck {
                    request_id: "tovZCT".into(),
                    packet: s("client-ack"),
                },
            ),
            (
                ALL_ROOMS_RESPONSE,
                Response::AllRooms {
                    request_id: "CsX7GI".into(),
                    rooms: strings(&["sdJSO-722w6C27AaAAAA", "room1", "room9"]),
                },
            ),
        ];
        for (capture, expected) in cases {
            let response = Response::decode(&payload(capture)).unwrap();
            assert_eq!(response, expected);
            assert_eq!(response.encode(), capture);
        }
    }

    #[test]
    fn legacy_per_socket_requests_and_their_answer() {
        let cases = [
            (
                &br#"{"uid":"old","requestId":"r1","type":2,"sid":"s1","room":"room1"}"#[..],
                RequestBody::LegacyJoin {
                    request_id: "r1".into(),
                    sid: "s1".into(),
                    room: "room1".into(),
                },
            ),
            (
                br#"{"uid":"old","requestId":"r2","type":3,"sid":"s1","room":"room1"}"#,
                RequestBody::LegacyLeave {
                    request_id: "r2".into(),
                    sid: "s1".into(),
                    room: "room1".into(),
                },
            ),
            (
                br#"{"uid":"old","requestId":"r3","type":4,"sid":"s1","close":true}"#,
                RequestBody::LegacyDisconnect {
                    request_id: "r3".into(),
                    sid: "s1".into(),
                    close: true,
                },
            ),
        ];
        for (bytes, body) in cases {
            let request = Request::decode(&Bytes::copy_from_slice(bytes)).unwrap();
            assert_eq!(request.uid.as_deref(), Some("old"));
            assert_eq!(request.body, body);
            assert_eq!(request.encode(), bytes);
        }
        let done = Response::Done {
            request_id: "r1".into(),
        };
        assert_eq!(done.encode(), br#"{"requestId":"r1"}"#);
        assert_eq!(Response::decode(&Bytes::from(done.encode())).unwrap(), done);
    }

    #[test]
    fn sockets_request_and_response() {
        let bytes = br#"{"uid":"old","requestId":"r","type":0,"rooms":["a"]}"#;
        let request = Request::decode(&Bytes::from_static(bytes)).unwrap();
        assert_eq!(
            request.body,
            RequestBody::Sockets {
                request_id: "r".into(),
                rooms: strings(&["a"])
            }
        );
        assert_eq!(request.encode(), bytes);

        let response = Response::Sockets {
            request_id: "r".into(),
            sockets: strings(&["s1", "s2"]),
        };
        assert_eq!(
            response.encode(),
            br#"{"requestId":"r","sockets":["s1","s2"]}"#
        );
        assert_eq!(
            Response::decode(&Bytes::from(response.encode())).unwrap(),
            response
        );
        // An empty list is read as a fetch response, the only kind shardio asks for.
        assert_eq!(
            Response::decode(&payload(br#"{"requestId":"r","sockets":[]}"#)).unwrap(),
            Response::RemoteFetch {
                request_id: "r".into(),
                sockets: vec![]
            }
        );
    }

    #[test]
    fn requests_encode_without_uid_and_with_flags_dropped_like_node() {
        let fetch = Request {
            uid: None,
            body: RequestBody::RemoteFetch {
                request_id: "x".into(),
                opts: BroadcastOpts {
                    flags: BroadcastFlags {
                        local: true,
                        ..BroadcastFlags::default()
                    },
                    ..opts(&["a"], &["b"])
                },
            },
        };
        assert_eq!(
            fetch.encode(),
            br#"{"requestId":"x","type":5,"opts":{"rooms":["a"],"except":["b"]}}"#
        );
        let broadcast = Request {
            uid: None,
            body: RequestBody::Broadcast {
                request_id: "x".into(),
                packet: event("/", vec![s("e")]),
                opts: opts(&[], &[]),
            },
        };
        let decoded = Request::decode(&Bytes::from(broadcast.encode())).unwrap();
        assert_eq!(decoded, broadcast);
    }

    // --- leniency

    #[test]
    fn integer_rooms_become_decimal_strings() {
        let message = JsValue::Array(vec![
            s("node"),
            map(&[
                ("type", JsValue::Int(2)),
                ("data", JsValue::Array(vec![s("e")])),
            ]),
            map(&[
                (
                    "rooms",
                    JsValue::Array(vec![JsValue::Int(123), s("a"), JsValue::Float(7.0)]),
                ),
                ("except", JsValue::Array(vec![JsValue::Int(-5)])),
            ]),
        ]);
        let decoded = BroadcastMessage::decode(&pack(&message)).unwrap();
        assert_eq!(decoded.opts.rooms, strings(&["123", "a", "7"]));
        assert_eq!(decoded.opts.except, strings(&["-5"]));

        let join = br#"{"uid":"n","type":2,"opts":{"rooms":[1],"except":[]},"rooms":[9]}"#;
        let request = Request::decode(&payload(join)).unwrap();
        assert_eq!(
            request.body,
            RequestBody::RemoteJoin {
                opts: opts(&["1"], &[]),
                rooms: strings(&["9"])
            }
        );
    }

    #[test]
    fn broadcasts_decode_leniently() {
        // Keys in another order, no nsp, extra keys, unknown and undefined flags, extra element.
        let message = JsValue::Array(vec![
            s("node"),
            map(&[
                ("data", JsValue::Array(vec![s("e")])),
                ("id", JsValue::Int(4)),
                ("type", JsValue::Int(2)),
            ]),
            map(&[
                (
                    "flags",
                    map(&[
                        ("binary", JsValue::Bool(true)),
                        ("compress", JsValue::Bool(false)),
                        ("volatile", JsValue::Null),
                        ("timeout", JsValue::Float(250.0)),
                    ]),
                ),
                ("except", JsValue::Array(vec![s("x")])),
                ("extra", s("ignored")),
            ]),
            s("extra element"),
        ]);
        let decoded = BroadcastMessage::decode(&pack(&message)).unwrap();
        assert_eq!(decoded.packet, event("/", vec![s("e")]));
        assert_eq!(
            decoded.opts,
            BroadcastOpts {
                rooms: vec![],
                except: strings(&["x"]),
                flags: BroadcastFlags {
                    compress: Some(false),
                    timeout: Some(250),
                    ..BroadcastFlags::default()
                },
            }
        );

        // A nil nsp means "/" too, and a missing opts.flags means no flags.
        let message = JsValue::Array(vec![
            s("node"),
            map(&[("type", JsValue::Int(2)), ("nsp", JsValue::Null)]),
            map(&[]),
        ]);
        let decoded = BroadcastMessage::decode(&pack(&message)).unwrap();
        assert_eq!(decoded.packet.nsp, "/");
        assert_eq!(decoded.packet.data, JsValue::Null);
        assert_eq!(decoded.opts, BroadcastOpts::default());
    }

    #[test]
    fn duplicate_keys_keep_the_last_like_javascript() {
        let bytes = payload(br#"{"uid":"a","uid":"b","requestId":"r","type":1}"#);
        assert_eq!(Request::decode(&bytes).unwrap().uid.as_deref(), Some("b"));
        let value = map(&[("k", JsValue::Int(1)), ("k", JsValue::Int(2))]);
        assert_eq!(value.get("k"), Some(&JsValue::Int(2)));
    }

    #[test]
    fn all_flags_round_trip() {
        let message = BroadcastMessage {
            uid: "n".into(),
            packet: event("/chat", vec![s("e"), JsValue::Float(0.5)]),
            opts: BroadcastOpts {
                flags: BroadcastFlags {
                    volatile: true,
                    compress: Some(false),
                    local: true,
                    timeout: Some(70_000),
                },
                ..opts(&["a", "b"], &["c"])
            },
        };
        let bytes = Bytes::from(message.encode());
        assert!(bytes.ends_with(
            b"\xa5flags\x84\xa8volatile\xc3\xa8compress\xc2\xa5local\xc3\xa7timeout\xce\x00\x01\x11\x70"
        ));
        assert_eq!(BroadcastMessage::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn notepack2_encodings_are_understood() {
        // [undefined, ArrayBuffer [1,2,3], Date 2000-06-13, ext 5 of two bytes]
        let bytes = payload(
            b"\x94\xd4\x00\x00\xc7\x03\x00\x01\x02\x03\xd7\x00\x00\x00\x00\xdf\xb7\x62\x9c\x00\xd5\x05\xaa\xbb",
        );
        assert_eq!(
            decode_msgpack(&bytes).unwrap(),
            JsValue::Array(vec![
                JsValue::Null,
                bin(&[1, 2, 3]),
                JsValue::Date(960_854_400_000),
                JsValue::Array(vec![JsValue::Int(5), bin(&[0xaa, 0xbb])]),
            ])
        );
    }

    #[test]
    fn dates_use_the_timestamp_extension_like_notepack3() {
        // notepack's README: new Date("2000-06-13T00:00:00.000Z") => d6 ff 39 45 79 80
        let june = JsValue::Date(960_854_400_000);
        assert_eq!(&pack(&june)[..], b"\xd6\xff\x39\x45\x79\x80");
        let cases = [
            (960_854_400_000, "2000-06-13T00:00:00.000Z"),
            (1_795_606_024_820, "2026-11-25T11:27:04.820Z"),
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
            (-62_198_755_200_000, "-000001-01-01T00:00:00.000Z"),
        ];
        for (ms, iso) in cases {
            let date = JsValue::Date(ms);
            assert_eq!(decode_msgpack(&pack(&date)).unwrap(), date, "{iso}");
            assert_eq!(
                date.clone().into_placeholder_json().0,
                serde_json::json!(iso)
            );
            assert_eq!(serde_json::to_string(&date).unwrap(), format!("\"{iso}\""));
        }
        // Beyond JavaScript's Date range: an Invalid Date, which JSON writes as null.
        let invalid = JsValue::Date(MAX_DATE_MS + 1);
        assert_eq!(
            invalid.clone().into_placeholder_json().0,
            serde_json::Value::Null
        );
        assert_eq!(serde_json::to_string(&invalid).unwrap(), "null");
        let far = payload(b"\xc7\x0c\xff\x00\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(decode_msgpack(&far).unwrap(), JsValue::Null);
    }

    #[test]
    fn invalid_utf8_is_replaced_like_node() {
        let bytes = payload(b"\xa3a\xffb");
        assert_eq!(decode_msgpack(&bytes).unwrap(), s("a\u{fffd}b"));
    }

    // --- msgpack formats

    #[test]
    fn numbers_take_notepack_formats() {
        let cases: &[(JsValue, &[u8])] = &[
            (JsValue::Int(0), b"\x00"),
            (JsValue::Int(127), b"\x7f"),
            (JsValue::Int(128), b"\xcc\x80"),
            (JsValue::Int(255), b"\xcc\xff"),
            (JsValue::Int(256), b"\xcd\x01\x00"),
            (JsValue::Int(65_535), b"\xcd\xff\xff"),
            (JsValue::Int(65_536), b"\xce\x00\x01\x00\x00"),
            (JsValue::Int(4_294_967_295), b"\xce\xff\xff\xff\xff"),
            (
                JsValue::Int(4_294_967_296),
                b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
            ),
            (JsValue::Int(-1), b"\xff"),
            (JsValue::Int(-32), b"\xe0"),
            (JsValue::Int(-33), b"\xd0\xdf"),
            (JsValue::Int(-128), b"\xd0\x80"),
            (JsValue::Int(-129), b"\xd1\xff\x7f"),
            (JsValue::Int(-32_768), b"\xd1\x80\x00"),
            (JsValue::Int(-32_769), b"\xd2\xff\xff\x7f\xff"),
            (JsValue::Int(-2_147_483_648), b"\xd2\x80\x00\x00\x00"),
            (
                JsValue::Int(-2_147_483_649),
                b"\xd3\xff\xff\xff\xff\x7f\xff\xff\xff",
            ),
            // JavaScript has only doubles: integral ones are written as integers.
            (JsValue::Float(3.0), b"\x03"),
            (JsValue::Float(-0.0), b"\x00"),
            (JsValue::Float(-300.0), b"\xd1\xfe\xd4"),
            (
                JsValue::Float(1.8446744073709552e19 / 2.0),
                b"\xcf\x80\x00\x00\x00\x00\x00\x00\x00",
            ),
            (JsValue::Float(1.5), b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"),
            (
                JsValue::Float(f64::INFINITY),
                b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00",
            ),
            (
                JsValue::Float(1e30),
                b"\xcb\x46\x29\x3e\x59\x39\xa0\x8c\xea",
            ),
        ];
        for (value, bytes) in cases {
            assert_eq!(&pack(value)[..], *bytes, "{value:?}");
        }
        // float32 and uint64 past i64 decode to doubles, as in JavaScript.
        assert_eq!(
            decode_msgpack(&payload(b"\xca\x3f\xc0\x00\x00")).unwrap(),
            JsValue::Float(1.5)
        );
        assert_eq!(
            decode_msgpack(&payload(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff")).unwrap(),
            JsValue::Float(18_446_744_073_709_551_615.0)
        );
    }

    #[test]
    fn lengths_switch_formats_at_notepack_boundaries() {
        let header = |value: &JsValue, len: usize| pack(value)[..len].to_vec();
        let text = |n: usize| JsValue::Str("x".repeat(n));
        assert_eq!(header(&text(31), 1), [0xbf]);
        assert_eq!(header(&text(32), 2), [0xd9, 32]);
        assert_eq!(header(&text(255), 2), [0xd9, 0xff]);
        assert_eq!(header(&text(256), 3), [0xda, 0x01, 0x00]);
        assert_eq!(header(&text(65_536), 5), [0xdb, 0, 1, 0, 0]);
        let blob = |n: usize| JsValue::Bin(Bytes::from(vec![7; n]));
        assert_eq!(header(&blob(0), 2), [0xc4, 0]);
        assert_eq!(header(&blob(255), 2), [0xc4, 0xff]);
        assert_eq!(header(&blob(256), 3), [0xc5, 0x01, 0x00]);
        assert_eq!(header(&blob(65_536), 5), [0xc6, 0, 1, 0, 0]);
        let list = |n: usize| JsValue::Array(vec![JsValue::Null; n]);
        assert_eq!(header(&list(15), 1), [0x9f]);
        assert_eq!(header(&list(16), 3), [0xdc, 0, 16]);
        assert_eq!(header(&list(65_536), 5), [0xdd, 0, 1, 0, 0]);
        let object =
            |n: usize| JsValue::Map((0..n).map(|i| (i.to_string(), JsValue::Null)).collect());
        assert_eq!(header(&object(15), 1), [0x8f]);
        assert_eq!(header(&object(16), 3), [0xde, 0, 16]);
        assert_eq!(header(&object(65_536), 5), [0xdf, 0, 1, 0, 0]);
        for value in [text(65_536), blob(65_536), list(65_536), object(65_536)] {
            assert_eq!(decode_msgpack(&pack(&value)).unwrap(), value);
        }
    }

    fn to_rmpv(value: &JsValue) -> rmpv::Value {
        match value {
            JsValue::Null => rmpv::Value::Nil,
            JsValue::Bool(b) => rmpv::Value::Boolean(*b),
            JsValue::Int(i) => rmpv::Value::from(*i),
            JsValue::Float(f) => rmpv::Value::F64(*f),
            JsValue::Str(text) => rmpv::Value::from(text.as_str()),
            JsValue::Bin(bytes) => rmpv::Value::Binary(bytes.to_vec()),
            JsValue::Array(items) => rmpv::Value::Array(items.iter().map(to_rmpv).collect()),
            JsValue::Map(entries) => rmpv::Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_rmpv(v)))
                    .collect(),
            ),
            JsValue::Date(_) => unreachable!("no dates in the cross-check"),
        }
    }

    #[test]
    fn codec_agrees_with_rmpv() {
        let mut values = vec![
            JsValue::Null,
            JsValue::Bool(true),
            JsValue::Bool(false),
            JsValue::Float(-2.25),
            JsValue::Float(f64::MAX),
            JsValue::Int(i64::MIN),
            JsValue::Int(i64::MAX),
            s(""),
            s("héllo ✓ 🎉"),
            JsValue::Str("y".repeat(70_000)),
            JsValue::Bin(Bytes::from(vec![1; 300])),
            map(&[(
                "a",
                JsValue::Array(vec![bin(&[1]), map(&[("b", bin(&[2]))])]),
            )]),
        ];
        for boundary in [
            0i64,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            4_294_967_295,
            4_294_967_296,
        ] {
            values.push(JsValue::Int(boundary));
            values.push(JsValue::Int(-boundary - 1));
        }
        for len in [0, 31, 32, 255, 256, 65_535, 65_536] {
            values.push(JsValue::Str("z".repeat(len)));
            values.push(JsValue::Bin(Bytes::from(vec![3; len])));
        }
        for len in [15, 16, 65_536] {
            values.push(JsValue::Array(vec![JsValue::Bool(true); len]));
        }
        for value in &values {
            let ours = pack(value);
            let mut theirs = Vec::new();
            rmpv::encode::write_value(&mut theirs, &to_rmpv(value)).unwrap();
            assert_eq!(&ours[..], &theirs[..], "encoding of {value:?}");
            let read_back = rmpv::decode::read_value(&mut &ours[..]).unwrap();
            assert_eq!(read_back, to_rmpv(value));
            assert_eq!(&decode_msgpack(&Bytes::from(theirs)).unwrap(), value);
        }
    }

    // --- placeholder form

    #[test]
    fn placeholder_conversion_both_ways() {
        let data = JsValue::Array(vec![
            s("ev"),
            map(&[
                ("a", bin(b"first")),
                ("b", JsValue::Array(vec![JsValue::Int(1), bin(b"second")])),
                ("c", map(&[("deep", bin(b"third"))])),
            ]),
            bin(b"fourth"),
        ]);
        let (json, attachments) = data.clone().into_placeholder_json();
        assert_eq!(
            json,
            serde_json::json!([
                "ev",
                {
                    "a": {"_placeholder": true, "num": 0},
                    "b": [1, {"_placeholder": true, "num": 1}],
                    "c": {"deep": {"_placeholder": true, "num": 2}},
                },
                {"_placeholder": true, "num": 3},
            ])
        );
        assert_eq!(attachments, [&b"first"[..], b"second", b"third", b"fourth"]);
        assert_eq!(
            JsValue::from_placeholder_json(&json, &attachments).unwrap(),
            data
        );
    }

    #[test]
    fn placeholder_json_follows_json_stringify() {
        let data = JsValue::Array(vec![
            JsValue::Float(3.0),
            JsValue::Float(0.25),
            JsValue::Float(f64::NAN),
            JsValue::Date(0),
            JsValue::Null,
        ]);
        let (json, attachments) = data.into_placeholder_json();
        assert_eq!(
            json.to_string(),
            r#"[3,0.25,null,"1970-01-01T00:00:00.000Z",null]"#
        );
        assert!(attachments.is_empty());
        // Without attachments in play, JSON numbers come back as integers where they can.
        let back = JsValue::from_placeholder_json(&serde_json::json!([1, 2.5, u64::MAX]), &[]);
        assert_eq!(
            back.unwrap(),
            JsValue::Array(vec![
                JsValue::Int(1),
                JsValue::Float(2.5),
                JsValue::Float(18_446_744_073_709_551_615.0)
            ])
        );
    }

    #[test]
    fn bad_placeholders_are_illegal_attachments() {
        let attachments = [Bytes::from_static(b"only")];
        for json in [
            serde_json::json!({"_placeholder": true, "num": 1}),
            serde_json::json!({"_placeholder": true, "num": -1}),
            serde_json::json!({"_placeholder": true, "num": 0.5}),
            serde_json::json!({"_placeholder": true, "num": "0"}),
            serde_json::json!(["x", {"_placeholder": true}]),
        ] {
            assert!(
                matches!(
                    JsValue::from_placeholder_json(&json, &attachments),
                    Err(AdapterError::IllegalAttachment)
                ),
                "{json}"
            );
        }
        // Only `_placeholder: true` marks a placeholder.
        let plain = serde_json::json!({"_placeholder": false, "num": 7});
        assert_eq!(
            JsValue::from_placeholder_json(&plain, &attachments).unwrap(),
            map(&[
                ("_placeholder", JsValue::Bool(false)),
                ("num", JsValue::Int(7))
            ])
        );
    }

    #[test]
    fn json_messages_write_binary_like_buffer_to_json() {
        let response = Response::ServerSideEmit {
            request_id: "r".into(),
            data: map(&[("buf", bin(&[1, 2])), ("n", JsValue::Float(1.5))]),
        };
        assert_eq!(
            response.encode(),
            br#"{"type":6,"requestId":"r","data":{"buf":{"type":"Buffer","data":[1,2]},"n":1.5}}"#
        );
        let ack = Response::BroadcastAck {
            request_id: "r".into(),
            packet: JsValue::Array(vec![bin(&[5])]),
        };
        let bytes = Bytes::from(ack.encode());
        assert_eq!(Response::decode(&bytes).unwrap(), ack);
    }

    // --- malformed input

    #[test]
    fn every_truncation_of_a_golden_message_is_an_error() {
        for capture in [
            BROADCAST_ALL,
            BROADCAST_ROOM_BIN,
            BROADCAST_VOLATILE,
            EMITTER_BROADCAST_ROOM,
            EMITTER_BROADCAST_ADMIN,
        ] {
            for len in 0..capture.len() {
                let cut = Bytes::copy_from_slice(&capture[..len]);
                assert!(BroadcastMessage::decode(&cut).is_err(), "{len} bytes");
            }
        }
        for capture in [
            BROADCAST_ACK_REQUEST,
            FETCH_REQUEST,
            JOIN_REQUEST,
            EMITTER_DISCONNECT,
        ] {
            for len in 0..capture.len() {
                let cut = Bytes::copy_from_slice(&capture[..len]);
                assert!(Request::decode(&cut).is_err(), "{len} bytes");
            }
        }
        for capture in [ACK_RESPONSE, FETCH_RESPONSE, CLIENT_COUNT_RESPONSE] {
            for len in 0..capture.len() {
                let cut = Bytes::copy_from_slice(&capture[..len]);
                assert!(Response::decode(&cut).is_err(), "{len} bytes");
            }
        }
    }

    fn broadcast_error(message: JsValue) -> AdapterError {
        BroadcastMessage::decode(&pack(&message)).unwrap_err()
    }

    #[test]
    fn wrong_types_are_errors() {
        let packet = || map(&[("type", JsValue::Int(2))]);
        let good_opts = || map(&[]);
        assert!(matches!(
            broadcast_error(map(&[])),
            AdapterError::WrongType {
                field: "message",
                ..
            }
        ));
        assert!(matches!(
            broadcast_error(JsValue::Array(vec![JsValue::Int(1), packet(), good_opts()])),
            AdapterError::WrongType { field: "uid", .. }
        ));
        assert!(matches!(
            broadcast_error(JsValue::Array(vec![s("u"), JsValue::Null, good_opts()])),
            AdapterError::MissingField("packet")
        ));
        assert!(matches!(
            broadcast_error(JsValue::Array(vec![s("u"), packet()])),
            AdapterError::MissingField("opts")
        ));
        assert!(matches!(
            broadcast_error(JsValue::Array(vec![s("u"), s("packet"), good_opts()])),
            AdapterError::WrongType {
                field: "packet",
                ..
            }
        ));
        for kind in [s("2"), JsValue::Int(300), JsValue::Float(2.5)] {
            let packet = map(&[("type", kind)]);
            assert!(matches!(
                broadcast_error(JsValue::Array(vec![s("u"), packet, good_opts()])),
                AdapterError::WrongType { field: "type", .. }
            ));
        }
        for bad_opts in [
            map(&[("rooms", s("room1"))]),
            map(&[("except", JsValue::Array(vec![JsValue::Bool(true)]))]),
            map(&[("rooms", JsValue::Array(vec![JsValue::Float(1.5)]))]),
            map(&[("flags", map(&[("volatile", s("yes"))]))]),
            map(&[("flags", map(&[("timeout", JsValue::Int(-1))]))]),
            map(&[("flags", JsValue::Array(vec![]))]),
        ] {
            let error = broadcast_error(JsValue::Array(vec![s("u"), packet(), bad_opts]));
            assert!(matches!(error, AdapterError::WrongType { .. }), "{error}");
        }

        let request_error = |json: &'static [u8]| Request::decode(&payload(json)).unwrap_err();
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r","type":"5"}"#),
            AdapterError::WrongType { field: "type", .. }
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r"}"#),
            AdapterError::MissingField("type")
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r","type":8,"clientCount":1}"#),
            AdapterError::UnexpectedType(8)
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r","type":42}"#),
            AdapterError::UnexpectedType(42)
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","type":6,"data":"srv"}"#),
            AdapterError::WrongType { field: "data", .. }
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r","type":5}"#),
            AdapterError::MissingField("opts")
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","requestId":"r","type":2,"room":"a"}"#),
            AdapterError::MissingField("sid")
        ));
        assert!(matches!(
            request_error(br#"{"uid":"u","type":4,"close":true}"#),
            AdapterError::MissingField("requestId")
        ));
        // Not `{`, so msgpack: `[` is the integer 0x5b followed by junk, as Node would see it.
        assert!(matches!(
            request_error(br#"["not", "a", "map"]"#),
            AdapterError::TrailingBytes(_)
        ));
        assert!(matches!(
            Request::decode(&pack(&JsValue::Array(vec![]))).unwrap_err(),
            AdapterError::WrongType {
                field: "request",
                ..
            }
        ));
        assert!(matches!(
            request_error(br#"{"uid":"#),
            AdapterError::Json(_)
        ));

        let response_error = |json: &'static [u8]| Response::decode(&payload(json)).unwrap_err();
        assert!(matches!(
            response_error(br#"{"rooms":[]}"#),
            AdapterError::MissingField("requestId")
        ));
        assert!(matches!(
            response_error(br#"{"type":8,"requestId":"r","clientCount":-1}"#),
            AdapterError::WrongType {
                field: "clientCount",
                ..
            }
        ));
        assert!(matches!(
            response_error(br#"{"type":8,"requestId":"r"}"#),
            AdapterError::MissingField("clientCount")
        ));
        assert!(matches!(
            response_error(br#"{"requestId":"r","sockets":[{"rooms":[]}]}"#),
            AdapterError::MissingField("id")
        ));
        assert!(matches!(
            response_error(br#"{"requestId":"r","sockets":["a",{"id":"b"}]}"#),
            AdapterError::WrongType {
                field: "sockets",
                ..
            }
        ));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let nested = |depth: usize| {
            let mut bytes = vec![0x91; depth];
            bytes.push(0xc0);
            Bytes::from(bytes)
        };
        assert!(decode_msgpack(&nested(MAX_DEPTH)).is_ok());
        assert!(matches!(
            decode_msgpack(&nested(MAX_DEPTH + 1)),
            Err(AdapterError::TooDeep)
        ));
        assert!(matches!(
            decode_msgpack(&nested(100_000)),
            Err(AdapterError::TooDeep)
        ));
        let mut deep_map = [0x81, 0xa1, b'k'].repeat(MAX_DEPTH + 1);
        deep_map.push(0xc0);
        assert!(matches!(
            decode_msgpack(&Bytes::from(deep_map)),
            Err(AdapterError::TooDeep)
        ));

        // JSON requests: serde_json's own limit or ours, but never a stack overflow.
        for depth in [MAX_DEPTH, 100_000] {
            let json = format!(
                r#"{{"uid":"u","type":6,"data":{}0{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert!(Request::decode(&Bytes::from(json)).is_err());
        }

        let mut json = serde_json::json!(0);
        for _ in 0..=MAX_DEPTH {
            json = serde_json::json!([json]);
        }
        assert!(matches!(
            JsValue::from_placeholder_json(&json, &[]),
            Err(AdapterError::TooDeep)
        ));
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        for bytes in [
            &b"\xdd\xff\xff\xff\xff"[..],
            b"\xdf\xff\xff\xff\xff",
            b"\xc6\xff\xff\xff\xff",
            b"\xdb\xff\xff\xff\xff",
            b"\xc9\xff\xff\xff\xff\x00",
            b"\xdc\xff\xff\xc0",
        ] {
            assert!(matches!(
                decode_msgpack(&payload(bytes)),
                Err(AdapterError::Truncated)
            ));
        }
    }

    #[test]
    fn trailing_bytes_invalid_markers_and_keys_are_errors() {
        let mut long = BROADCAST_ALL.to_vec();
        long.push(0);
        assert!(matches!(
            BroadcastMessage::decode(&Bytes::from(long)),
            Err(AdapterError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_msgpack(&payload(b"\x91\xc1")),
            Err(AdapterError::InvalidMarker(0xc1))
        ));
        assert!(matches!(
            decode_msgpack(&payload(b"\x81\x90\xc0")),
            Err(AdapterError::InvalidMapKey)
        ));
        // An integer key becomes its string, as in a JavaScript object.
        assert_eq!(
            decode_msgpack(&payload(b"\x81\x07\xc3")).unwrap(),
            map(&[("7", JsValue::Bool(true))])
        );
        assert!(matches!(
            Request::decode(&payload(b"")),
            Err(AdapterError::Truncated)
        ));
    }

    #[test]
    fn request_types_map_to_node_codes() {
        for code in 0..=9 {
            let kind = RequestType::from_code(code).unwrap();
            assert_eq!(i64::from(kind.code()), code);
        }
        assert_eq!(RequestType::from_code(10), None);
        assert_eq!(RequestType::from_code(-1), None);
    }

    #[test]
    fn js_date_strings_match_node_in_utc() {
        // The capture's handshake.time for issued 1795606024820.
        assert_eq!(
            js_date_string(1_795_606_024_820).as_deref(),
            Some("Wed Nov 25 2026 11:27:04 GMT+0000 (Coordinated Universal Time)")
        );
        assert_eq!(
            js_date_string(0).as_deref(),
            Some("Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)")
        );
        assert_eq!(js_date_string(MAX_DATE_MS + 1), None);
    }
}
