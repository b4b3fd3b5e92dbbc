//! Micro-benchmarks of shardio's hot-path pieces, each measured alone, without sockets.
//!
//! Groups (filter with a substring or regex of `group/name`):
//!
//! - `engineio`: Engine.IO text packet decode and encode, polling payload decode (text records
//!   and a `b`+base64 record) and encode (`append_to_payload` over queued frames, as the
//!   polling transport builds a GET answer), a 1 KiB binary to and from base64.
//! - `socketio_decode`: `protocol::socketio::decode` of an event with an ack id (the load
//!   generator's `publish`), a binary event header with one placeholder, an invalid packet
//!   (truncated JSON, refused after the JSON parse).
//! - `socketio_encode`: what `socketio::socket::event_frames` does (not public, so rebuilt here
//!   from `OutFrame::text` + `encode_header` + `encode_event_args`): the gateway's delivery of
//!   `["bench",[p,s,t]]`, and an event with two 1 KiB attachments (text frame + binary frames).
//! - `http`: `protocol::http::parse_head` of socket.io-client's WebSocket upgrade and of a
//!   polling GET, and the upgrade plus the query lookups the router makes.
//! - `outframe`: `OutFrame` building at each WebSocket header size (payload < 126, 126..=65535,
//!   70 KB) and the refcount clone every recipient of a broadcast gets.
//! - `room_select`: `RoomIndex::select` over `Sid` members, each with an `Rc` standing for the
//!   session the index hands to the delivery loop (each socket also in its own id room, as
//!   Socket.IO does): 1 room of 1,000; the same except the publisher's id (the gateway's
//!   `socket.broadcast().to(room)`); 3 overlapping rooms (1,350 selected of 2,500 visited) with
//!   an except room; the whole namespace of 10,000 except one socket id. Throughput is in
//!   selected members.
//! - `sid`: `SidGenerator::next_sid`, `Sid::parse`, `Sid::shard`.
//! - `adapter`: `BroadcastMessage` decode and encode, for the classic adapter's captured
//!   `io.emit("hello", 1, "two", {three: 3})` and for a broadcast carrying a 4 KiB binary.
//! - `bus`: `Bus::send` from this thread to shard 1's inbox, drained on another thread by a
//!   current-thread runtime with `recv_many(.., 64)` as `shard::read_inbox` does; one iteration
//!   is a batch of 64 messages (each a boxed `Arc`, like a remote broadcast), throughput is
//!   messages per second. The sender keeps at most the inbox capacity in flight, so it measures
//!   the accepted path, never the overflow path.
//!
//! Not here: the writer's batching (`engineio::queue::OutQueue`) is private to the crate;
//! `flamegraphs/fanout.svg` shows its share under real load instead.
//!
//! Running (figures, with their machine and commit: `benches/MICRO.md`):
//!
//! ```sh
//! cargo bench --bench micro                     # everything, about 2 minutes once built
//! cargo bench --bench micro -- room_select      # one group
//! cargo bench --bench micro -- 'socketio_(de|en)code/event'
//! cargo bench --bench micro -- --warm-up-time 3 --measurement-time 10   # steadier figures
//! ```
//!
//! Defaults are short (1 s warm-up, 2 s measurement, 50 samples) because the development
//! machine is a shared 2-core box; command-line flags override them. The figure to quote is the
//! median (`target/criterion/<group>/<name>/new/estimates.json`), with the machine, kernel and
//! commit next to it. Under `cargo test --all-targets` criterion runs every benchmark once, as a
//! smoke test.

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustc_hash::FxBuildHasher;
use serde_json::json;

use shardio::bench::{self as internals, RoomIndex};
use shardio::config::defaults;
use shardio::engineio::{FrameKind, OutFrame, Sid, SidGenerator};
use shardio::protocol::adapter::{
    BroadcastFlags, BroadcastMessage, BroadcastOpts, JsValue, Packet as AdapterPacket,
};
use shardio::protocol::engineio::{self as eio, EncodedPacket, PacketType as EioType};
use shardio::protocol::http::parse_head;
use shardio::protocol::socketio::{self as sio, PacketType as SioType, Payload};

/// What the load generator publishes (`shardio-bench` `sio::publish_packet`), inside `4`.
const PUBLISH: &str =
    r#"2123["publish",{"to":"room-3","event":"bench","data":[4,1234,1795606024820123]}]"#;

// ---------------------------------------------------------------------------------------------
// Engine.IO

fn engineio(c: &mut Criterion) {
    let mut g = c.benchmark_group("engineio");
    let text = format!("4{PUBLISH}");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("decode_text", |b| {
        b.iter(|| eio::decode_text(black_box(&text)))
    });
    g.bench_function("encode_text", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            eio::encode_text(EioType::Message, black_box(PUBLISH), &mut out);
            black_box(&out);
        })
    });

    // A polling POST: a ping answer, two events and a 1 KiB attachment.
    let bin = vec![0xa5u8; 1024];
    let mut b64 = Vec::new();
    eio::encode_binary_for_polling(&bin, &mut b64);
    let b64 = String::from_utf8(b64).expect("base64 is ASCII");
    let payload = format!("3\x1e4{PUBLISH}\x1e451-[\"up\",{{\"_placeholder\":true,\"num\":0}}]\x1e{b64}\x1e4{PUBLISH}");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("payload_decode_5_packets", |b| {
        b.iter(|| eio::decode_payload(black_box(&payload)))
    });

    // A polling GET answer: the frames queued for the session, joined as the polling
    // transport's `take_batch` does with `append_to_payload`.
    let frames = vec![
        OutFrame::text(64, |b| b.extend_from_slice(b"2")),
        OutFrame::text(128, |b| {
            b.extend_from_slice(format!("4{PUBLISH}").as_bytes())
        }),
        OutFrame::text(128, |b| {
            b.extend_from_slice(b"451-[\"up\",{\"_placeholder\":true,\"num\":0}]")
        }),
        OutFrame::binary(&bin),
        OutFrame::text(128, |b| {
            b.extend_from_slice(format!("4{PUBLISH}").as_bytes())
        }),
    ];
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("payload_encode_5_packets", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            for f in black_box(&frames) {
                let packet = match f.kind() {
                    FrameKind::Binary => EncodedPacket::Binary(f.payload()),
                    _ => EncodedPacket::Text(f.payload()),
                };
                eio::append_to_payload(&mut out, packet);
            }
            black_box(&out);
        })
    });

    g.throughput(Throughput::Bytes(bin.len() as u64));
    g.bench_function("binary_1k_to_b64", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            eio::encode_binary_for_polling(black_box(&bin), &mut out);
            black_box(&out);
        })
    });
    g.bench_function("binary_1k_from_b64", |b| {
        b.iter(|| eio::decode_payload(black_box(&b64)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Socket.IO

fn socketio_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio_decode");
    let cases = [
        ("event_with_ack", PUBLISH),
        (
            "binary_event_header",
            r#"51-/chat,7["upload",{"name":"a.png"},{"_placeholder":true,"num":0}]"#,
        ),
        (
            "invalid_truncated_json",
            r#"2123["publish",{"to":"room-3","event":"bench","data":[4,1234"#,
        ),
    ];
    for (name, input) in cases {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| sio::decode(black_box(input), defaults::MAX_ATTACHMENTS))
        });
    }
    g.finish();
}

/// `socketio::socket::packet_frames` for an EVENT, rebuilt from the public pieces.
fn event_frames(nsp: &str, event: &str, ack: Option<u64>, data: &Payload) -> Vec<OutFrame> {
    let mut frames = Vec::with_capacity(1 + data.bins.len());
    frames.push(OutFrame::text(64, |b| {
        b.push(b'4');
        sio::encode_header(SioType::Event, nsp, ack, data.bins.len(), b);
        sio::encode_event_args(event, &data.args, b);
    }));
    frames.extend(data.bins.iter().map(|bin| OutFrame::binary(bin)));
    frames
}

fn socketio_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio_encode");
    // What the gateway delivers for the load generator's publish: `data` is one argument.
    let plain = Payload::from(json!([4, 1234, 1_795_606_024_820_123u64]));
    g.bench_function("event_gateway_delivery", |b| {
        b.iter(|| event_frames("/", "bench", None, black_box(&plain)))
    });
    let nested =
        Payload::from(json!({"user": "ann", "text": "hello there", "tags": ["a", "b"], "n": 17}));
    g.bench_function("event_object_with_ack_nsp", |b| {
        b.iter(|| event_frames("/chat", "message", Some(42), black_box(&nested)))
    });
    let with_bins = Payload::new()
        .arg(json!({"name": "a.png"}))
        .bin(vec![1u8; 1024])
        .bin(vec![2u8; 1024]);
    g.bench_function("event_2_attachments_1k", |b| {
        b.iter(|| event_frames("/", "upload", None, black_box(&with_bins)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// HTTP

const WS_UPGRADE: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
Host: 127.0.0.1:3000\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:3000\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: UWfyaKrIxCE43s2NKUPQEQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

const POLLING_GET: &[u8] =
    b"GET /socket.io/?EIO=4&transport=polling&t=PQxh2Ak&sid=lv_VI97HAXpY6yYWAAAC HTTP/1.1\r\n\
Host: 127.0.0.1:3000\r\n\
Connection: keep-alive\r\n\
Accept: */*\r\n\
User-Agent: node\r\n\
Accept-Encoding: gzip, deflate\r\n\
\r\n";

fn http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(WS_UPGRADE.len() as u64));
    g.bench_function("parse_head_ws_upgrade", |b| {
        b.iter(|| parse_head(black_box(WS_UPGRADE), 16 * 1024, 100))
    });
    g.bench_function("parse_head_ws_upgrade_and_route", |b| {
        b.iter(|| {
            let (head, _) = parse_head(black_box(WS_UPGRADE), 16 * 1024, 100)
                .ok()
                .flatten()
                .expect("a complete head");
            (
                head.is_websocket_upgrade(),
                head.query_param("EIO"),
                head.query_param("transport"),
                head.query_param("sid"),
                head.header("sec-websocket-key").map(str::len),
            )
        })
    });
    g.throughput(Throughput::Bytes(POLLING_GET.len() as u64));
    g.bench_function("parse_head_polling_get", |b| {
        b.iter(|| parse_head(black_box(POLLING_GET), 16 * 1024, 100))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Outbound frames

fn outframe(c: &mut Criterion) {
    let mut g = c.benchmark_group("outframe");
    let small = br#"42["bench",[4,1234,1795606024820123]]"#;
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("text_small_2byte_header", |b| {
        b.iter(|| OutFrame::text(64, |buf| buf.extend_from_slice(black_box(small))))
    });
    for (name, len) in [
        ("binary_1000_4byte_header", 1000usize),
        ("binary_70k_10byte_header", 70_000),
    ] {
        let data = vec![7u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| b.iter(|| OutFrame::binary(black_box(&data))));
    }
    let text_1000 = vec![b'x'; 1000];
    g.throughput(Throughput::Bytes(1000));
    g.bench_function("text_1000_4byte_header", |b| {
        b.iter(|| OutFrame::text(1000, |buf| buf.extend_from_slice(black_box(&text_1000))))
    });
    let frame = OutFrame::text(64, |buf| buf.extend_from_slice(small));
    g.throughput(Throughput::Elements(1));
    g.bench_function("clone_for_one_recipient", |b| {
        b.iter(|| black_box(&frame).clone())
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Rooms

/// Stands for the `Rc<Session>` the index keeps per member: one pointer to follow.
type Reach = Rc<u64>;

/// A namespace on one shard: every socket id (with how to reach it, like `NsShard::sockets`),
/// and the room index with each socket in its own id room plus `rooms_of(i)`.
struct Namespace {
    ids: Vec<Sid>,
    everyone: HashMap<Sid, Reach, FxBuildHasher>,
    rooms: RoomIndex<Sid, Reach>,
}

impl Namespace {
    fn new(sockets: usize, rooms_of: impl Fn(usize) -> Vec<String>) -> Self {
        let mut gen = SidGenerator::new(0);
        let mut ns = Namespace {
            ids: Vec::with_capacity(sockets),
            everyone: Default::default(),
            rooms: RoomIndex::default(),
        };
        for i in 0..sockets {
            let id = gen.next_sid();
            let reach = Rc::new(i as u64);
            ns.rooms.join(id, &reach, id.as_str());
            for room in rooms_of(i) {
                ns.rooms.join(id, &reach, &room);
            }
            ns.ids.push(id);
            ns.everyone.insert(id, reach);
        }
        ns
    }

    fn count(&self, rooms: &[String], except: &[String]) -> u64 {
        let mut n = 0u64;
        let everyone = self.everyone.iter().map(|(sid, reach)| (*sid, reach));
        self.rooms.select(rooms, except, everyone, |sid, reach| {
            black_box((sid, **reach));
            n += 1;
        });
        n
    }
}

fn room_select(c: &mut Criterion) {
    let mut g = c.benchmark_group("room_select");

    let one = Namespace::new(1000, |_| vec!["room-0".into()]);
    let room = vec!["room-0".to_string()];
    let none: Vec<String> = Vec::new();
    g.throughput(Throughput::Elements(one.count(&room, &none)));
    g.bench_function("one_room_1000", |b| {
        b.iter(|| one.count(black_box(&room), &none))
    });
    let publisher = vec![one.ids[0].as_str().to_string()];
    g.throughput(Throughput::Elements(one.count(&room, &publisher)));
    g.bench_function("one_room_1000_except_publisher", |b| {
        b.iter(|| one.count(black_box(&room), &publisher))
    });

    // 3,000 sockets, socket i in rooms i/500 and i/500 + 1 of a..g: a holds 500 sockets, b and c
    // 1,000 each, b overlapping a and c by 500; the union (1,500) less every 10th socket, which
    // is in the except room "muted", is 1,350 selected of 2,500 visited.
    let names = ["a", "b", "c", "d", "e", "f", "g"];
    let three = Namespace::new(3000, |i| {
        let mut r = vec![names[i / 500].to_string(), names[i / 500 + 1].to_string()];
        if i % 10 == 0 {
            r.push("muted".into());
        }
        r
    });
    let abc: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let muted = vec!["muted".to_string()];
    g.throughput(Throughput::Elements(three.count(&abc, &muted)));
    g.bench_function("three_overlapping_rooms_except_room", |b| {
        b.iter(|| three.count(black_box(&abc), &muted))
    });

    let all = Namespace::new(10_000, |i| vec![format!("room-{}", i % 10)]);
    let except_one = vec![all.ids[1234].as_str().to_string()];
    g.throughput(Throughput::Elements(all.count(&none, &except_one)));
    g.bench_function("namespace_10000_except_one_id", |b| {
        b.iter(|| all.count(black_box(&none), &except_one))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Ids

fn sid(c: &mut Criterion) {
    let mut g = c.benchmark_group("sid");
    let mut gen = SidGenerator::new(3);
    g.bench_function("generate", |b| b.iter(|| gen.next_sid()));
    let text = gen.next_sid().to_string();
    g.bench_function("parse", |b| b.iter(|| Sid::parse(black_box(&text))));
    let id = Sid::parse(&text).expect("a generated id parses");
    g.bench_function("shard", |b| b.iter(|| black_box(id).shard()));
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Redis adapter messages

/// `io.emit("hello", 1, "two", {three: 3})` as redis-adapter 8.3.0 published it on
/// `socket.io#/#` (recorded from Node, docs/PROTOCOL.md §3.2; `BROADCAST_ALL` in the
/// adapter's tests).
const CLASSIC_BROADCAST: &[u8] = b"\x93\xa6b3oKUz\x83\xa4type\x02\xa4data\x94\xa5hello\x01\xa3two\x81\xa5three\x03\xa3nsp\xa1/\x83\xa5rooms\x90\xa6except\x90\xa5flags\x80";

fn adapter(c: &mut Criterion) {
    let mut g = c.benchmark_group("adapter");
    let classic = Bytes::from_static(CLASSIC_BROADCAST);
    let decoded = BroadcastMessage::decode(&classic).expect("the capture decodes");
    assert_eq!(
        decoded.encode(),
        CLASSIC_BROADCAST,
        "encode reproduces Node"
    );
    g.throughput(Throughput::Bytes(classic.len() as u64));
    g.bench_function("classic_decode", |b| {
        b.iter(|| BroadcastMessage::decode(black_box(&classic)))
    });
    g.bench_function("classic_encode", |b| {
        b.iter(|| black_box(&decoded).encode())
    });

    let with_bin = BroadcastMessage {
        uid: "b3oKUz".into(),
        packet: AdapterPacket {
            kind: 2,
            data: JsValue::Array(vec![
                JsValue::Str("upload".into()),
                JsValue::Map(vec![("name".into(), JsValue::Str("a.png".into()))]),
                JsValue::Bin(Bytes::from(vec![0x5au8; 4096])),
            ]),
            nsp: "/".into(),
        },
        opts: BroadcastOpts {
            rooms: vec!["room1".into()],
            except: vec!["lv_VI97HAXpY6yYWAAAC".into()],
            flags: BroadcastFlags::default(),
        },
    };
    let encoded = Bytes::from(with_bin.encode());
    assert_eq!(
        BroadcastMessage::decode(&encoded).expect("round trip"),
        with_bin
    );
    g.throughput(Throughput::Bytes(encoded.len() as u64));
    g.bench_function("bin_4k_decode", |b| {
        b.iter(|| BroadcastMessage::decode(black_box(&encoded)))
    });
    g.bench_function("bin_4k_encode", |b| {
        b.iter(|| black_box(&with_bin).encode())
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Bus

/// Messages per benchmark iteration; also what the receiver takes per `recv_many`.
const BUS_BATCH: u64 = 64;

fn bus(c: &mut Criterion) {
    // A remote broadcast travels as an Arc of its frames, as the fan-out sends it.
    let frames = vec![OutFrame::text(64, |b| {
        b.extend_from_slice(br#"42["bench",[4,1234,1795606024820123]]"#)
    })];
    let (bus, mut inbox) = internals::bus(defaults::BUS_CAPACITY, frames);
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    // Shard 1: drains its inbox like `shard::read_inbox`, dropping what it got; it stops when
    // the bus (the only sender) is dropped.
    let receiver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        rt.block_on(async move {
            loop {
                let n = inbox.recv_many(BUS_BATCH as usize).await;
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Release);
            }
        });
    });
    let window = defaults::BUS_CAPACITY as u64;

    let mut g = c.benchmark_group("bus");
    g.throughput(Throughput::Elements(BUS_BATCH));
    g.bench_function("send_to_other_thread_batch64", |b| {
        b.iter_custom(|iters| {
            let total = iters * BUS_BATCH;
            let base = received.load(Ordering::Acquire);
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                // Never more than the inbox holds in flight: the accepted path only.
                while sent - (received.load(Ordering::Acquire) - base) >= window {
                    std::thread::yield_now();
                }
                assert!(
                    bus.send_broadcast(),
                    "the inbox refused a message inside its capacity"
                );
                sent += 1;
            }
            while received.load(Ordering::Acquire) - base < total {
                std::thread::yield_now();
            }
            start.elapsed()
        });
    });
    g.finish();
    drop(bus);
    receiver.join().expect("the receiver thread");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = micro;
    config = config();
    targets = engineio, socketio_decode, socketio_encode, http, outframe, room_select, sid,
        adapter, bus
}
criterion_main!(micro);
