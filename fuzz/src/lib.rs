//! The checks of shardio's fuzz targets, one function per target: each takes any bytes, runs
//! them through a decoder the server runs on input from the network, and panics only when an
//! invariant breaks (the decoders themselves must never panic, whatever the bytes).
//!
//! The same functions run in the normal test command on every file of `fuzz/corpus/<target>/`
//! (`tests/it/fuzz_corpus.rs` includes this file), so the corpus, and every crash turned into a
//! corpus file, is checked without cargo-fuzz or a nightly compiler.
//!
//! Inputs that carry settings besides the bytes under test (a size limit, how the bytes are
//! split into reads) take them from their first bytes, so the fuzzer explores them too.

use bytes::Bytes;
use serde_json::Value;
use shardio::config::defaults;
use shardio::fuzz::{ws_read, WsEvent};
use shardio::protocol::adapter::{AdapterError, BroadcastMessage, JsValue, Request, Response};
use shardio::protocol::engineio::{self, EncodedPacket, PayloadPacket};
use shardio::protocol::http::{self, ChunkedDecoder, ChunkedError};
use shardio::protocol::socketio::{self, PacketType, Payload};

/// A target's check: any bytes in; panics only when an invariant breaks.
pub type Check = fn(&[u8]);

/// The checks by target name, as the corpus folders are named.
pub const TARGETS: &[(&str, Check)] = &[
    ("engineio", engineio),
    ("socketio", socketio),
    ("http_head", http_head),
    ("http_chunked", http_chunked),
    ("ws_frames", ws_frames),
    ("adapter", adapter),
];

/// Engine.IO: the input as a WebSocket text frame (one packet) and as a polling body (a
/// payload of packets). What decodes is written back to the same bytes.
pub fn engineio(data: &[u8]) {
    // Both transports hand the decoders text that is valid UTF-8, or close the session.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(engineio::Packet::Text(ty, rest)) = engineio::decode_text(text) {
        let mut out = Vec::new();
        engineio::encode_text(ty, rest, &mut out);
        assert_eq!(out, data, "a text packet is written back as it came");
    }
    let streamed: Vec<_> = engineio::payload_packets(text).collect();
    match engineio::decode_payload(text) {
        Ok(packets) => {
            assert!(streamed.iter().all(Result::is_ok));
            let mut out = Vec::new();
            for packet in &packets {
                let mut text_packet = Vec::new();
                let encoded = match packet {
                    PayloadPacket::Text(ty, rest) => {
                        engineio::encode_text(*ty, rest, &mut text_packet);
                        EncodedPacket::Text(&text_packet)
                    }
                    PayloadPacket::Binary(bin) => EncodedPacket::Binary(bin),
                };
                let before = out.len() + usize::from(!out.is_empty());
                engineio::append_to_payload(&mut out, encoded);
                assert_eq!(out.len() - before, encoded.payload_len());
            }
            assert_eq!(out, data, "a payload is written back as it came");
        }
        Err(e) => {
            // The streaming form delivers the packets before the first bad one, then stops there.
            let first_err = streamed.iter().position(Result::is_err);
            assert_eq!(first_err.map(|i| &streamed[i]), Some(&Err(e)));
        }
    }
}

/// The most attachments a packet may announce (`SocketIoConfig::max_attachments`'s default).
const MAX_ATTACHMENTS: usize = 10;

/// Socket.IO: the input is a packet's text, then its binary attachments, separated by `0xff`
/// (which UTF-8 text never holds; attachments are opaque bytes to the decoder, so that theirs
/// cannot hold it either loses nothing). Assembled as `socketio::client` does; what decodes is
/// written back and decodes the same, and its data crosses to the Redis adapter's form and
/// back.
pub fn socketio(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xff);
    let Some(Ok(text)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(packet) = socketio::decode(text, MAX_ATTACHMENTS) else {
        return;
    };
    assert!(packet.attachments <= MAX_ATTACHMENTS);
    assert!(packet.nsp.starts_with('/'), "{:?}", packet.nsp);

    // Written back with the encoder the server uses, it decodes to the same packet.
    let mut again = Vec::new();
    socketio::encode_header(
        packet.ty,
        packet.nsp,
        packet.id,
        packet.attachments,
        &mut again,
    );
    if let Some(data) = &packet.data {
        socketio::write_json(data, &mut again);
    }
    let again = std::str::from_utf8(&again).expect("the encoder writes UTF-8");
    let decoded = socketio::decode(again, MAX_ATTACHMENTS).expect("what is written decodes");
    assert_eq!(
        (decoded.ty, decoded.nsp, decoded.id, decoded.attachments),
        (packet.ty, packet.nsp, packet.id, packet.attachments),
        "{text:?} -> {again:?}"
    );
    assert!(
        same_json_opt(&decoded.data, &packet.data),
        "{text:?} -> {again:?}"
    );

    // The attachments, as the client collects them; only a complete packet goes on.
    let bins: Vec<Bytes> = parts
        .take(packet.attachments)
        .map(Bytes::copy_from_slice)
        .collect();
    if bins.len() < packet.attachments {
        return;
    }
    let data = packet.data.unwrap_or(Value::Null);
    let in_range = socketio::placeholders_in_range(&data, bins.len());

    // What the server accepted from a client can be published through Redis (MAX_DEPTH is
    // serde_json's own limit), and the two placeholder checks agree.
    match JsValue::from_placeholder_json(&data, &bins) {
        Ok(value) => {
            assert!(
                in_range,
                "the adapter accepts what the client check refused"
            );
            let (json, attachments) = value.into_placeholder_json();
            assert!(socketio::placeholders_in_range(&json, attachments.len()));
            // After one pass the form is settled: placeholders numbered in order, integral
            // numbers integers.
            let (json2, attachments2) = JsValue::from_placeholder_json(&json, &attachments)
                .expect("the adapter reads its own placeholder form")
                .into_placeholder_json();
            assert_eq!(json2, json);
            assert_eq!(attachments2, attachments);
        }
        Err(AdapterError::IllegalAttachment) => assert!(!in_range),
        Err(e) => panic!("client data the adapter cannot carry: {e}"),
    }

    // An event is fanned out as frames: the text packet, then one frame per attachment.
    if let (PacketType::Event | PacketType::BinaryEvent, Some(Value::String(event))) =
        (packet.ty, data.get(0))
    {
        if in_range {
            let args = data.as_array().map_or(&[][..], |a| &a[1..]).to_vec();
            let payload = Payload {
                args,
                bins: bins.clone(),
            };
            let frames = socketio::event_frames(packet.nsp, event, packet.id, &payload);
            assert_eq!(frames.len(), 1 + bins.len());
            let wire = std::str::from_utf8(&frames[0].payload()[1..]).expect("UTF-8");
            let out = socketio::decode(wire, MAX_ATTACHMENTS).expect("a fanned out event decodes");
            assert_eq!(out.attachments, bins.len());
        }
    }
}

/// Whether two optional JSON values are equal, floats within a rounding step (serde_json's
/// default float parser may land one step away from the shortest form it printed).
fn same_json_opt(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_json(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

/// HTTP request heads: the input as the bytes a connection received, under the default limits,
/// tight ones, and a header count past the stack slots (parsed on the heap). A complete head
/// was incomplete one byte earlier; the accessors the router and Engine.IO use hold up.
pub fn http_head(data: &[u8]) {
    let limits = [
        (defaults::MAX_HEAD_BYTES, defaults::MAX_HEADERS),
        (64, 2),
        (defaults::MAX_HEAD_BYTES, 4 * defaults::MAX_HEADERS),
    ];
    for (max_head, max_headers) in limits {
        match http::parse_head(data, max_head, max_headers) {
            Ok(Some((head, used))) => {
                assert!(used > 0 && used <= data.len() && used <= max_head);
                assert!(matches!(
                    http::parse_head(&data[..used - 1], max_head, max_headers),
                    Ok(None)
                ));
                assert!(head.headers.len() <= max_headers);
                for (name, _) in &head.headers {
                    assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
                }
                let _ = head.body_framing();
                let _ = head.keep_alive();
                let _ = head.is_websocket_upgrade();
                let _ = head.header_has_token("connection", "upgrade");
                for key in ["EIO", "transport", "sid", "t"] {
                    let _ = head.query_param(key);
                }
            }
            Ok(None) => assert!(data.len() < max_head),
            Err(_) => {}
        }
    }
    let _ = http::percent_decode(&String::from_utf8_lossy(data));
}

/// Chunked request bodies: `[limit selector, split seed, body...]`. Fed in one read or in
/// many, the decoder gives the same body, error and end, never more than its limit.
pub fn http_chunked(data: &[u8]) {
    let [limit, seed, body @ ..] = data else {
        return;
    };
    // `--max-payload` takes any size: no limit at all is a setting too.
    let limit = [0, 1, 16, 1_000, 1_000_000, usize::MAX][usize::from(*limit) % 6];
    let whole = chunked(limit, [body]);
    let split = chunked(limit, pieces(body, *seed));
    assert_eq!(
        whole, split,
        "the body depends on how it was split into reads"
    );
    assert!(whole.1.len() <= limit);
}

/// Decodes a body from `reads` as `connection` does: until it ends or fails. Returns the
/// result, the body, and the bytes used when it did not fail.
fn chunked<'a>(
    limit: usize,
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> (Result<bool, ChunkedError>, Vec<u8>, usize) {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut out = Vec::new();
    let mut used = 0;
    for read in reads {
        match decoder.decode(read, &mut out) {
            Ok(n) => {
                assert!(n <= read.len());
                used += n;
                if n < read.len() {
                    // Only the end of the body leaves bytes for the next request.
                    assert!(decoder.is_done());
                    break;
                }
            }
            Err(e) => return (Err(e), out, 0),
        }
    }
    (Ok(decoder.is_done()), out, used)
}

/// The longest frame header (2 + 8 length bytes + 4 mask bytes) and control payload.
const FRAME_OVERHEAD: usize = 14 + 125;

/// WebSocket frames from a client: `[max_payload selector, split seed, stream...]`. Fed in one
/// read or in many, the reader makes the same messages, replies and close; it never holds more
/// than a message's limit (plus a header and a control frame), and never delivers more.
pub fn ws_frames(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max_payload =
        [0, 1, 125, 126, 1_000, 65_536, 1_000_000, usize::MAX][usize::from(*limit) % 8];
    let whole = ws_read(max_payload, [stream]);
    let split = ws_read(max_payload, pieces(stream, *seed));
    assert_eq!(
        whole.events, split.events,
        "the frames depend on how they were split into reads"
    );
    for run in [&whole, &split] {
        assert!(
            run.max_buffered <= max_payload.saturating_add(FRAME_OVERHEAD),
            "{} bytes held for messages of {max_payload}",
            run.max_buffered
        );
    }
    for event in &whole.events {
        match event {
            WsEvent::Message(_, message) => assert!(message.len() <= max_payload),
            // A server control frame: 2 header bytes and at most 125 of payload.
            WsEvent::Control(wire) => assert!(wire.len() <= 127),
            WsEvent::Closed(_) => {}
        }
    }
}

/// Splits `data` into reads of 1 to 64 bytes, their sizes drawn from `seed`.
fn pieces(data: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (1 + state as usize % 64).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// The Redis adapter's messages, as the bridge receives them from other servers: the input as
/// a broadcast, a request and a response. What decodes is written back and decodes again, to
/// the same message kind and request; in msgpack (exact, unlike JSON's floats), to the same
/// bytes.
pub fn adapter(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(message) = BroadcastMessage::decode(&payload) {
        written_back(
            &message,
            BroadcastMessage::encode,
            BroadcastMessage::decode,
            |m| m.uid.clone(),
        );
    }
    if let Ok(request) = Request::decode(&payload) {
        written_back(&request, Request::encode, Request::decode, |r| {
            format!("{:?} {:?}", r.request_type(), r.request_id())
        });
    }
    if let Ok(response) = Response::decode(&payload) {
        written_back(&response, Response::encode, Response::decode, |r| {
            r.request_id().to_owned()
        });
    }
}

fn written_back<T, K: PartialEq + std::fmt::Debug>(
    decoded: &T,
    encode: fn(&T) -> Vec<u8>,
    decode: fn(&Bytes) -> Result<T, AdapterError>,
    key: fn(&T) -> K,
) {
    let written = encode(decoded);
    let again = decode(&Bytes::from(written.clone()))
        .unwrap_or_else(|e| panic!("what shardio writes decodes: {e}"));
    assert_eq!(key(&again), key(decoded));
    if written.first() != Some(&b'{') {
        assert_eq!(encode(&again), written);
    }
}
