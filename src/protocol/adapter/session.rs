//! A connection-recovery session as `@socket.io/redis-streams-adapter` 0.3 stores it
//! (docs/PROTOCOL.md §4.3): the value of `SET sio:session:<pid> <value> PX <window>` is the
//! base64 of the msgpack map `{sid, pid, rooms, data}`, written by `@msgpack/msgpack`.
//!
//! Stream entry ids (`<ms>-<seq>`) are the offsets of that adapter: [`parse_entry_id`] reads
//! one as the adapter's `restoreSession` accepts it (`/^[0-9]+-[0-9]+$/`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use super::fields::{wrong_type, Fields};
use super::msgpack::{decode_msgpack, MsgpackWriter};
use super::{JsValue, Result};

/// The Redis key of the session of recovery id `pid`, under the adapter's `sessionKeyPrefix`.
pub fn session_key(pid: &str) -> String {
    format!("sio:session:{pid}")
}

/// A session kept in Redis for a client that dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// The socket id, which the client gets back.
    pub sid: String,
    /// The recovery id (the key's suffix).
    pub pid: String,
    /// The socket's rooms, its own id included.
    pub rooms: Vec<String>,
    /// The socket's `data`.
    pub data: JsValue,
}

impl StoredSession {
    /// The stored value: base64 of the msgpack map, keys in the adapter's order.
    pub fn encode(&self) -> String {
        let mut w = MsgpackWriter::default();
        w.map_len(4);
        w.str("sid");
        w.str(&self.sid);
        w.str("pid");
        w.str(&self.pid);
        w.str("rooms");
        w.str_array(&self.rooms);
        w.str("data");
        w.value(&self.data);
        BASE64.encode(w.into_vec())
    }

    /// Reads a stored value; `data` may be absent (null).
    pub fn decode(value: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(value.trim())
            .map_err(|_| wrong_type("session", "base64 msgpack"))?;
        let mut fields = Fields::of(decode_msgpack(&Bytes::from(bytes))?, "session")?;
        Ok(StoredSession {
            sid: fields.string("sid")?,
            pid: fields.string("pid")?,
            rooms: fields.rooms("rooms")?,
            data: fields.take("data").unwrap_or(JsValue::Null),
        })
    }
}

/// A stream entry id `<ms>-<seq>` as numbers; `None` for anything else (no sign, no space, no
/// `*` or `$`, nothing past `u64`).
pub fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SET of captures/monitor-streams.txt (line 24), written by the adapter 0.3.1.
    const CAPTURED: &str = "hKNzaWS0THNGS21rRUNvTFQzRkFiUUFBQUGjcGlktDBIYTlEczVaYzdlOWpQYjZBQUFCpXJvb21zk7RMc0ZLbWtFQ29MVDNGQWJRQUFBQaVyb29tMaVyb29tOaRkYXRhgA==";

    #[test]
    fn the_captured_session_reads_and_writes_back_byte_for_byte() {
        let session = StoredSession::decode(CAPTURED).unwrap();
        assert_eq!(session.sid, "LsFKmkECoLT3FAbQAAAA");
        assert_eq!(session.pid, "0Ha9Ds5Zc7e9jPb6AAAB");
        assert_eq!(session.rooms, ["LsFKmkECoLT3FAbQAAAA", "room1", "room9"]);
        assert_eq!(session.data, JsValue::Map(Vec::new()));
        assert_eq!(session.encode(), CAPTURED);
        assert_eq!(
            session_key(&session.pid),
            "sio:session:0Ha9Ds5Zc7e9jPb6AAAB"
        );
    }

    #[test]
    fn data_of_any_shape_survives_a_round_trip() {
        let session = StoredSession {
            sid: "s".into(),
            pid: "p".into(),
            rooms: vec![],
            data: JsValue::Map(vec![
                ("user".into(), JsValue::Str("ana".into())),
                ("n".into(), JsValue::Int(-3)),
                ("bin".into(), JsValue::Bin(Bytes::from_static(&[1, 2]))),
            ]),
        };
        assert_eq!(StoredSession::decode(&session.encode()).unwrap(), session);
    }

    #[test]
    fn malformed_sessions_are_errors_not_panics() {
        for bad in ["", "!!!", "kA==", "gA==", "hKNzaWQB"] {
            assert!(StoredSession::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entry_ids_are_read_as_the_adapter_accepts_them() {
        assert_eq!(
            parse_entry_id("1795606056161-0"),
            Some((1_795_606_056_161, 0))
        );
        assert_eq!(parse_entry_id("0-12"), Some((0, 12)));
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "+1-2",
            "1- 2",
            "$",
            "*",
            "a-1",
            "99999999999999999999-0",
        ] {
            assert_eq!(parse_entry_id(bad), None, "{bad:?}");
        }
    }
}
