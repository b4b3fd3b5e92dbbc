//! The message model of `socket.io-adapter`'s `ClusterAdapter`, as
//! `@socket.io/redis-streams-adapter` 0.3 and `@socket.io/redis-streams-emitter` carry it
//! (`docs/PROTOCOL.md` §4): `{uid, nsp, type, data}`.
//!
//! * In the stream, one entry per message with the fields `uid nsp type data`: `type` in
//!   decimal, `data` the JSON of the data, or base64 of its msgpack when a message that may
//!   carry binary does ([`ClusterMessage::to_entry`], [`ClusterMessage::from_entry`]).
//! * On Pub/Sub (ephemeral requests and every response), msgpack of the whole message, keys
//!   `type, data, uid, nsp` ([`ClusterMessage::encode_msgpack`], [`ClusterMessage::decode`]).
//! * Node's sharded Redis adapter (`createShardedAdapter`, §3.7) sends the same messages on
//!   SPUBLISH: JSON of `{type, data, uid, nsp}` unless the data holds binary, then the msgpack
//!   above ([`ClusterMessage::encode_sharded`], [`ClusterMessage::decode_sharded`]).
//!
//! The bodies are the classic adapter's values ([`RequestBody`], [`Response`], [`Packet`]), so
//! that what a server does with a message does not depend on which adapter carried it. Only the
//! types differ: [`ClusterType`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use super::fields::{non_null, wrong_type, Fields};
use super::msgpack::{decode_msgpack, MsgpackWriter};
use super::response::{remote_socket_value, RemoteSocket};
use super::value::to_json;
use super::{AdapterError, BroadcastOpts, JsValue, Packet, RequestBody, Response, Result};

/// `MessageType` of `socket.io-adapter`'s cluster adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClusterType {
    /// Heartbeat adapters announce themselves (0.2.x streams adapter). Ignored.
    InitialHeartbeat = 1,
    /// Heartbeat adapters' liveness. Ignored.
    Heartbeat = 2,
    /// A broadcast; with a `requestId`, a broadcast with acks (ephemeral, on Pub/Sub).
    Broadcast = 3,
    /// `socketsJoin`.
    SocketsJoin = 4,
    /// `socketsLeave`.
    SocketsLeave = 5,
    /// `disconnectSockets`.
    DisconnectSockets = 6,
    /// `fetchSockets` (ephemeral).
    FetchSockets = 7,
    /// Its answer, on the requester's own channel.
    FetchSocketsResponse = 8,
    /// `serverSideEmit` (ephemeral).
    ServerSideEmit = 9,
    /// Its answer, on the requester's own channel.
    ServerSideEmitResponse = 10,
    /// How many clients one server sent a broadcast with acks to.
    BroadcastClientCount = 11,
    /// One client's ack to a broadcast with acks.
    BroadcastAck = 12,
    /// A server's adapter closed. Ignored.
    AdapterClose = 13,
}

impl ClusterType {
    /// The type for a wire code; `None` for an unknown one.
    pub fn from_code(code: i64) -> Option<Self> {
        use ClusterType as T;
        Some(match code {
            1 => T::InitialHeartbeat,
            2 => T::Heartbeat,
            3 => T::Broadcast,
            4 => T::SocketsJoin,
            5 => T::SocketsLeave,
            6 => T::DisconnectSockets,
            7 => T::FetchSockets,
            8 => T::FetchSocketsResponse,
            9 => T::ServerSideEmit,
            10 => T::ServerSideEmitResponse,
            11 => T::BroadcastClientCount,
            12 => T::BroadcastAck,
            13 => T::AdapterClose,
            _ => return None,
        })
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The types whose data may hold binary: their data travels as base64 msgpack in the stream
    /// when it does (the adapter's `mayContainBinary`).
    fn may_carry_binary(self) -> bool {
        use ClusterType as T;
        matches!(
            self,
            T::Broadcast
                | T::FetchSocketsResponse
                | T::ServerSideEmit
                | T::ServerSideEmitResponse
                | T::BroadcastAck
        )
    }
}

/// What a cluster message says.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterBody {
    /// BROADCAST without a request id: deliver `packet` (its `nsp` is the message's).
    Broadcast {
        /// The packet.
        packet: Packet,
        /// Its targets.
        opts: BroadcastOpts,
    },
    /// A request, in the classic adapter's terms: BROADCAST with a request id
    /// ([`RequestBody::Broadcast`]), SOCKETS_JOIN ([`RequestBody::RemoteJoin`]), SOCKETS_LEAVE
    /// ([`RequestBody::RemoteLeave`]), DISCONNECT_SOCKETS ([`RequestBody::RemoteDisconnect`]),
    /// FETCH_SOCKETS ([`RequestBody::RemoteFetch`]) or SERVER_SIDE_EMIT
    /// ([`RequestBody::ServerSideEmit`]). Other bodies cannot be encoded and are sent as nothing.
    Request(RequestBody),
    /// A response: FETCH_SOCKETS_RESPONSE ([`Response::RemoteFetch`]),
    /// SERVER_SIDE_EMIT_RESPONSE ([`Response::ServerSideEmit`]), BROADCAST_CLIENT_COUNT and
    /// BROADCAST_ACK.
    Response(Response),
    /// Heartbeats, ADAPTER_CLOSE: nothing for a server without heartbeats to do.
    Ignored(ClusterType),
}

/// One cluster message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    /// The sender's uid (`emitter` for the emitter); receivers drop their own.
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// What it says.
    pub body: ClusterBody,
}

/// A stream entry's four fields, as XADD gets them: `uid nsp type data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The sender's uid.
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// The type, in decimal.
    pub kind: String,
    /// JSON, or base64 msgpack; `None` when the message has no data.
    pub data: Option<String>,
}

impl ClusterMessage {
    /// The message's type; `None` for a body no cluster message carries (a classic-only
    /// request such as ALL_ROOMS, or a response such as [`Response::AllRooms`]).
    pub fn kind(&self) -> Option<ClusterType> {
        use ClusterType as T;
        Some(match &self.body {
            ClusterBody::Broadcast { .. } | ClusterBody::Request(RequestBody::Broadcast { .. }) => {
                T::Broadcast
            }
            ClusterBody::Request(RequestBody::RemoteJoin { .. }) => T::SocketsJoin,
            ClusterBody::Request(RequestBody::RemoteLeave { .. }) => T::SocketsLeave,
            ClusterBody::Request(RequestBody::RemoteDisconnect { .. }) => T::DisconnectSockets,
            ClusterBody::Request(RequestBody::RemoteFetch { .. }) => T::FetchSockets,
            ClusterBody::Request(RequestBody::ServerSideEmit { .. }) => T::ServerSideEmit,
            ClusterBody::Response(Response::RemoteFetch { .. }) => T::FetchSocketsResponse,
            ClusterBody::Response(Response::ServerSideEmit { .. }) => T::ServerSideEmitResponse,
            ClusterBody::Response(Response::BroadcastClientCount { .. }) => T::BroadcastClientCount,
            ClusterBody::Response(Response::BroadcastAck { .. }) => T::BroadcastAck,
            ClusterBody::Ignored(kind) => *kind,
            ClusterBody::Request(_) | ClusterBody::Response(_) => return None,
        })
    }

    /// Whether the streams adapter sends this message over Pub/Sub instead of the stream
    /// (`isEphemeral`: a broadcast with acks, a server-side emit, a fetch; and responses, which
    /// always go to the requester's own channel).
    pub fn is_ephemeral(&self) -> bool {
        matches!(
            self.body,
            ClusterBody::Request(
                RequestBody::Broadcast { .. }
                    | RequestBody::RemoteFetch { .. }
                    | RequestBody::ServerSideEmit { .. }
            ) | ClusterBody::Response(_)
        )
    }

    /// The message as a stream entry, exactly as the adapter's `encode` writes it. `None` for a
    /// body no cluster message carries.
    pub fn to_entry(&self) -> Option<StreamEntry> {
        let kind = self.kind()?;
        let data = self.data().map(|data| {
            if kind.may_carry_binary() && has_binary(&data) {
                let mut w = MsgpackWriter::default();
                w.value(&data);
                BASE64.encode(w.into_vec())
            } else {
                String::from_utf8(to_json(&data)).expect("serde_json writes UTF-8")
            }
        });
        Some(StreamEntry {
            uid: self.uid.clone(),
            nsp: self.nsp.clone(),
            kind: kind.code().to_string(),
            data,
        })
    }

    /// Reads a stream entry: `data` is JSON when it starts with `{`, base64 msgpack otherwise
    /// (the adapter's `decode`).
    pub fn from_entry(entry: StreamEntry) -> Result<Self> {
        let code: i64 = entry
            .kind
            .trim()
            .parse()
            .map_err(|_| wrong_type("type", "a decimal message type"))?;
        let data = match entry.data.as_deref() {
            None | Some("") => None,
            Some(json) if json.starts_with('{') => Some(serde_json::from_str(json)?),
            Some(b64) => {
                let bytes = BASE64
                    .decode(b64)
                    .map_err(|_| wrong_type("data", "JSON or base64 msgpack"))?;
                Some(decode_msgpack(&Bytes::from(bytes))?)
            }
        };
        Self::from_parts(entry.uid, entry.nsp, code, data)
    }

    /// msgpack of the whole message, keys `type, data, uid, nsp` (how the Pub/Sub messages
    /// are written). `None` for a body no cluster message carries.
    pub fn encode_msgpack(&self) -> Option<Vec<u8>> {
        let kind = self.kind()?;
        Some(message_msgpack(
            kind,
            self.data().as_ref(),
            &self.uid,
            &self.nsp,
        ))
    }

    /// Reads a Pub/Sub message (msgpack of the whole message).
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut fields = Fields::of(decode_msgpack(payload)?, "message")?;
        let nsp = fields.string("nsp")?;
        Self::from_fields(fields, nsp)
    }

    /// Encodes as Node's sharded adapter does: JSON of `{type, data, uid, nsp}`, or the
    /// msgpack of [`Self::encode_msgpack`] when the data holds binary. `None` for a body no
    /// cluster message carries, and for one without data (heartbeats: never sent).
    pub fn encode_sharded(&self) -> Option<Vec<u8>> {
        let kind = self.kind()?;
        let data = self.data()?;
        if has_binary(&data) {
            return Some(message_msgpack(kind, Some(&data), &self.uid, &self.nsp));
        }
        let message = JsValue::Map(vec![
            ("type".into(), JsValue::Int(i64::from(kind.code()))),
            ("data".into(), data),
            ("uid".into(), JsValue::Str(self.uid.clone())),
            ("nsp".into(), JsValue::Str(self.nsp.clone())),
        ]);
        Some(to_json(&message))
    }

    /// Reads a sharded adapter's message: JSON if the first byte is `{`, else msgpack (Node's
    /// `onRawMessage`); a missing `nsp` is the main namespace.
    pub fn decode_sharded(payload: &Bytes) -> Result<Self> {
        let mut fields = Fields::of_payload(payload, "message")?;
        let nsp = fields.opt_string("nsp")?.unwrap_or_else(|| "/".to_owned());
        Self::from_fields(fields, nsp)
    }

    /// Whether this is a BROADCAST without acks to exactly one room: the one message the
    /// sharded adapter's `dynamic` modes publish on the room's own channel (`computeChannel`).
    pub fn single_room(&self) -> Option<&str> {
        match &self.body {
            ClusterBody::Broadcast { opts, .. } => match opts.rooms.as_slice() {
                [room] => Some(room),
                _ => None,
            },
            _ => None,
        }
    }

    fn from_fields(mut fields: Fields, nsp: String) -> Result<Self> {
        let uid = fields.string("uid")?;
        let code = fields.integer("type")?;
        let data = fields.take("data");
        Self::from_parts(uid, nsp, code, data)
    }

    fn from_parts(uid: String, nsp: String, code: i64, data: Option<JsValue>) -> Result<Self> {
        use ClusterType as T;
        let kind = ClusterType::from_code(code).ok_or(AdapterError::UnexpectedType(code))?;
        if matches!(kind, T::InitialHeartbeat | T::Heartbeat | T::AdapterClose) {
            let body = ClusterBody::Ignored(kind);
            return Ok(ClusterMessage { uid, nsp, body });
        }
        let mut f = Fields::of(non_null(data, "data")?, "data")?;
        let body = match kind {
            T::Broadcast => {
                let mut packet = Packet::from_value(f.required("packet")?)?;
                // Node's adapter leaves `nsp` out of the packet; the message says it.
                packet.nsp.clone_from(&nsp);
                let opts = BroadcastOpts::from_value(f.required("opts")?)?;
                match f.opt_string("requestId")? {
                    None => ClusterBody::Broadcast { packet, opts },
                    Some(request_id) => ClusterBody::Request(RequestBody::Broadcast {
                        request_id,
                        packet,
                        opts,
                    }),
                }
            }
            T::SocketsJoin => ClusterBody::Request(RequestBody::RemoteJoin {
                opts: BroadcastOpts::from_value(f.required("opts")?)?,
                rooms: f.rooms("rooms")?,
            }),
            T::SocketsLeave => ClusterBody::Request(RequestBody::RemoteLeave {
                opts: BroadcastOpts::from_value(f.required("opts")?)?,
                rooms: f.rooms("rooms")?,
            }),
            T::DisconnectSockets => ClusterBody::Request(RequestBody::RemoteDisconnect {
                opts: BroadcastOpts::from_value(f.required("opts")?)?,
                close: f.opt_bool("close")?.unwrap_or(false),
            }),
            T::FetchSockets => ClusterBody::Request(RequestBody::RemoteFetch {
                request_id: f.string("requestId")?,
                opts: BroadcastOpts::from_value(f.required("opts")?)?,
            }),
            T::ServerSideEmit => {
                let JsValue::Array(data) = f.required("packet")? else {
                    return Err(wrong_type("packet", "an array"));
                };
                ClusterBody::Request(RequestBody::ServerSideEmit {
                    request_id: f.opt_string("requestId")?,
                    data,
                })
            }
            T::FetchSocketsResponse => {
                let JsValue::Array(sockets) = f.required("sockets")? else {
                    return Err(wrong_type("sockets", "an array"));
                };
                ClusterBody::Response(Response::RemoteFetch {
                    request_id: f.string("requestId")?,
                    sockets: sockets
                        .into_iter()
                        .map(RemoteSocket::from_value)
                        .collect::<Result<_>>()?,
                })
            }
            T::ServerSideEmitResponse => ClusterBody::Response(Response::ServerSideEmit {
                request_id: f.string("requestId")?,
                data: f.take("packet").unwrap_or(JsValue::Null),
            }),
            T::BroadcastClientCount => ClusterBody::Response(Response::BroadcastClientCount {
                request_id: f.string("requestId")?,
                client_count: f
                    .opt_uint("clientCount")?
                    .ok_or(AdapterError::MissingField("clientCount"))?,
            }),
            T::BroadcastAck => ClusterBody::Response(Response::BroadcastAck {
                request_id: f.string("requestId")?,
                packet: f.take("packet").unwrap_or(JsValue::Null),
            }),
            T::InitialHeartbeat | T::Heartbeat | T::AdapterClose => unreachable!("handled above"),
        };
        Ok(ClusterMessage { uid, nsp, body })
    }

    /// The `data` object, keys in the order `ClusterAdapter` writes them.
    fn data(&self) -> Option<JsValue> {
        let s = |v: &str| JsValue::Str(v.to_owned());
        let rooms = |r: &[String]| JsValue::Array(r.iter().map(|r| s(r)).collect());
        let map = |entries: Vec<(&str, JsValue)>| {
            Some(JsValue::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            ))
        };
        let packet = |p: &Packet| {
            JsValue::Map(vec![
                ("type".into(), JsValue::Int(i64::from(p.kind))),
                ("data".into(), p.data.clone()),
            ])
        };
        match &self.body {
            ClusterBody::Broadcast { packet: p, opts } => {
                map(vec![("packet", packet(p)), ("opts", opts.to_value())])
            }
            ClusterBody::Request(body) => match body {
                RequestBody::Broadcast {
                    request_id,
                    packet: p,
                    opts,
                } => map(vec![
                    ("packet", packet(p)),
                    ("requestId", s(request_id)),
                    ("opts", opts.to_value()),
                ]),
                RequestBody::RemoteJoin { opts, rooms: r }
                | RequestBody::RemoteLeave { opts, rooms: r } => {
                    map(vec![("opts", opts.to_value()), ("rooms", rooms(r))])
                }
                RequestBody::RemoteDisconnect { opts, close } => map(vec![
                    ("opts", opts.to_value()),
                    ("close", JsValue::Bool(*close)),
                ]),
                RequestBody::RemoteFetch { request_id, opts } => map(vec![
                    ("opts", opts.to_value()),
                    ("requestId", s(request_id)),
                ]),
                RequestBody::ServerSideEmit { request_id, data } => {
                    let packet = ("packet", JsValue::Array(data.clone()));
                    match request_id {
                        Some(id) => map(vec![("requestId", s(id)), packet]),
                        None => map(vec![packet]),
                    }
                }
                _ => None,
            },
            ClusterBody::Response(response) => match response {
                Response::RemoteFetch {
                    request_id,
                    sockets,
                } => map(vec![
                    ("requestId", s(request_id)),
                    (
                        "sockets",
                        JsValue::Array(sockets.iter().map(remote_socket_value).collect()),
                    ),
                ]),
                Response::ServerSideEmit { request_id, data } => {
                    map(vec![("requestId", s(request_id)), ("packet", data.clone())])
                }
                Response::BroadcastClientCount {
                    request_id,
                    client_count,
                } => map(vec![
                    ("requestId", s(request_id)),
                    (
                        "clientCount",
                        JsValue::Int(i64::try_from(*client_count).unwrap_or(i64::MAX)),
                    ),
                ]),
                Response::BroadcastAck { request_id, packet } => map(vec![
                    ("requestId", s(request_id)),
                    ("packet", packet.clone()),
                ]),
                _ => None,
            },
            ClusterBody::Ignored(_) => None,
        }
    }
}

/// msgpack of a whole message, keys `type, data, uid, nsp` (`data` left out when `None`).
fn message_msgpack(kind: ClusterType, data: Option<&JsValue>, uid: &str, nsp: &str) -> Vec<u8> {
    let mut w = MsgpackWriter::default();
    w.map_len(3 + usize::from(data.is_some()));
    w.str("type");
    w.int(i64::from(kind.code()));
    if let Some(data) = data {
        w.str("data");
        w.value(data);
    }
    w.str("uid");
    w.str(uid);
    w.str("nsp");
    w.str(nsp);
    w.into_vec()
}

/// Whether `value` holds binary anywhere (socket.io's `hasBinary`).
fn has_binary(value: &JsValue) -> bool {
    match value {
        JsValue::Bin(_) => true,
        JsValue::Array(items) => items.iter().any(has_binary),
        JsValue::Map(entries) => entries.iter().any(|(_, v)| has_binary(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::{assert_truncations_fail, bin, payload, s};
    use crate::protocol::adapter::BroadcastFlags;

    // Golden vectors: the capture `monitor-streams.txt`, recorded from Node's
    // redis-streams-adapter 0.3.1 (two servers, namespace `/`).
    const NODE_UID: &str = "79e8b7ac272d67ee";
    /// `io.emit("hello", 1)`.
    const HELLO: &str =
        r#"{"packet":{"type":2,"data":["hello",1]},"opts":{"rooms":[],"except":[],"flags":{}}}"#;
    /// `io.to("room1").emit("bin", Buffer.from([7]))`.
    const BIN: &str =
        "gqZwYWNrZXSCpHR5cGUCpGRhdGGSo2JpbsQBB6RvcHRzg6Vyb29tc5Glcm9vbTGmZXhjZXB0kKVmbGFnc4A=";
    /// `io.socketsJoin("room9")`.
    const JOIN: &str = r#"{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room9"]}"#;
    /// `io.to("room1").emit("missed", "while-offline")`.
    const MISSED: &str = r#"{"packet":{"type":2,"data":["missed","while-offline"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}}"#;
    /// `io.fetchSockets()`, PUBLISH on `socket.io#/#`.
    const FETCH: &[u8] = b"\x84\xa4type\x07\xa4data\x82\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80\xa9requestId\xb091ea01616f6a2fbf\xa3uid\xb079e8b7ac272d67ee\xa3nsp\xa1/";
    /// The other server's answer, PUBLISH on `socket.io#/#79e8b7ac272d67ee#`.
    const FETCH_RESPONSE: &[u8] = b"\x84\xa4type\x08\xa4data\x82\xa9requestId\xb091ea01616f6a2fbf\xa7sockets\x91\x84\xa2id\xb4LsFKmkECoLT3FAbQAAAA\xa9handshake\x89\xa7headers\x86\xb5sec-websocket-version\xa213\xb1sec-websocket-key\xb8XJI1U1FTodQ6gqC0tG6YAg==\xaaconnection\xa7Upgrade\xa7upgrade\xa9websocket\xb8sec-websocket-extensions\xd9*permessage-deflate; client_max_window_bits\xa4host\xae127.0.0.1:3002\xa4time\xd9>Wed Nov 25 2026 11:27:35 GMT+0000 (Coordinated Universal Time)\xa7address\xb0::ffff:127.0.0.1\xa7xdomain\xc2\xa6secure\xc2\xa6issued\xcf\x00\x00\x01\xa2\x12v\x0a\x82\xa3url\xd9%/socket.io/?EIO=4&transport=websocket\xa5query\x82\xa3EIO\xa14\xa9transport\xa9websocket\xa4auth\x80\xa5rooms\x93\xb4LsFKmkECoLT3FAbQAAAA\xa5room1\xa5room9\xa4data\x80\xa3uid\xb03769dad9d0846232\xa3nsp\xa1/";

    fn entry(kind: &str, data: &str) -> StreamEntry {
        StreamEntry {
            uid: NODE_UID.into(),
            nsp: "/".into(),
            kind: kind.into(),
            data: Some(data.into()),
        }
    }

    fn opts(rooms: &[&str]) -> BroadcastOpts {
        BroadcastOpts {
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            ..BroadcastOpts::default()
        }
    }

    fn broadcast(data: Vec<JsValue>, rooms: &[&str]) -> ClusterMessage {
        ClusterMessage {
            uid: NODE_UID.into(),
            nsp: "/".into(),
            body: ClusterBody::Broadcast {
                packet: Packet {
                    kind: 2,
                    data: JsValue::Array(data),
                    nsp: "/".into(),
                },
                opts: opts(rooms),
            },
        }
    }

    /// Decodes a captured entry, checks the value, and writes it back to the same fields.
    fn round_trip(kind: &str, data: &str, expected: &ClusterMessage) {
        let captured = entry(kind, data);
        let decoded = ClusterMessage::from_entry(captured.clone()).unwrap();
        assert_eq!(&decoded, expected);
        assert!(!decoded.is_ephemeral());
        assert_eq!(decoded.to_entry().unwrap(), captured);
    }

    #[test]
    fn golden_stream_entries_decode_and_encode_to_the_same_fields() {
        round_trip(
            "3",
            HELLO,
            &broadcast(vec![s("hello"), JsValue::Int(1)], &[]),
        );
        round_trip("3", BIN, &broadcast(vec![s("bin"), bin(&[7])], &["room1"]));
        round_trip(
            "3",
            MISSED,
            &broadcast(vec![s("missed"), s("while-offline")], &["room1"]),
        );
        let join = ClusterMessage {
            uid: NODE_UID.into(),
            nsp: "/".into(),
            body: ClusterBody::Request(RequestBody::RemoteJoin {
                opts: opts(&[]),
                rooms: vec!["room9".into()],
            }),
        };
        round_trip("4", JOIN, &join);
    }

    #[test]
    fn golden_pubsub_messages_decode_and_encode_to_the_same_bytes() {
        let fetch = ClusterMessage::decode(&Bytes::from_static(FETCH)).unwrap();
        assert_eq!(
            fetch.body,
            ClusterBody::Request(RequestBody::RemoteFetch {
                request_id: "91ea01616f6a2fbf".into(),
                opts: opts(&[]),
            })
        );
        assert!(fetch.is_ephemeral());
        assert_eq!(fetch.encode_msgpack().unwrap(), FETCH);

        let response = ClusterMessage::decode(&Bytes::from_static(FETCH_RESPONSE)).unwrap();
        assert_eq!(response.uid, "3769dad9d0846232");
        let ClusterBody::Response(Response::RemoteFetch {
            request_id,
            sockets,
        }) = &response.body
        else {
            panic!("not a fetch response: {response:?}");
        };
        assert_eq!(request_id, "91ea01616f6a2fbf");
        assert_eq!(sockets[0].id, "LsFKmkECoLT3FAbQAAAA");
        assert_eq!(sockets[0].rooms, ["LsFKmkECoLT3FAbQAAAA", "room1", "room9"]);
        assert_eq!(response.encode_msgpack().unwrap(), FETCH_RESPONSE);
    }

    #[test]
    fn the_emitter_s_packet_nsp_and_key_order_are_accepted() {
        // @socket.io/redis-streams-emitter writes `packet.nsp` and opts as rooms,flags,except.
        let data = r#"{"packet":{"type":2,"data":["e",1],"nsp":"/admin"},"opts":{"rooms":["r"],"flags":{"volatile":true},"except":["x"]}}"#;
        let mut e = entry("3", data);
        e.uid = "emitter".into();
        e.nsp = "/admin".into();
        let m = ClusterMessage::from_entry(e).unwrap();
        let ClusterBody::Broadcast { packet, opts } = m.body else {
            panic!("not a broadcast");
        };
        assert_eq!(packet.nsp, "/admin");
        assert_eq!(opts.except, ["x"]);
        assert!(opts.flags.volatile);
    }

    #[test]
    fn ephemeral_messages_and_responses_round_trip_over_msgpack() {
        let flags = BroadcastFlags {
            timeout: Some(1000),
            ..BroadcastFlags::default()
        };
        let bodies = [
            ClusterBody::Request(RequestBody::Broadcast {
                request_id: "r1".into(),
                packet: Packet {
                    kind: 2,
                    data: JsValue::Array(vec![s("ev"), bin(&[1, 2])]),
                    nsp: "/".into(),
                },
                opts: BroadcastOpts {
                    flags,
                    ..opts(&["room1"])
                },
            }),
            ClusterBody::Request(RequestBody::ServerSideEmit {
                request_id: Some("r2".into()),
                data: vec![s("srv"), JsValue::Int(1)],
            }),
            ClusterBody::Response(Response::ServerSideEmit {
                request_id: "r2".into(),
                data: s("pong"),
            }),
            ClusterBody::Response(Response::BroadcastClientCount {
                request_id: "r1".into(),
                client_count: 3,
            }),
            ClusterBody::Response(Response::BroadcastAck {
                request_id: "r1".into(),
                packet: bin(&[9]),
            }),
        ];
        for body in bodies {
            let m = ClusterMessage {
                uid: "shardio-x".into(),
                nsp: "/".into(),
                body,
            };
            assert!(m.is_ephemeral());
            let bytes = Bytes::from(m.encode_msgpack().unwrap());
            assert_eq!(ClusterMessage::decode(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn heartbeats_are_ignored_and_bad_entries_are_errors() {
        let mut hb = entry("2", "");
        hb.data = None;
        assert_eq!(
            ClusterMessage::from_entry(hb).unwrap().body,
            ClusterBody::Ignored(ClusterType::Heartbeat)
        );
        for (kind, data) in [
            ("99", HELLO),
            ("x", HELLO),
            ("3", "{not json"),
            ("3", "!!!"),
            ("3", r#"{"opts":{"rooms":[],"except":[]}}"#),
            ("4", r#"{"rooms":["a"]}"#),
        ] {
            assert!(
                ClusterMessage::from_entry(entry(kind, data)).is_err(),
                "{kind} {data}"
            );
        }
        assert!(ClusterMessage::decode(&Bytes::from_static(b"\x93\x01\x02\x03")).is_err());
    }

    // Golden vectors: SPUBLISH payloads recorded from Node's sharded adapter 8.3.0
    // (`monitor-sharded.txt`).
    mod sharded {
        pub(super) const BROADCAST_ALL: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["hello",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const BROADCAST_ROOM: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["r1","x"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const BROADCAST_BIN: &[u8] = b"\x84\xa4type\x03\xa4data\x82\xa6packet\x82\xa4type\x02\xa4data\x92\xa3bin\xc4\x02\x01\x02\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80\xa3uid\xb07c9575a35a19ed00\xa3nsp\xa1/";
        pub(super) const FETCH: &[u8] = br#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"f6733b1875e0e38e"},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const JOIN: &[u8] = br#"{"type":4,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room9"]},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const SSE: &[u8] = br#"{"type":9,"data":{"requestId":"ee7a0d3618611bd7","packet":["srv","b"]},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const SSE_RESPONSE: &[u8] = br#"{"type":10,"data":{"requestId":"ee7a0d3618611bd7","packet":"pong-from-s2"},"uid":"a9270ac7d3586723","nsp":"/"}"#;
        pub(super) const BROADCAST_WITH_ACK: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["r-ack",42]},"requestId":"8432ba810f75ff74","opts":{"rooms":["room1"],"except":[],"flags":{"timeout":1000}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        pub(super) const CLIENT_COUNT: &[u8] = br#"{"type":11,"data":{"requestId":"8432ba810f75ff74","clientCount":1},"uid":"a9270ac7d3586723","nsp":"/"}"#;
        pub(super) const ACK: &[u8] = br#"{"type":12,"data":{"requestId":"8432ba810f75ff74","packet":"client-ack"},"uid":"a9270ac7d3586723","nsp":"/"}"#;
        pub(super) const DISCONNECT: &[u8] = br#"{"type":6,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"close":false},"uid":"7c9575a35a19ed00","nsp":"/"}"#;

        pub(super) const ALL: &[&[u8]] = &[
            BROADCAST_ALL,
            BROADCAST_ROOM,
            BROADCAST_BIN,
            FETCH,
            JOIN,
            SSE,
            SSE_RESPONSE,
            BROADCAST_WITH_ACK,
            CLIENT_COUNT,
            ACK,
            DISCONNECT,
        ];
    }

    #[test]
    fn sharded_node_messages_encode_back_byte_for_byte() {
        for capture in sharded::ALL {
            let message = ClusterMessage::decode_sharded(&payload(capture)).unwrap();
            assert_eq!(
                message.encode_sharded().as_deref(),
                Some(*capture),
                "{}",
                String::from_utf8_lossy(capture)
            );
        }
    }

    #[test]
    fn sharded_messages_read_as_the_classic_types() {
        let decode = |bytes| ClusterMessage::decode_sharded(&payload(bytes)).unwrap();
        let m = decode(sharded::BROADCAST_BIN);
        assert_eq!(m.uid, "7c9575a35a19ed00");
        let ClusterBody::Broadcast { packet, opts } = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(packet.nsp, "/");
        assert_eq!(packet.data, JsValue::Array(vec![s("bin"), bin(&[1, 2])]));
        assert!(opts.rooms.is_empty());
        assert_eq!(m.single_room(), None);
        assert_eq!(decode(sharded::BROADCAST_ROOM).single_room(), Some("room1"));
        let with_ack = decode(sharded::BROADCAST_WITH_ACK);
        assert!(matches!(
            with_ack.body,
            ClusterBody::Request(RequestBody::Broadcast { ref request_id, ref opts, .. })
                if request_id == "8432ba810f75ff74" && opts.flags.timeout == Some(1000)
        ));
        assert_eq!(with_ack.single_room(), None);
        assert_eq!(
            decode(sharded::CLIENT_COUNT).body,
            ClusterBody::Response(Response::BroadcastClientCount {
                request_id: "8432ba810f75ff74".into(),
                client_count: 1
            })
        );
        assert_eq!(
            decode(sharded::SSE).body,
            ClusterBody::Request(RequestBody::ServerSideEmit {
                request_id: Some("ee7a0d3618611bd7".into()),
                data: vec![s("srv"), s("b")]
            })
        );
    }

    #[test]
    fn sharded_heartbeats_are_read_and_never_written_and_bad_messages_are_errors() {
        let heartbeat = br#"{"type":2,"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        let m = ClusterMessage::decode_sharded(&payload(heartbeat)).unwrap();
        assert_eq!(m.body, ClusterBody::Ignored(ClusterType::Heartbeat));
        assert_eq!(m.encode_sharded(), None);
        assert_truncations_fail(sharded::ALL, ClusterMessage::decode_sharded);
        for bad in [
            &br#"{"type":3,"uid":"u","nsp":"/"}"#[..],
            br#"{"type":3,"data":[],"uid":"u"}"#,
            br#"{"type":9,"data":{"packet":"x"},"uid":"u"}"#,
            br#"{"data":{},"uid":"u"}"#,
            b"\x93\x01\x02\x03",
        ] {
            assert!(ClusterMessage::decode_sharded(&payload(bad)).is_err());
        }
    }

    #[test]
    fn classic_only_bodies_have_no_cluster_form() {
        let m = ClusterMessage {
            uid: "u".into(),
            nsp: "/".into(),
            body: ClusterBody::Request(RequestBody::AllRooms {
                request_id: "r".into(),
            }),
        };
        assert_eq!(m.kind(), None);
        assert!(m.to_entry().is_none());
        assert!(m.encode_msgpack().is_none());
        assert!(m.encode_sharded().is_none());
    }
}
