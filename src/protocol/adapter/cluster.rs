//! The sharded adapter's messages (`createShardedAdapter`, socket.io-adapter's `ClusterAdapter`
//! model, docs/PROTOCOL.md §3.7): `{type, data, uid, nsp}`, JSON unless the data holds binary,
//! then msgpack of the whole message. Read into the classic adapter's types (a request body, a
//! response, a broadcast) so that the bridge handles both formats with one logic.

use bytes::Bytes;

use super::broadcast::{BroadcastFlags, BroadcastOpts, Packet};
use super::fields::{wrong_type, Fields};
use super::msgpack::MsgpackWriter;
use super::response::RemoteSocket;
use super::value::to_json;
use super::{AdapterError, JsValue, RequestBody, Response, Result};

/// socket.io-adapter's `MessageType` codes this server reads or writes.
mod code {
    pub(super) const BROADCAST: i64 = 3;
    pub(super) const SOCKETS_JOIN: i64 = 4;
    pub(super) const SOCKETS_LEAVE: i64 = 5;
    pub(super) const DISCONNECT_SOCKETS: i64 = 6;
    pub(super) const FETCH_SOCKETS: i64 = 7;
    pub(super) const FETCH_SOCKETS_RESPONSE: i64 = 8;
    pub(super) const SERVER_SIDE_EMIT: i64 = 9;
    pub(super) const SERVER_SIDE_EMIT_RESPONSE: i64 = 10;
    pub(super) const BROADCAST_CLIENT_COUNT: i64 = 11;
    pub(super) const BROADCAST_ACK: i64 = 12;
}

/// One message of the sharded adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    /// The sender's uid (16 hex characters for Node); receivers drop their own.
    pub uid: String,
    /// The namespace the message is for.
    pub nsp: String,
    /// What it says.
    pub body: ClusterBody,
}

/// What a [`ClusterMessage`] says, in the classic adapter's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterBody {
    /// BROADCAST (3) without a request id: deliver locally. The packet's `nsp` is the
    /// message's (the sharded adapter leaves it out of the packet).
    Broadcast {
        /// The packet.
        packet: Packet,
        /// Its targets.
        opts: BroadcastOpts,
    },
    /// A request: SOCKETS_JOIN (4) as [`RequestBody::RemoteJoin`], SOCKETS_LEAVE (5),
    /// DISCONNECT_SOCKETS (6), FETCH_SOCKETS (7) as [`RequestBody::RemoteFetch`],
    /// SERVER_SIDE_EMIT (9), and BROADCAST (3) with a request id as [`RequestBody::Broadcast`].
    Request(RequestBody),
    /// A response, on the requester's private channel: FETCH_SOCKETS_RESPONSE (8) as
    /// [`Response::RemoteFetch`], SERVER_SIDE_EMIT_RESPONSE (10) as
    /// [`Response::ServerSideEmit`], BROADCAST_CLIENT_COUNT (11), BROADCAST_ACK (12).
    Response(Response),
    /// A type this server has nothing to do with (heartbeats, ADAPTER_CLOSE, newer types).
    Other(i64),
}

impl ClusterMessage {
    /// Decodes a message: JSON if the first byte is `{`, else msgpack (as Node's
    /// `onRawMessage`).
    pub fn decode(payload: &Bytes) -> Result<Self> {
        let mut fields = Fields::of_payload(payload, "message")?;
        let uid = fields.string("uid")?;
        let nsp = fields.opt_string("nsp")?.unwrap_or_else(|| "/".to_owned());
        let kind = fields.integer("type")?;
        let data = fields.take("data");
        let mut data = match data {
            Some(data) => Fields::of(data, "data")?,
            None if !handled(kind) => {
                return Ok(ClusterMessage {
                    uid,
                    nsp,
                    body: ClusterBody::Other(kind),
                })
            }
            None => return Err(AdapterError::MissingField("data")),
        };
        let body = match kind {
            code::BROADCAST => {
                let mut packet = Packet::from_value(data.required("packet")?)?;
                packet.nsp.clone_from(&nsp);
                let opts = BroadcastOpts::from_value(data.required("opts")?)?;
                match data.opt_string("requestId")? {
                    Some(request_id) => ClusterBody::Request(RequestBody::Broadcast {
                        request_id,
                        packet,
                        opts,
                    }),
                    None => ClusterBody::Broadcast { packet, opts },
                }
            }
            code::SOCKETS_JOIN | code::SOCKETS_LEAVE => {
                let opts = BroadcastOpts::from_value(data.required("opts")?)?;
                let rooms = data.rooms("rooms")?;
                ClusterBody::Request(if kind == code::SOCKETS_JOIN {
                    RequestBody::RemoteJoin { opts, rooms }
                } else {
                    RequestBody::RemoteLeave { opts, rooms }
                })
            }
            code::DISCONNECT_SOCKETS => ClusterBody::Request(RequestBody::RemoteDisconnect {
                opts: BroadcastOpts::from_value(data.required("opts")?)?,
                close: data.opt_bool("close")?.unwrap_or(false),
            }),
            code::FETCH_SOCKETS => ClusterBody::Request(RequestBody::RemoteFetch {
                request_id: data.string("requestId")?,
                opts: BroadcastOpts::from_value(data.required("opts")?)?,
            }),
            code::SERVER_SIDE_EMIT => ClusterBody::Request(RequestBody::ServerSideEmit {
                request_id: data.opt_string("requestId")?,
                data: match data.required("packet")? {
                    JsValue::Array(items) => items,
                    _ => return Err(wrong_type("packet", "an array")),
                },
            }),
            code::FETCH_SOCKETS_RESPONSE => {
                let request_id = data.string("requestId")?;
                let sockets = match data.take("sockets") {
                    None => Vec::new(),
                    Some(JsValue::Array(sockets)) => sockets
                        .into_iter()
                        .map(RemoteSocket::from_value)
                        .collect::<Result<_>>()?,
                    Some(_) => return Err(wrong_type("sockets", "an array")),
                };
                ClusterBody::Response(Response::RemoteFetch {
                    request_id,
                    sockets,
                })
            }
            code::SERVER_SIDE_EMIT_RESPONSE => ClusterBody::Response(Response::ServerSideEmit {
                request_id: data.string("requestId")?,
                data: data.take("packet").unwrap_or(JsValue::Null),
            }),
            code::BROADCAST_CLIENT_COUNT => ClusterBody::Response(Response::BroadcastClientCount {
                request_id: data.string("requestId")?,
                client_count: data
                    .opt_uint("clientCount")?
                    .ok_or(AdapterError::MissingField("clientCount"))?,
            }),
            code::BROADCAST_ACK => ClusterBody::Response(Response::BroadcastAck {
                request_id: data.string("requestId")?,
                packet: data.take("packet").unwrap_or(JsValue::Null),
            }),
            other => ClusterBody::Other(other),
        };
        Ok(ClusterMessage { uid, nsp, body })
    }

    /// Encodes as Node's sharded adapter does: keys `type, data, uid, nsp`, JSON unless the
    /// data holds binary. `None` for what the sharded adapter has no message for (ALL_ROOMS,
    /// the legacy per-socket requests, their responses, [`ClusterBody::Other`]).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let (kind, data) = self.body.wire()?;
        let binary = has_binary(&data);
        let message = JsValue::Map(vec![
            ("type".into(), JsValue::Int(kind)),
            ("data".into(), data),
            ("uid".into(), JsValue::Str(self.uid.clone())),
            ("nsp".into(), JsValue::Str(self.nsp.clone())),
        ]);
        Some(if binary {
            let mut w = MsgpackWriter::default();
            w.value(&message);
            w.into_vec()
        } else {
            to_json(&message)
        })
    }

    /// Whether this is a BROADCAST without acks, to exactly one room: the one message a
    /// `dynamic` sharded adapter publishes on the room's own channel (`computeChannel`).
    pub fn single_room(&self) -> Option<&str> {
        match &self.body {
            ClusterBody::Broadcast { opts, .. } => match opts.rooms.as_slice() {
                [room] => Some(room),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Whether a message of type `kind` needs its `data` to be understood.
fn handled(kind: i64) -> bool {
    (code::BROADCAST..=code::BROADCAST_ACK).contains(&kind)
}

impl ClusterBody {
    /// The wire type and `data`, in Node's key order.
    fn wire(&self) -> Option<(i64, JsValue)> {
        let str = |s: &str| JsValue::Str(s.to_owned());
        let rooms = |rooms: &[String]| JsValue::Array(rooms.iter().map(|r| str(r)).collect());
        let map = |entries: Vec<(&str, JsValue)>| {
            JsValue::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            )
        };
        Some(match self {
            ClusterBody::Broadcast { packet, opts } => (
                code::BROADCAST,
                map(vec![
                    ("packet", packet_value(packet)),
                    ("opts", opts_value(opts)),
                ]),
            ),
            ClusterBody::Request(request) => match request {
                RequestBody::Broadcast {
                    request_id,
                    packet,
                    opts,
                } => (
                    code::BROADCAST,
                    map(vec![
                        ("packet", packet_value(packet)),
                        ("requestId", str(request_id)),
                        ("opts", opts_value(opts)),
                    ]),
                ),
                RequestBody::RemoteJoin { opts, rooms: r } => (
                    code::SOCKETS_JOIN,
                    map(vec![("opts", opts_value(opts)), ("rooms", rooms(r))]),
                ),
                RequestBody::RemoteLeave { opts, rooms: r } => (
                    code::SOCKETS_LEAVE,
                    map(vec![("opts", opts_value(opts)), ("rooms", rooms(r))]),
                ),
                RequestBody::RemoteDisconnect { opts, close } => (
                    code::DISCONNECT_SOCKETS,
                    map(vec![
                        ("opts", opts_value(opts)),
                        ("close", JsValue::Bool(*close)),
                    ]),
                ),
                RequestBody::RemoteFetch { request_id, opts } => (
                    code::FETCH_SOCKETS,
                    map(vec![
                        ("opts", opts_value(opts)),
                        ("requestId", str(request_id)),
                    ]),
                ),
                RequestBody::ServerSideEmit { request_id, data } => {
                    let mut entries = Vec::with_capacity(2);
                    if let Some(id) = request_id {
                        entries.push(("requestId", str(id)));
                    }
                    entries.push(("packet", JsValue::Array(data.clone())));
                    (code::SERVER_SIDE_EMIT, map(entries))
                }
                RequestBody::Sockets { .. }
                | RequestBody::AllRooms { .. }
                | RequestBody::LegacyJoin { .. }
                | RequestBody::LegacyLeave { .. }
                | RequestBody::LegacyDisconnect { .. } => return None,
            },
            ClusterBody::Response(response) => match response {
                Response::RemoteFetch {
                    request_id,
                    sockets,
                } => (
                    code::FETCH_SOCKETS_RESPONSE,
                    map(vec![
                        ("requestId", str(request_id)),
                        (
                            "sockets",
                            JsValue::Array(sockets.iter().map(socket_value).collect()),
                        ),
                    ]),
                ),
                Response::ServerSideEmit { request_id, data } => (
                    code::SERVER_SIDE_EMIT_RESPONSE,
                    map(vec![
                        ("requestId", str(request_id)),
                        ("packet", data.clone()),
                    ]),
                ),
                Response::BroadcastClientCount {
                    request_id,
                    client_count,
                } => (
                    code::BROADCAST_CLIENT_COUNT,
                    map(vec![
                        ("requestId", str(request_id)),
                        (
                            "clientCount",
                            JsValue::Int(i64::try_from(*client_count).unwrap_or(i64::MAX)),
                        ),
                    ]),
                ),
                Response::BroadcastAck { request_id, packet } => (
                    code::BROADCAST_ACK,
                    map(vec![
                        ("requestId", str(request_id)),
                        ("packet", packet.clone()),
                    ]),
                ),
                Response::Sockets { .. } | Response::AllRooms { .. } | Response::Done { .. } => {
                    return None
                }
            },
            ClusterBody::Other(_) => return None,
        })
    }
}

/// The packet as the sharded adapter sends it: `{type, data}`, no `nsp`.
fn packet_value(packet: &Packet) -> JsValue {
    JsValue::Map(vec![
        ("type".into(), JsValue::Int(i64::from(packet.kind))),
        ("data".into(), packet.data.clone()),
    ])
}

fn opts_value(opts: &BroadcastOpts) -> JsValue {
    let list =
        |rooms: &[String]| JsValue::Array(rooms.iter().map(|r| JsValue::Str(r.clone())).collect());
    JsValue::Map(vec![
        ("rooms".into(), list(&opts.rooms)),
        ("except".into(), list(&opts.except)),
        ("flags".into(), flags_value(&opts.flags)),
    ])
}

fn flags_value(flags: &BroadcastFlags) -> JsValue {
    let mut entries = Vec::new();
    if flags.volatile {
        entries.push(("volatile".into(), JsValue::Bool(true)));
    }
    if let Some(compress) = flags.compress {
        entries.push(("compress".into(), JsValue::Bool(compress)));
    }
    if flags.local {
        entries.push(("local".into(), JsValue::Bool(true)));
    }
    if let Some(timeout) = flags.timeout {
        entries.push((
            "timeout".into(),
            JsValue::Int(i64::try_from(timeout).unwrap_or(i64::MAX)),
        ));
    }
    JsValue::Map(entries)
}

fn socket_value(socket: &RemoteSocket) -> JsValue {
    let mut entries = vec![
        ("id".into(), JsValue::Str(socket.id.clone())),
        ("handshake".into(), socket.handshake.clone()),
        (
            "rooms".into(),
            JsValue::Array(
                socket
                    .rooms
                    .iter()
                    .map(|r| JsValue::Str(r.clone()))
                    .collect(),
            ),
        ),
        ("data".into(), socket.data.clone()),
    ];
    if let Some(location) = &socket.location {
        entries.push((
            "shardio".into(),
            JsValue::Map(vec![
                ("machine".into(), JsValue::Str(location.machine.clone())),
                (
                    "shard".into(),
                    JsValue::Int(i64::try_from(location.shard).unwrap_or(i64::MAX)),
                ),
            ]),
        ));
    }
    JsValue::Map(entries)
}

/// socket.io-parser's `hasBinary`: a binary anywhere in the value.
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
    use crate::protocol::adapter::testdata::{assert_truncations_fail, payload};

    // Golden vectors: SPUBLISH payloads recorded from Node's sharded adapter 8.3.0
    // (`monitor-sharded.txt`).
    const BROADCAST_ALL: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["hello",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const BROADCAST_ROOM: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["r1","x"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const BROADCAST_BIN: &[u8] = b"\x84\xa4type\x03\xa4data\x82\xa6packet\x82\xa4type\x02\xa4data\x92\xa3bin\xc4\x02\x01\x02\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80\xa3uid\xb07c9575a35a19ed00\xa3nsp\xa1/";
    const FETCH: &[u8] = br#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"f6733b1875e0e38e"},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const JOIN: &[u8] = br#"{"type":4,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room9"]},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const SSE: &[u8] = br#"{"type":9,"data":{"requestId":"ee7a0d3618611bd7","packet":["srv","b"]},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const SSE_RESPONSE: &[u8] = br#"{"type":10,"data":{"requestId":"ee7a0d3618611bd7","packet":"pong-from-s2"},"uid":"a9270ac7d3586723","nsp":"/"}"#;
    const BROADCAST_WITH_ACK: &[u8] = br#"{"type":3,"data":{"packet":{"type":2,"data":["r-ack",42]},"requestId":"8432ba810f75ff74","opts":{"rooms":["room1"],"except":[],"flags":{"timeout":1000}}},"uid":"7c9575a35a19ed00","nsp":"/"}"#;
    const CLIENT_COUNT: &[u8] = br#"{"type":11,"data":{"requestId":"8432ba810f75ff74","clientCount":1},"uid":"a9270ac7d3586723","nsp":"/"}"#;
    const ACK: &[u8] = br#"{"type":12,"data":{"requestId":"8432ba810f75ff74","packet":"client-ack"},"uid":"a9270ac7d3586723","nsp":"/"}"#;
    const DISCONNECT: &[u8] = br#"{"type":6,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"close":false},"uid":"7c9575a35a19ed00","nsp":"/"}"#;

    const ALL: &[&[u8]] = &[
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

    #[test]
    fn node_messages_encode_back_byte_for_byte() {
        for capture in ALL {
            let message = ClusterMessage::decode(&payload(capture)).unwrap();
            assert_eq!(
                message.encode().as_deref(),
                Some(*capture),
                "{}",
                String::from_utf8_lossy(capture)
            );
        }
    }

    #[test]
    fn messages_read_as_the_classic_types() {
        let m = ClusterMessage::decode(&payload(BROADCAST_BIN)).unwrap();
        assert_eq!(m.uid, "7c9575a35a19ed00");
        let ClusterBody::Broadcast { packet, opts } = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(packet.nsp, "/");
        assert_eq!(
            packet.data,
            JsValue::Array(vec![
                JsValue::Str("bin".into()),
                JsValue::Bin(Bytes::from_static(&[1, 2]))
            ])
        );
        assert!(opts.rooms.is_empty());
        assert_eq!(m.single_room(), None);
        let room = ClusterMessage::decode(&payload(BROADCAST_ROOM)).unwrap();
        assert_eq!(room.single_room(), Some("room1"));
        let with_ack = ClusterMessage::decode(&payload(BROADCAST_WITH_ACK)).unwrap();
        assert!(matches!(
            with_ack.body,
            ClusterBody::Request(RequestBody::Broadcast { ref request_id, ref opts, .. })
                if request_id == "8432ba810f75ff74" && opts.flags.timeout == Some(1000)
        ));
        assert_eq!(with_ack.single_room(), None);
        let count = ClusterMessage::decode(&payload(CLIENT_COUNT)).unwrap();
        assert_eq!(
            count.body,
            ClusterBody::Response(Response::BroadcastClientCount {
                request_id: "8432ba810f75ff74".into(),
                client_count: 1
            })
        );
        let sse = ClusterMessage::decode(&payload(SSE)).unwrap();
        assert_eq!(
            sse.body,
            ClusterBody::Request(RequestBody::ServerSideEmit {
                request_id: Some("ee7a0d3618611bd7".into()),
                data: vec![JsValue::Str("srv".into()), JsValue::Str("b".into())]
            })
        );
    }

    #[test]
    fn other_types_are_read_and_never_written() {
        let heartbeat = br#"{"type":2,"uid":"7c9575a35a19ed00","nsp":"/"}"#;
        let m = ClusterMessage::decode(&payload(heartbeat)).unwrap();
        assert_eq!(m.body, ClusterBody::Other(2));
        assert_eq!(m.encode(), None);
        let all_rooms = ClusterMessage {
            body: ClusterBody::Request(RequestBody::AllRooms {
                request_id: "x".into(),
            }),
            ..m
        };
        assert_eq!(all_rooms.encode(), None);
    }

    #[test]
    fn bad_messages_are_errors() {
        assert_truncations_fail(ALL, ClusterMessage::decode);
        for bad in [
            &br#"{"type":3,"uid":"u","nsp":"/"}"#[..],
            br#"{"type":3,"data":[],"uid":"u"}"#,
            br#"{"type":9,"data":{"packet":"x"},"uid":"u"}"#,
            br#"{"data":{},"uid":"u"}"#,
            b"\x93\x01\x02\x03",
        ] {
            assert!(ClusterMessage::decode(&payload(bad)).is_err());
        }
    }
}
