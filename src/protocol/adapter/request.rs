//! Requests on the request channel: JSON, except BROADCAST (7), which is a msgpack map because
//! its packet may carry binary.

use bytes::Bytes;
use serde::Serialize;

use super::broadcast::{BroadcastOpts, JsonOpts, Packet};
use super::fields::{into_room, wrong_type, Fields};
use super::msgpack::MsgpackWriter;
use super::value::to_json;
use super::{AdapterError, JsValue, Result};

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

/// A message on [`Channels::request`](super::Channels::request).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The requesting node's uid. The emitter's join, leave and disconnect requests carry none.
    pub uid: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// The request proper. Which ones must be answered, and how often, is in `docs/PROTOCOL.md`
/// §3.4.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// SOCKETS (0): answer [`Response::Sockets`](super::Response::Sockets) with the ids of local
    /// sockets in `rooms`.
    Sockets {
        /// Echoed in the response.
        request_id: String,
        /// Rooms to look in; empty means all.
        rooms: Vec<String>,
    },
    /// ALL_ROOMS (1): answer [`Response::AllRooms`](super::Response::AllRooms).
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
    /// [`Response::Done`](super::Response::Done).
    LegacyJoin {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// The room to join.
        room: String,
    },
    /// Legacy REMOTE_LEAVE `{sid, room, requestId}`: the node holding `sid` answers
    /// [`Response::Done`](super::Response::Done).
    LegacyLeave {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// The room to leave.
        room: String,
    },
    /// Legacy REMOTE_DISCONNECT `{sid, close, requestId}`: the node holding `sid` answers
    /// [`Response::Done`](super::Response::Done).
    LegacyDisconnect {
        /// Echoed in the response.
        request_id: String,
        /// The socket.
        sid: String,
        /// Also close the underlying connection.
        close: bool,
    },
    /// REMOTE_FETCH (5): answer [`Response::RemoteFetch`](super::Response::RemoteFetch) with the
    /// matching local sockets. Flags are not sent.
    RemoteFetch {
        /// Echoed in the response.
        request_id: String,
        /// The sockets.
        opts: BroadcastOpts,
    },
    /// SERVER_SIDE_EMIT (6): `[ev, ...args]` for the server-side listeners. With a request id,
    /// answer once with [`Response::ServerSideEmit`](super::Response::ServerSideEmit) (only the
    /// first ack argument travels).
    ServerSideEmit {
        /// Present when the sender waits for acks.
        request_id: Option<String>,
        /// The event name and arguments.
        data: Vec<JsValue>,
    },
    /// BROADCAST (7), msgpack: deliver `packet` locally with acks, answer exactly one
    /// [`Response::BroadcastClientCount`](super::Response::BroadcastClientCount) (even for 0
    /// clients), then one [`Response::BroadcastAck`](super::Response::BroadcastAck) per client ack.
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
        let mut fields = Fields::of_payload(payload, "request")?;
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
                return w.into_vec();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::*;
    use crate::protocol::adapter::{BroadcastFlags, Response, EMITTER_UID, MAX_DEPTH};

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

    #[test]
    fn every_truncation_of_a_golden_request_is_an_error() {
        assert_truncations_fail(
            &[
                BROADCAST_ACK_REQUEST,
                FETCH_REQUEST,
                JOIN_REQUEST,
                EMITTER_DISCONNECT,
            ],
            Request::decode,
        );
    }

    #[test]
    fn wrong_types_in_requests_are_errors() {
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
    }

    #[test]
    fn deep_json_requests_are_rejected() {
        // JSON requests: serde_json's own limit or ours, but never a stack overflow.
        for depth in [MAX_DEPTH, 100_000] {
            let json = format!(
                r#"{{"uid":"u","type":6,"data":{}0{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert!(Request::decode(&Bytes::from(json)).is_err());
        }
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
}
