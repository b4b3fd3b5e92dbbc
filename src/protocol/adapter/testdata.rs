//! Golden vectors and helpers shared by the tests of several files.
//!
//! The vectors are PUBLISH payloads recorded from Node's redis-adapter 8.3.0 and redis-emitter
//! 5.1.0 (the capture `monitor-classic.txt`), namespace `/` unless noted.

use bytes::Bytes;

use super::msgpack::MsgpackWriter;
use super::{BroadcastFlags, BroadcastOpts, JsValue, Packet};

/// `io.emit("hello", 1, "two", {three: 3})` on `socket.io#/#`.
pub(super) const BROADCAST_ALL: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x94\xa5hello\x01\xa3two\x81\xa5three\x03\xa3nsp\xa1/\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80";
/// `io.to("room1").emit("bin", Buffer.from([1, 2, 3]))` on `socket.io#/#room1#`.
pub(super) const BROADCAST_ROOM_BIN: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x92\xa3bin\xc4\x03\x01\x02\x03\xa3nsp\xa1/\x83\xa5rooms\x91\xa5room1\xa6except\x90\xa5flags\x80";
/// `io.volatile.to(["room1", "room2"]).except("room3").emit("multi", "x")` on `socket.io#/#`.
pub(super) const BROADCAST_VOLATILE: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x92\xa5multi\xa1x\xa3nsp\xa1/\x83\xa5rooms\x92\xa5room1\xa5room2\xa6except\x91\xa5room3\xa5flags\x81\xa8volatile\xc3";
pub(super) const FETCH_REQUEST: &[u8] =
    br#"{"uid":"b3oKUz","requestId":"yQ97m8","type":5,"opts":{"rooms":["room1"],"except":[]}}"#;
pub(super) const FETCH_RESPONSE: &[u8] = br#"{"requestId":"yQ97m8","sockets":[{"id":"sdJSO-722w6C27AaAAAA","handshake":{"headers":{"sec-websocket-version":"13","sec-websocket-key":"UWfyaKrIxCE43s2NKUPQEQ==","connection":"Upgrade","upgrade":"websocket","sec-websocket-extensions":"permessage-deflate; client_max_window_bits","host":"127.0.0.1:3002"},"time":"Wed Nov 25 2026 11:27:04 GMT+0000 (Coordinated Universal Time)","address":"::ffff:127.0.0.1","xdomain":false,"secure":false,"issued":1795606024820,"url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{}},"rooms":["sdJSO-722w6C27AaAAAA","room1"],"data":{}}]}"#;
pub(super) const JOIN_REQUEST: &[u8] =
    br#"{"uid":"b3oKUz","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room9"]}"#;
pub(super) const SSE_REQUEST: &[u8] = br#"{"uid":"b3oKUz","type":6,"data":["srv","a",1]}"#;
pub(super) const SSE_ACK_REQUEST: &[u8] =
    br#"{"uid":"b3oKUz","requestId":"Im5Lvc","type":6,"data":["srv","b"]}"#;
pub(super) const SSE_RESPONSE: &[u8] = br#"{"type":6,"requestId":"Im5Lvc","data":"pong-from-s2"}"#;
/// `io.timeout(1000).to("room1").emit("r-ack", 42, cb)`.
pub(super) const BROADCAST_ACK_REQUEST: &[u8] = b"\x85\xa3uid\xa6b3oKUz\xa9requestId\xa6tovZCT\xa4type\x07\xa6packet\x83\xa4type\x02\xa4data\x92\xa5r-ack*\xa3nsp\xa1/\xa4opts\x83\xa5rooms\x91\xa5room1\xa6except\x90\xa5flags\x81\xa7timeout\xcd\x03\xe8";
pub(super) const CLIENT_COUNT_RESPONSE: &[u8] =
    br#"{"type":8,"requestId":"tovZCT","clientCount":1}"#;
pub(super) const ACK_RESPONSE: &[u8] =
    b"\x83\xa4type\x09\xa9requestId\xa6tovZCT\xa6packet\xaaclient-ack";
pub(super) const ALL_ROOMS_REQUEST: &[u8] = br#"{"uid":"b3oKUz","requestId":"CsX7GI","type":1}"#;
pub(super) const ALL_ROOMS_RESPONSE: &[u8] =
    br#"{"requestId":"CsX7GI","rooms":["sdJSO-722w6C27AaAAAA","room1","room9"]}"#;
/// Emitter: `to("room1").emit("fromEmitter", "hi", Buffer.from([9]))`; keys rooms,flags,except.
pub(super) const EMITTER_BROADCAST_ROOM: &[u8] = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x93\xabfromEmitter\xa2hi\xc4\x01\x09\xa3nsp\xa1/\x83\xa5rooms\x91\xa5room1\xa5flags\x80\xa6except\x90";
/// Emitter: `of("/admin").emit("adminEvt", 1)` on `socket.io#/admin#`.
pub(super) const EMITTER_BROADCAST_ADMIN: &[u8] = b"\x93\xa7emitter\x83\xa4type\x02\xa4data\x92\xa8adminEvt\x01\xa3nsp\xa6/admin\x83\xa5rooms\x90\xa5flags\x80\xa6except\x90";
pub(super) const EMITTER_SSE: &[u8] =
    br#"{"uid":"emitter","type":6,"data":["srv","from-emitter"]}"#;
pub(super) const EMITTER_LEAVE: &[u8] =
    br#"{"type":3,"opts":{"rooms":["room1"],"except":[]},"rooms":["room9"]}"#;
pub(super) const EMITTER_DISCONNECT: &[u8] =
    br#"{"type":4,"opts":{"rooms":[],"except":[]},"close":true}"#;

/// Asserts that `decode` refuses every strict prefix of each capture.
pub(super) fn assert_truncations_fail<T, E>(
    captures: &[&[u8]],
    decode: impl Fn(&Bytes) -> Result<T, E>,
) {
    for capture in captures {
        for len in 0..capture.len() {
            let cut = Bytes::copy_from_slice(&capture[..len]);
            assert!(decode(&cut).is_err(), "{len} bytes");
        }
    }
}

pub(super) fn payload(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

pub(super) fn s(text: &str) -> JsValue {
    JsValue::Str(text.to_owned())
}

pub(super) fn bin(bytes: &'static [u8]) -> JsValue {
    JsValue::Bin(Bytes::from_static(bytes))
}

pub(super) fn map(entries: &[(&str, JsValue)]) -> JsValue {
    JsValue::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

pub(super) fn pack(value: &JsValue) -> Bytes {
    let mut w = MsgpackWriter::default();
    w.value(value);
    Bytes::from(w.into_vec())
}

pub(super) fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOpts {
    BroadcastOpts {
        rooms: strings(rooms),
        except: strings(except),
        flags: BroadcastFlags::default(),
    }
}

pub(super) fn event(nsp: &str, data: Vec<JsValue>) -> Packet {
    Packet {
        kind: 2,
        data: JsValue::Array(data),
        nsp: nsp.to_owned(),
    }
}

/// Dates and their `toISOString()`.
pub(super) const DATE_CASES: &[(i64, &str)] = &[
    (960_854_400_000, "2000-06-13T00:00:00.000Z"),
    (1_795_606_024_820, "2026-11-25T11:27:04.820Z"),
    (0, "1970-01-01T00:00:00.000Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (951_782_400_000, "2000-02-29T00:00:00.000Z"),
    (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
    (-62_198_755_200_000, "-000001-01-01T00:00:00.000Z"),
];
