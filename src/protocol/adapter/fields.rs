//! Typed reading of decoded messages: fields taken out of a map by name, with JavaScript's
//! leniencies (last duplicate wins, null is absent, integer rooms).

use bytes::Bytes;

use super::msgpack::decode_msgpack;
use super::value::js_integer;
use super::{AdapterError, JsValue, Result};

/// The entries of a decoded map, taken out one by one so that payloads move instead of copying.
pub(super) struct Fields(Vec<(String, JsValue)>);

impl Fields {
    /// The fields of a request or response: JSON if the first byte is `{`, else msgpack (as
    /// Node's `onrequest` and `onresponse`). `what` names the message in errors.
    pub(super) fn of_payload(payload: &Bytes, what: &'static str) -> Result<Self> {
        let value = if payload.first() == Some(&b'{') {
            serde_json::from_slice(payload)?
        } else {
            decode_msgpack(payload)?
        };
        Fields::of(value, what)
    }

    pub(super) fn of(value: JsValue, field: &'static str) -> Result<Self> {
        match value {
            JsValue::Map(entries) => Ok(Fields(entries)),
            _ => Err(wrong_type(field, "a map")),
        }
    }

    /// The last entry `key` (JavaScript keeps the last duplicate); null counts as absent, since
    /// notepack 2.x wrote `undefined` values as nil-like extensions.
    pub(super) fn take(&mut self, key: &str) -> Option<JsValue> {
        let index = self.0.iter().rposition(|(k, _)| k == key)?;
        match self.0.swap_remove(index).1 {
            JsValue::Null => None,
            value => Some(value),
        }
    }

    pub(super) fn required(&mut self, key: &'static str) -> Result<JsValue> {
        self.take(key).ok_or(AdapterError::MissingField(key))
    }

    pub(super) fn string(&mut self, key: &'static str) -> Result<String> {
        into_string(self.required(key)?, key)
    }

    pub(super) fn opt_string(&mut self, key: &'static str) -> Result<Option<String>> {
        self.take(key).map(|v| into_string(v, key)).transpose()
    }

    pub(super) fn integer(&mut self, key: &'static str) -> Result<i64> {
        self.opt_integer(key)?
            .ok_or(AdapterError::MissingField(key))
    }

    pub(super) fn opt_integer(&mut self, key: &'static str) -> Result<Option<i64>> {
        self.take(key)
            .map(|v| as_integer(&v).ok_or_else(|| wrong_type(key, "an integer")))
            .transpose()
    }

    pub(super) fn opt_uint(&mut self, key: &'static str) -> Result<Option<u64>> {
        self.opt_integer(key)?
            .map(|i| u64::try_from(i).map_err(|_| wrong_type(key, "a non-negative integer")))
            .transpose()
    }

    pub(super) fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(JsValue::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(wrong_type(key, "a boolean")),
        }
    }

    /// A list of room names; absent means none (Node: `new Set(undefined)`).
    pub(super) fn rooms(&mut self, key: &'static str) -> Result<Vec<String>> {
        Ok(self.rooms_if_present(key)?.unwrap_or_default())
    }

    pub(super) fn rooms_if_present(&mut self, key: &'static str) -> Result<Option<Vec<String>>> {
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

pub(super) fn wrong_type(field: &'static str, expected: &'static str) -> AdapterError {
    AdapterError::WrongType { field, expected }
}

pub(super) fn non_null(value: Option<JsValue>, field: &'static str) -> Result<JsValue> {
    match value {
        None | Some(JsValue::Null) => Err(AdapterError::MissingField(field)),
        Some(value) => Ok(value),
    }
}

pub(super) fn into_string(value: JsValue, field: &'static str) -> Result<String> {
    match value {
        JsValue::Str(s) => Ok(s),
        _ => Err(wrong_type(field, "a string")),
    }
}

/// Rooms are strings, but JavaScript lets `io.to(123)` through: take integers as their decimal
/// string, which is how the room would print.
pub(super) fn into_room(value: JsValue, field: &'static str) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::{map, opts, pack, payload, s, strings};
    use crate::protocol::adapter::{BroadcastMessage, Request, RequestBody};

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
    fn duplicate_keys_keep_the_last_like_javascript() {
        let bytes = payload(br#"{"uid":"a","uid":"b","requestId":"r","type":1}"#);
        assert_eq!(Request::decode(&bytes).unwrap().uid.as_deref(), Some("b"));
        let mut fields = Fields::of(map(&[("k", s("first")), ("k", s("last"))]), "m").unwrap();
        assert_eq!(fields.string("k").unwrap(), "last");
    }

    #[test]
    fn null_fields_count_as_absent() {
        let value = map(&[("a", JsValue::Null), ("b", JsValue::Int(1))]);
        let mut fields = Fields::of(value, "m").unwrap();
        assert_eq!(fields.take("a"), None);
        assert!(matches!(
            fields.required("a"),
            Err(AdapterError::MissingField("a"))
        ));
        assert_eq!(fields.opt_string("a").unwrap(), None);
        assert_eq!(fields.integer("b").unwrap(), 1);
        // Taken fields are gone.
        assert_eq!(fields.take("b"), None);
        assert!(matches!(
            Fields::of(JsValue::Array(vec![]), "m"),
            Err(AdapterError::WrongType { field: "m", .. })
        ));
    }

    #[test]
    fn payloads_are_json_when_they_start_with_a_brace() {
        let mut json = Fields::of_payload(&payload(br#"{"n":1.0}"#), "m").unwrap();
        assert_eq!(json.integer("n").unwrap(), 1);
        let mut msgpack = Fields::of_payload(&pack(&map(&[("n", JsValue::Int(1))])), "m").unwrap();
        assert_eq!(msgpack.integer("n").unwrap(), 1);
        assert!(matches!(
            Fields::of_payload(&payload(b"{"), "m"),
            Err(AdapterError::Json(_))
        ));
    }
}
