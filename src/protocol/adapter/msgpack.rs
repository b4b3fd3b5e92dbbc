//! msgpack as notepack.io writes and reads it, over the `rmp` crate.
//!
//! `rmp` writes and reads the markers and lengths; what is notepack's lives here: which format a
//! JavaScript value takes (integral numbers as the smallest int, other numbers as float64, Date
//! as the timestamp extension -1), how extensions read back (notepack 2.x's `undefined`, Date and
//! ArrayBuffer included), and what JavaScript gets for each format. The reader also hands
//! binaries out as zero-copy [`Bytes`] slices of the received message, bounds nesting by
//! [`MAX_DEPTH`](super::MAX_DEPTH) and sizes nothing by a length before the bytes are there.
//! Tests cross-check it against `rmpv`.

use bytes::Bytes;
use rmp::decode::bytes::BytesReadError;
use rmp::decode::{self as read, ValueReadError};
use rmp::encode::{self as write, ByteBuf};
use rmp::Marker;

use super::date::time_clip;
use super::value::js_integer;
use super::{check_depth, AdapterError, JsValue, Result};

/// A msgpack message being written, as notepack.io 3 writes it.
///
/// Writing into rmp's [`ByteBuf`] cannot fail (its error type is `Infallible`), which is why every
/// `let Ok(_) = write::...` below is irrefutable.
#[derive(Default)]
pub(super) struct MsgpackWriter {
    buf: ByteBuf,
}

impl MsgpackWriter {
    pub(super) fn into_vec(self) -> Vec<u8> {
        self.buf.into_vec()
    }

    pub(super) fn value(&mut self, value: &JsValue) {
        match value {
            JsValue::Null => {
                let Ok(()) = write::write_nil(&mut self.buf);
            }
            JsValue::Bool(b) => self.bool(*b),
            JsValue::Int(i) => self.int(*i),
            JsValue::Float(f) => self.number(*f),
            JsValue::Str(s) => self.str(s),
            JsValue::Bin(bin) => {
                let Ok(_) = write::write_bin_len(&mut self.buf, len32(bin.len()));
                self.buf.as_mut_vec().extend_from_slice(bin);
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

    pub(super) fn bool(&mut self, b: bool) {
        let Ok(()) = write::write_bool(&mut self.buf, b);
    }

    /// notepack: integral numbers take the smallest int format, everything else is float64.
    fn number(&mut self, f: f64) {
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        if let Some(i) = js_integer(f) {
            self.int(i);
        } else if f.fract() == 0.0 && f > 0.0 && f < TWO_POW_64 {
            self.uint(f as u64);
        } else {
            let Ok(()) = write::write_f64(&mut self.buf, f);
        }
    }

    pub(super) fn int(&mut self, i: i64) {
        let buf = &mut self.buf;
        match u64::try_from(i) {
            Ok(u) => self.uint(u),
            Err(_) if i >= -32 => {
                let Ok(()) = write::write_nfix(buf, i as i8);
            }
            Err(_) => {
                let Ok(()) = if let Ok(i) = i8::try_from(i) {
                    write::write_i8(buf, i)
                } else if let Ok(i) = i16::try_from(i) {
                    write::write_i16(buf, i)
                } else if let Ok(i) = i32::try_from(i) {
                    write::write_i32(buf, i)
                } else {
                    write::write_i64(buf, i)
                };
            }
        }
    }

    pub(super) fn uint(&mut self, u: u64) {
        let buf = &mut self.buf;
        if u < 0x80 {
            let Ok(()) = write::write_pfix(buf, u as u8);
        } else {
            let Ok(()) = if let Ok(u) = u8::try_from(u) {
                write::write_u8(buf, u)
            } else if let Ok(u) = u16::try_from(u) {
                write::write_u16(buf, u)
            } else if let Ok(u) = u32::try_from(u) {
                write::write_u32(buf, u)
            } else {
                write::write_u64(buf, u)
            };
        }
    }

    pub(super) fn str(&mut self, s: &str) {
        let Ok(_) = write::write_str_len(&mut self.buf, len32(s.len()));
        self.buf.as_mut_vec().extend_from_slice(s.as_bytes());
    }

    pub(super) fn str_array(&mut self, items: &[String]) {
        self.array_len(items.len());
        for item in items {
            self.str(item);
        }
    }

    pub(super) fn array_len(&mut self, len: usize) {
        let Ok(_) = write::write_array_len(&mut self.buf, len32(len));
    }

    pub(super) fn map_len(&mut self, len: usize) {
        let Ok(_) = write::write_map_len(&mut self.buf, len32(len));
    }

    /// The msgpack timestamp extension (type -1) in its smallest form, as notepack 3 writes it.
    /// rmp writes the extension header; the payload is the timestamp's own layout.
    fn date(&mut self, ms: i64) {
        let secs = ms.div_euclid(1000);
        let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
        let mut data = [0; 12];
        let len = if nanos == 0 && (0..=i64::from(u32::MAX)).contains(&secs) {
            data[..4].copy_from_slice(&(secs as u32).to_be_bytes());
            4
        } else if (0..1 << 34).contains(&secs) {
            let packed = (u64::from(nanos) << 34) | secs as u64;
            data[..8].copy_from_slice(&packed.to_be_bytes());
            8
        } else {
            data[..4].copy_from_slice(&nanos.to_be_bytes());
            data[4..].copy_from_slice(&secs.to_be_bytes());
            12
        };
        let Ok(_) = write::write_ext_meta(&mut self.buf, len as u32, -1);
        self.buf.as_mut_vec().extend_from_slice(&data[..len]);
    }
}

/// Lengths past `u32::MAX` cannot occur: the server's frame limits are far below 4 GiB.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Decodes one msgpack value that must fill `payload`; binaries are slices of it.
pub(super) fn decode_msgpack(payload: &Bytes) -> Result<JsValue> {
    let mut reader = MsgpackReader {
        payload,
        rd: read::Bytes::new(payload),
    };
    let value = reader.value(0)?;
    match reader.remaining() {
        0 => Ok(value),
        trailing => Err(AdapterError::TrailingBytes(trailing)),
    }
}

struct MsgpackReader<'a> {
    /// The whole message, which binaries are sliced from.
    payload: &'a Bytes,
    /// rmp's cursor over what is left of it.
    rd: read::Bytes<'a>,
}

type ReadResult<T> = std::result::Result<T, ValueReadError<BytesReadError>>;

/// rmp's errors: running out of input is [`AdapterError::Truncated`]; a type mismatch cannot
/// happen, since each reader is chosen by the peeked marker.
fn read_error(error: ValueReadError<BytesReadError>) -> AdapterError {
    match error {
        ValueReadError::InvalidMarkerRead(_) | ValueReadError::InvalidDataRead(_) => {
            AdapterError::Truncated
        }
        ValueReadError::TypeMismatch(marker) => AdapterError::InvalidMarker(marker.to_u8()),
    }
}

impl<'a> MsgpackReader<'a> {
    fn remaining(&self) -> usize {
        self.rd.remaining_slice().len()
    }

    /// The next `len` bytes, checked to be there before anything is sized by `len`.
    fn take(&mut self, len: u32) -> Result<&'a [u8]> {
        let rest = self.rd.remaining_slice();
        let len = usize::try_from(len).map_err(|_| AdapterError::Truncated)?;
        if len > rest.len() {
            return Err(AdapterError::Truncated);
        }
        let (taken, rest) = rest.split_at(len);
        self.rd = read::Bytes::new(rest);
        Ok(taken)
    }

    /// The next `len` bytes as a zero-copy slice of the message.
    fn bytes(&mut self, len: u32) -> Result<Bytes> {
        let start = self.payload.len() - self.remaining();
        let taken = self.take(len)?;
        Ok(self.payload.slice(start..start + taken.len()))
    }

    fn value(&mut self, depth: usize) -> Result<JsValue> {
        // Peek the marker on a copy of the cursor, then let rmp's reader for that format read it.
        let mut peek = self.rd;
        let marker = read::read_marker(&mut peek).map_err(|_| AdapterError::Truncated)?;
        Ok(match marker {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let len = read::read_str_len(&mut self.rd).map_err(read_error)?;
                // Invalid UTF-8 is replaced, as Node's `Buffer.toString("utf8")` does.
                JsValue::Str(String::from_utf8_lossy(self.take(len)?).into_owned())
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let len = read::read_bin_len(&mut self.rd).map_err(read_error)?;
                JsValue::Bin(self.bytes(len)?)
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let len = read::read_array_len(&mut self.rd).map_err(read_error)?;
                self.list(len, depth)?
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let len = read::read_map_len(&mut self.rd).map_err(read_error)?;
                self.map(len, depth)?
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                let meta = read::read_ext_meta(&mut self.rd).map_err(read_error)?;
                let fixed = !matches!(marker, Marker::Ext8 | Marker::Ext16 | Marker::Ext32);
                ext(meta.typeid, fixed, self.bytes(meta.size)?)
            }
            Marker::Reserved => return Err(AdapterError::InvalidMarker(marker.to_u8())),
            _ => scalar(&mut self.rd, marker).map_err(read_error)?,
        })
    }

    fn list(&mut self, len: u32, depth: usize) -> Result<JsValue> {
        check_depth(depth)?;
        // Every element takes at least a byte: a hostile length cannot make us over-allocate.
        let mut items = Vec::with_capacity((len as usize).min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(JsValue::Array(items))
    }

    fn map(&mut self, len: u32, depth: usize) -> Result<JsValue> {
        check_depth(depth)?;
        let mut entries = Vec::with_capacity((len as usize).min(self.remaining() / 2));
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
}

/// A nil, boolean or number, as JavaScript gets it: integers that fit in `i64` stay integers.
fn scalar(rd: &mut read::Bytes<'_>, marker: Marker) -> ReadResult<JsValue> {
    Ok(match marker {
        Marker::Null => {
            read::read_nil(rd)?;
            JsValue::Null
        }
        Marker::True | Marker::False => JsValue::Bool(read::read_bool(rd)?),
        Marker::FixPos(_) => JsValue::Int(read::read_pfix(rd)?.into()),
        Marker::FixNeg(_) => JsValue::Int(read::read_nfix(rd)?.into()),
        Marker::U8 => JsValue::Int(read::read_u8(rd)?.into()),
        Marker::U16 => JsValue::Int(read::read_u16(rd)?.into()),
        Marker::U32 => JsValue::Int(read::read_u32(rd)?.into()),
        Marker::U64 => {
            let u = read::read_u64(rd)?;
            i64::try_from(u).map_or(JsValue::Float(u as f64), JsValue::Int)
        }
        Marker::I8 => JsValue::Int(read::read_i8(rd)?.into()),
        Marker::I16 => JsValue::Int(read::read_i16(rd)?.into()),
        Marker::I32 => JsValue::Int(read::read_i32(rd)?.into()),
        Marker::I64 => JsValue::Int(read::read_i64(rd)?),
        Marker::F32 => JsValue::Float(read::read_f32(rd)?.into()),
        Marker::F64 => JsValue::Float(read::read_f64(rd)?),
        other => return Err(ValueReadError::TypeMismatch(other)),
    })
}

/// An extension as notepack 3 decodes it, notepack 2.x encodings included. rmp has no reader for
/// the timestamp extension's payload, hence the byte layout here.
fn ext(kind: i8, fixed: bool, data: Bytes) -> JsValue {
    match (kind, fixed, data.len()) {
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
    }
}

/// A Date from milliseconds; out of JavaScript's range it is an Invalid Date, which
/// `JSON.stringify` writes as null.
fn date(ms: i128) -> JsValue {
    time_clip(ms).map_or(JsValue::Null, JsValue::Date)
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
    use crate::protocol::adapter::date::MAX_DATE_MS;
    use crate::protocol::adapter::testdata::*;
    use crate::protocol::adapter::{BroadcastMessage, Request, MAX_DEPTH};

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
        for (ms, iso) in DATE_CASES {
            let date = JsValue::Date(*ms);
            assert_eq!(decode_msgpack(&pack(&date)).unwrap(), date, "{iso}");
        }
        // Beyond JavaScript's Date range: an Invalid Date, which JSON writes as null.
        let far = payload(b"\xc7\x0c\xff\x00\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff");
        assert_eq!(decode_msgpack(&far).unwrap(), JsValue::Null);
        let invalid = JsValue::Date(MAX_DATE_MS + 1);
        assert_eq!(decode_msgpack(&pack(&invalid)).unwrap(), JsValue::Null);
    }

    #[test]
    fn invalid_utf8_is_replaced_like_node() {
        let bytes = payload(b"\xa3a\xffb");
        assert_eq!(decode_msgpack(&bytes).unwrap(), s("a\u{fffd}b"));
    }

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
}
