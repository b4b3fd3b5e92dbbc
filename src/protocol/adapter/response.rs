//! Responses on the response channel: JSON, except BROADCAST_ACK (9), which is a msgpack map
//! because the ack may carry binary.

use bytes::Bytes;
use serde::Serialize;

use super::fields::{into_string, wrong_type, Fields};
use super::msgpack::MsgpackWriter;
use super::request::RequestType;
use super::value::to_json;
use super::{AdapterError, JsValue, Result};

/// One socket in a REMOTE_FETCH response; Node builds a `RemoteSocket` from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// `{headers, time, address, xdomain, secure, issued, url, query, auth}` (`docs/PROTOCOL.md`
    /// §2.4).
    pub handshake: JsValue,
    /// The rooms it is in, its own id included.
    pub rooms: Vec<String>,
    /// The application's `socket.data`.
    pub data: JsValue,
    /// Where a shardio server holds the socket: an extra `shardio` key that Node's adapter
    /// ignores (it reads `id`, `handshake`, `rooms` and `data` only). `None` from Node servers.
    #[serde(rename = "shardio", skip_serializing_if = "Option::is_none")]
    pub location: Option<RemoteLocation>,
}

/// The machine and shard of a socket held by a shardio server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteLocation {
    /// The server's `--node-name`.
    pub machine: String,
    /// The shard that owns the socket.
    pub shard: u64,
}

impl RemoteLocation {
    /// The location in a decoded `shardio` value; `None` when absent or not of this shape
    /// (another server's extension is ignored, never an error).
    fn from_value(value: Option<&JsValue>) -> Option<Self> {
        let machine = match value?.get("machine")? {
            JsValue::Str(machine) => machine.clone(),
            _ => return None,
        };
        let shard = match value?.get("shard")? {
            JsValue::Int(shard) => u64::try_from(*shard).ok()?,
            _ => return None,
        };
        Some(RemoteLocation { machine, shard })
    }
}

/// A message on [`Channels::response`](super::Channels::response) (or
/// [`Channels::specific_response`](super::Channels::specific_response)). Route it by
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
        let mut fields = Fields::of_payload(payload, "response")?;
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
                return w.into_vec();
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

/// A socket as a value, keys `id, handshake, rooms, data` (then `shardio` when known), for the
/// msgpack cluster messages.
pub(super) fn remote_socket_value(socket: &RemoteSocket) -> JsValue {
    let mut entries = vec![
        ("id".to_owned(), JsValue::Str(socket.id.clone())),
        ("handshake".to_owned(), socket.handshake.clone()),
        (
            "rooms".to_owned(),
            JsValue::Array(socket.rooms.iter().cloned().map(JsValue::Str).collect()),
        ),
        ("data".to_owned(), socket.data.clone()),
    ];
    if let Some(at) = &socket.location {
        let shard = i64::try_from(at.shard).unwrap_or(i64::MAX);
        let location = JsValue::Map(vec![
            ("machine".to_owned(), JsValue::Str(at.machine.clone())),
            ("shard".to_owned(), JsValue::Int(shard)),
        ]);
        entries.push(("shardio".to_owned(), location));
    }
    JsValue::Map(entries)
}

impl RemoteSocket {
    pub(super) fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "sockets")?;
        Ok(RemoteSocket {
            id: fields.string("id")?,
            handshake: fields.take("handshake").unwrap_or(JsValue::Null),
            rooms: fields.rooms("rooms")?,
            data: fields.take("data").unwrap_or(JsValue::Null),
            location: RemoteLocation::from_value(fields.take("shardio").as_ref()),
        })
    }
}

// JSON shape. Field order is Node's key order; absent fields are left out.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::*;
    use crate::protocol::adapter::{Request, RequestBody};

    #[test]
    fn a_shardio_location_rides_in_an_extra_key_node_ignores() {
        let with = RemoteSocket {
            id: "a".into(),
            handshake: JsValue::Map(Vec::new()),
            rooms: vec!["a".into()],
            data: JsValue::Map(Vec::new()),
            location: Some(RemoteLocation {
                machine: "m1".into(),
                shard: 3,
            }),
        };
        let response = Response::RemoteFetch {
            request_id: "r".into(),
            sockets: vec![with.clone()],
        };
        let bytes = response.encode();
        assert!(String::from_utf8_lossy(&bytes)
            .contains(r#""data":{},"shardio":{"machine":"m1","shard":3}}"#));
        assert_eq!(Response::decode(&Bytes::from(bytes)).unwrap(), response);
        // Another shape under the key is ignored, not an error.
        let odd = br#"{"requestId":"r","sockets":[{"id":"a","handshake":{},"rooms":[],"data":{},"shardio":7}]}"#;
        let Response::RemoteFetch { sockets, .. } =
            Response::decode(&Bytes::from_static(odd)).unwrap()
        else {
            panic!("a fetch response");
        };
        assert_eq!(sockets[0].location, None);
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

    #[test]
    fn every_truncation_of_a_golden_response_is_an_error() {
        assert_truncations_fail(
            &[ACK_RESPONSE, FETCH_RESPONSE, CLIENT_COUNT_RESPONSE],
            Response::decode,
        );
    }

    #[test]
    fn wrong_types_in_responses_are_errors() {
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
}
