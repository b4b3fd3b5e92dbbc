//! [`JsValue`], the JavaScript data that packets carry, and its JSON forms: Socket.IO's
//! placeholder form (JSON plus binary attachments) and `JSON.stringify`'s (for the JSON requests
//! and responses).

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::date::iso_date;
use super::{check_depth, AdapterError, Result};

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
    /// [`AdapterError::IllegalAttachment`]; nesting beyond [`MAX_DEPTH`](super::MAX_DEPTH) is
    /// [`AdapterError::TooDeep`].
    pub fn from_placeholder_json(json: &serde_json::Value, attachments: &[Bytes]) -> Result<Self> {
        from_placeholder_json(json, attachments, 0)
    }
}

/// `f` as an `i64` when JavaScript would treat it as an integer that fits one.
pub(super) fn js_integer(f: f64) -> Option<i64> {
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
/// serde_json's recursion limit, which equals [`MAX_DEPTH`](super::MAX_DEPTH).
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

/// The JSON requests and responses, encoded.
pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value)
        .expect("adapter JSON cannot fail to encode: all map keys are strings, no I/O involved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::date::MAX_DATE_MS;
    use crate::protocol::adapter::testdata::{bin, map, s, DATE_CASES};
    use crate::protocol::adapter::MAX_DEPTH;

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
    fn placeholder_json_nesting_is_bounded() {
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
    fn dates_become_iso_strings_in_json() {
        for (ms, iso) in DATE_CASES {
            let date = JsValue::Date(*ms);
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
    }

    #[test]
    fn get_keeps_the_last_duplicate_like_javascript() {
        let value = map(&[("k", JsValue::Int(1)), ("k", JsValue::Int(2))]);
        assert_eq!(value.get("k"), Some(&JsValue::Int(2)));
        assert_eq!(value.get("missing"), None);
        assert_eq!(JsValue::Int(1).get("k"), None);
    }
}
