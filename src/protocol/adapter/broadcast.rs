//! Broadcasts: msgpack `[uid, {type, data, nsp}, {rooms, except, flags}]`, and the packet and
//! targets that BROADCAST requests carry too.

use bytes::Bytes;
use serde::Serialize;

use super::fields::{into_string, non_null, wrong_type, Fields};
use super::msgpack::{decode_msgpack, MsgpackWriter};
use super::{JsValue, Result};

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

/// A broadcast published on [`Channels::publish_channel`](super::Channels::publish_channel):
/// msgpack `[uid, packet, opts]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The sending node's uid ([`EMITTER_UID`](super::EMITTER_UID) for the emitter); receivers drop
    /// their own.
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
        w.into_vec()
    }
}

impl Packet {
    pub(super) fn from_value(value: JsValue) -> Result<Self> {
        let mut fields = Fields::of(value, "packet")?;
        let kind = fields.integer("type")?;
        let kind = u8::try_from(kind).map_err(|_| wrong_type("type", "a packet type"))?;
        let data = fields.take("data").unwrap_or(JsValue::Null);
        let nsp = fields.opt_string("nsp")?.unwrap_or_else(|| "/".to_owned());
        Ok(Packet { kind, data, nsp })
    }

    pub(super) fn write(&self, w: &mut MsgpackWriter) {
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
    pub(super) fn from_value(value: JsValue) -> Result<Self> {
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

    pub(super) fn write(&self, w: &mut MsgpackWriter) {
        w.map_len(3);
        w.str("rooms");
        w.str_array(&self.rooms);
        w.str("except");
        w.str_array(&self.except);
        w.str("flags");
        self.flags.write(w);
    }

    /// `{rooms, except, flags}` as a value, for the cluster messages (flags in [`Self::write`]'s
    /// order).
    pub(super) fn to_value(&self) -> JsValue {
        let names = |r: &[String]| JsValue::Array(r.iter().cloned().map(JsValue::Str).collect());
        let f = &self.flags;
        let mut flags = Vec::new();
        if f.volatile {
            flags.push(("volatile".to_owned(), JsValue::Bool(true)));
        }
        if let Some(compress) = f.compress {
            flags.push(("compress".to_owned(), JsValue::Bool(compress)));
        }
        if f.local {
            flags.push(("local".to_owned(), JsValue::Bool(true)));
        }
        if let Some(timeout) = f.timeout {
            let ms = i64::try_from(timeout).unwrap_or(i64::MAX);
            flags.push(("timeout".to_owned(), JsValue::Int(ms)));
        }
        JsValue::Map(vec![
            ("rooms".to_owned(), names(&self.rooms)),
            ("except".to_owned(), names(&self.except)),
            ("flags".to_owned(), JsValue::Map(flags)),
        ])
    }

    pub(super) fn json(&self) -> JsonOpts<'_> {
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

/// [`BroadcastOpts`] in JSON requests, which leave the flags out, as Node does.
#[derive(Serialize)]
pub(super) struct JsonOpts<'a> {
    rooms: &'a [String],
    except: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::*;
    use crate::protocol::adapter::{AdapterError, Channels, DEFAULT_PREFIX, EMITTER_UID};

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
    fn every_truncation_of_a_golden_broadcast_is_an_error() {
        assert_truncations_fail(
            &[
                BROADCAST_ALL,
                BROADCAST_ROOM_BIN,
                BROADCAST_VOLATILE,
                EMITTER_BROADCAST_ROOM,
                EMITTER_BROADCAST_ADMIN,
            ],
            BroadcastMessage::decode,
        );
    }

    fn broadcast_error(message: JsValue) -> AdapterError {
        BroadcastMessage::decode(&pack(&message)).unwrap_err()
    }

    #[test]
    fn wrong_types_in_broadcasts_are_errors() {
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
    }
}
