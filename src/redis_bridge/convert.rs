//! Between the Socket.IO layer's values (JSON in placeholder form plus attachments) and the
//! adapter codec's [`JsValue`]s. Pure.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::bus::cluster::{BroadcastOpts, SocketInfo, SocketLocation};
use crate::protocol::adapter::{self, AdapterError, JsValue, RemoteLocation, RemoteSocket};
use crate::protocol::socketio::Payload;

/// `[event, ...args]`, binaries back in place, as Node's adapter carries an EVENT's data.
pub(crate) fn event_data(event: &str, data: &Payload) -> Result<JsValue, AdapterError> {
    let mut items = Vec::with_capacity(1 + data.args.len());
    items.push(JsValue::Str(event.to_owned()));
    for arg in &data.args {
        items.push(JsValue::from_placeholder_json(arg, &data.bins)?);
    }
    Ok(JsValue::Array(items))
}

/// An EVENT's data split into its name and payload; `None` unless it is an array whose first
/// item is a string (or a number, which JavaScript turns into one).
pub(crate) fn split_event(data: JsValue) -> Option<(String, Payload)> {
    let JsValue::Array(mut items) = data else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    let event = match items.remove(0) {
        JsValue::Str(s) => s,
        JsValue::Int(i) => i.to_string(),
        _ => return None,
    };
    let (args, bins) = JsValue::Array(items).into_placeholder_json();
    let Value::Array(args) = args else {
        return None;
    };
    Some((event, Payload { args, bins }))
}

/// One value (an ack argument) as a payload of one argument.
pub(crate) fn payload_of(value: JsValue) -> Payload {
    let (arg, bins) = value.into_placeholder_json();
    Payload {
        args: vec![arg],
        bins,
    }
}

/// The first argument of a payload, as Node forwards an ack (only the first travels).
pub(crate) fn first_arg(payload: &Payload) -> JsValue {
    JsValue::from_placeholder_json(payload.first(), &payload.bins).unwrap_or(JsValue::Null)
}

/// Plain JSON as a JsValue, `_placeholder` objects left alone (client-supplied data such as
/// `auth` is not in placeholder form).
fn plain(value: &Value) -> JsValue {
    JsValue::deserialize(value).unwrap_or(JsValue::Null)
}

pub(crate) fn remote_socket(info: SocketInfo) -> RemoteSocket {
    RemoteSocket {
        handshake: plain(&info.handshake),
        data: plain(&info.data),
        id: info.id,
        rooms: info.rooms,
        location: info.location.map(|l| RemoteLocation {
            machine: l.machine,
            shard: l.shard as u64,
        }),
    }
}

pub(crate) fn socket_info(socket: RemoteSocket) -> SocketInfo {
    SocketInfo {
        handshake: serde_json::to_value(&socket.handshake).unwrap_or(Value::Null),
        data: serde_json::to_value(&socket.data).unwrap_or(Value::Null),
        id: socket.id,
        rooms: socket.rooms,
        location: socket.location.and_then(|l| {
            Some(SocketLocation {
                machine: l.machine,
                shard: usize::try_from(l.shard).ok()?,
            })
        }),
    }
}

pub(crate) fn wire_opts(opts: &BroadcastOpts, timeout_ms: Option<u64>) -> adapter::BroadcastOpts {
    adapter::BroadcastOpts {
        rooms: dedup(&opts.rooms),
        except: dedup(&opts.except),
        flags: adapter::BroadcastFlags {
            volatile: opts.volatile,
            timeout: timeout_ms,
            ..adapter::BroadcastFlags::default()
        },
    }
}

/// Node holds rooms in a Set: the wire carries each once.
fn dedup(rooms: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(rooms.len());
    for room in rooms {
        if !out.contains(room) {
            out.push(room.clone());
        }
    }
    out
}

pub(crate) fn local_opts(opts: adapter::BroadcastOpts) -> BroadcastOpts {
    BroadcastOpts {
        rooms: opts.rooms,
        except: opts.except,
        volatile: opts.flags.volatile,
        // Delivered here only: what came from Redis is never published again.
        local: true,
    }
}

/// Bytes of a received message, shared by the binaries decoded from it.
pub(crate) fn payload_bytes(msg: &redis::Msg) -> Bytes {
    Bytes::copy_from_slice(msg.get_payload_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_cross_with_their_binaries_in_place() {
        let data = Payload::new().arg(json!({"k": 1})).bin(vec![1u8, 2, 3]);
        let js = event_data("ev", &data).expect("valid placeholders");
        assert_eq!(
            js,
            JsValue::Array(vec![
                JsValue::Str("ev".into()),
                JsValue::Map(vec![("k".into(), JsValue::Int(1))]),
                JsValue::Bin(Bytes::from_static(&[1, 2, 3])),
            ])
        );
        let (event, back) = split_event(js).expect("an event");
        assert_eq!(event, "ev");
        assert_eq!(back, data);
    }

    #[test]
    fn non_events_are_refused() {
        assert!(split_event(JsValue::Null).is_none());
        assert!(split_event(JsValue::Array(Vec::new())).is_none());
        assert!(split_event(JsValue::Array(vec![JsValue::Bool(true)])).is_none());
        let (event, payload) = split_event(JsValue::Array(vec![JsValue::Int(7)])).expect("ok");
        assert_eq!((event.as_str(), payload.args.len()), ("7", 0));
    }

    #[test]
    fn bogus_placeholders_from_the_application_are_an_error_not_a_panic() {
        let data = Payload::from(json!({"_placeholder": true, "num": 3}));
        assert!(event_data("ev", &data).is_err());
        assert_eq!(first_arg(&data), JsValue::Null);
    }

    #[test]
    fn client_auth_that_looks_like_a_placeholder_stays_plain() {
        let info = SocketInfo {
            id: "x".into(),
            handshake: json!({"auth": {"_placeholder": true, "num": 0}}),
            rooms: vec!["x".into()],
            data: json!({}),
            location: Some(SocketLocation {
                machine: "m".into(),
                shard: 2,
            }),
        };
        let remote = remote_socket(info.clone());
        assert_eq!(socket_info(remote), info, "the location crosses Redis too");
    }

    #[test]
    fn opts_map_both_ways_and_rooms_are_a_set() {
        let opts = BroadcastOpts {
            rooms: vec!["a".into(), "a".into()],
            except: vec!["b".into()],
            volatile: true,
            local: false,
        };
        let wire = wire_opts(&opts, Some(1000));
        assert_eq!(wire.rooms, ["a"]);
        assert!(wire.flags.volatile);
        assert_eq!(wire.flags.timeout, Some(1000));
        let back = local_opts(wire);
        assert_eq!(back.rooms, ["a"]);
        assert_eq!(back.except, ["b"]);
        assert!(back.volatile && back.local);
    }
}
