//! Rooms, the cross-shard broadcast bus and the gateway app (join / leave / publish) on a real
//! 4-shard server.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::aclient::AClient;
use common::{Frame, TestServer};
use serde_json::{json, Value};
use shardio::engineio::EngineConfig;
use shardio::gateway::endpoints as default_endpoints;
use shardio::protocol::socketio::Payload;
use shardio::socketio::{BroadcastAckError, SocketIo, SocketIoConfig};
use shardio::{Config, Endpoint};

fn gateway_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["shardio"];
    args.extend_from_slice(extra);
    let config = <Config as clap::Parser>::parse_from(args);
    TestServer::start(4, default_endpoints(&config, None))
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Parses `42["m",{"p":..,"s":..}]` into (publisher, seq).
fn parse_m(text: &str) -> Option<(usize, usize)> {
    let v: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
    (v[0] == "m").then(|| {
        (
            v[1]["p"].as_u64().unwrap() as usize,
            v[1]["s"].as_u64().unwrap() as usize,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_eligible_socket_gets_every_publish_exactly_once_in_order() {
    let server = gateway_server(&[]);
    const CLIENTS: usize = 200;
    const ROOMS: usize = 10;
    const PUBLISHES: usize = 1000;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(AClient::connect(server.addr, "/").await);
    }
    let shards_used = server
        .metrics
        .shards()
        .iter()
        .filter(|s| s.sessions_open() > 0)
        .count();
    assert_eq!(shards_used, 4, "200 clients must land on every shard");

    // Overlapping rooms: each client is in one or two of ten rooms.
    let mut members: Vec<HashSet<usize>> = vec![HashSet::new(); ROOMS];
    for (i, c) in clients.iter_mut().enumerate() {
        let rooms: Vec<String> = [i % ROOMS, (i * 7 + 3) % ROOMS]
            .iter()
            .map(|r| format!("r{r}"))
            .collect();
        for r in [i % ROOMS, (i * 7 + 3) % ROOMS] {
            members[r].insert(i);
        }
        assert_eq!(
            c.call("", 1, "join", json!(rooms)).await,
            json!({"ok": true})
        );
    }

    // Expected deliveries: members of `to`, minus members of `except`, minus the publisher.
    let mut rng = Lcg(42);
    let mut expected: Vec<HashMap<usize, Vec<usize>>> = vec![HashMap::new(); CLIENTS];
    let mut seq = vec![0usize; CLIENTS];
    let mut total = 0;
    for _ in 0..PUBLISHES {
        let p = rng.next(CLIENTS);
        let to: Vec<usize> = (0..1 + rng.next(2)).map(|_| rng.next(ROOMS)).collect();
        let except: Vec<usize> = (0..rng.next(2)).map(|_| rng.next(ROOMS)).collect();
        let s = seq[p];
        seq[p] += 1;
        let mut receivers: HashSet<usize> = to
            .iter()
            .flat_map(|r| members[*r].iter().copied())
            .collect();
        for r in &except {
            for m in &members[*r] {
                receivers.remove(m);
            }
        }
        receivers.remove(&p);
        for r in receivers {
            expected[r].entry(p).or_default().push(s);
            total += 1;
        }
        let req = json!({
            "to": to.iter().map(|r| format!("r{r}")).collect::<Vec<_>>(),
            "except": except.iter().map(|r| format!("r{r}")).collect::<Vec<_>>(),
            "event": "m",
            "data": {"p": p, "s": s},
        });
        clients[p].send(&format!("42{}", json!(["publish", req])));
    }
    assert!(
        total > 10_000,
        "the test should exercise many deliveries, got {total}"
    );

    // Every client reads until it has all it expects, then a little longer for extras.
    let mut readers = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let want: usize = expected[i].values().map(Vec::len).sum();
        readers.push(tokio::spawn(async move {
            let mut got: HashMap<usize, Vec<usize>> = HashMap::new();
            let mut n = 0;
            while n < want {
                match c.recv().await {
                    Frame::Text(t) => {
                        if let Some((p, s)) = parse_m(&t) {
                            got.entry(p).or_default().push(s);
                            n += 1;
                        }
                    }
                    other => panic!("client {i}: unexpected {other:?}"),
                }
            }
            // A fixed window on purpose: that no extra (duplicate) delivery comes is the check,
            // and 200 publishers leave no one marker that would end it.
            while let Some(Frame::Text(t)) = c.try_recv(Duration::from_millis(200)).await {
                if let Some((p, s)) = parse_m(&t) {
                    got.entry(p).or_default().push(s);
                }
            }
            (got, c)
        }));
    }
    let mut clients = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let (got, c) = r.await.expect("reader");
        assert_eq!(
            got, expected[i],
            "client {i}: deliveries differ (missing, extra, duplicate or reordered)"
        );
        clients.push(c);
    }

    // Leave and disconnect remove membership.
    let room0: Vec<usize> = members[0].iter().copied().collect();
    let (leaver, quitter, publisher) = (room0[0], room0[1], room0[2]);
    assert_eq!(
        clients[leaver].call("", 2, "leave", json!("r0")).await,
        json!({"ok": true})
    );
    // The quitter's DISCONNECT, then a new CONNECT on the same connection: its shard handles
    // a connection's packets in order, so once the CONNECT is answered the old socket has left
    // its rooms (the new one is in none, and gets namespace-wide publishes).
    let quitter_id = clients[quitter].sid.clone();
    clients[quitter].send("41");
    clients[quitter].send("40");
    let reply = clients[quitter].recv_text().await;
    assert!(reply.starts_with(r#"40{"sid":""#), "{reply}");
    for (id, event, to) in [(3, "after", Some("r0")), (4, "end", None)] {
        let req = json!({"to": to, "event": event, "data": 1});
        assert_eq!(
            clients[publisher].call("", id, "publish", req).await,
            json!({"ok": true})
        );
    }
    // "end" went to the whole namespace after "after" went to r0, from the same publisher:
    // deliveries keep its order, so what a member got before "end" is all it gets of "after".
    for &m in &room0 {
        if m == publisher {
            continue;
        }
        let mut before_end = Vec::new();
        loop {
            let t = clients[m].recv_text().await;
            if t == r#"42["end",1]"# {
                break;
            }
            before_end.push(t);
        }
        let should = m != leaver && m != quitter;
        let want = if should {
            vec![r#"42["after",1]"#.to_string()]
        } else {
            Vec::new()
        };
        assert_eq!(
            before_end, want,
            "client {m} (leaver {leaver}, quitter {quitter_id})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_the_whole_namespace_and_carries_binary() {
    let server = gateway_server(&["--namespace", "/chat"]);
    let mut a = AClient::connect(server.addr, "/").await;
    let mut b = AClient::connect(server.addr, "/").await;
    let mut other_ns = AClient::connect(server.addr, "/chat").await;
    // No `to`: the whole namespace, except the sender.
    a.send(r#"42["publish",{"event":"hello","data":{"x":1}}]"#);
    assert_eq!(b.recv_text().await, r#"42["hello",{"x":1}]"#);
    // Binary data crosses intact.
    a.send(r#"451-["publish",{"event":"bin","data":{"blob":{"_placeholder":true,"num":0}}}]"#);
    a.send_binary(&[1, 2, 3]);
    assert_eq!(
        b.recv_text().await,
        r#"451-["bin",{"blob":{"_placeholder":true,"num":0}}]"#
    );
    assert_eq!(b.recv().await, Frame::Binary(vec![1, 2, 3]));
    // Nothing leaks to another namespace, and the sender got nothing back: fixed windows on
    // purpose, since that nothing arrives is the check.
    assert!(other_ns
        .try_recv(Duration::from_millis(200))
        .await
        .is_none());
    assert!(a.try_recv(Duration::from_millis(100)).await.is_none());
    // The other namespace works on its own.
    let mut c = AClient::connect(server.addr, "/chat").await;
    let req = json!({"event": "in-chat", "data": "hi"});
    assert_eq!(
        c.call("/chat,", 7, "publish", req).await,
        json!({"ok": true})
    );
    assert_eq!(other_ns.recv_text().await, r#"42/chat,["in-chat","hi"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_acks_not_crashes() {
    let server = gateway_server(&["--max-rooms-per-socket", "3"]);
    let mut c = AClient::connect(server.addr, "/").await;
    let long = "x".repeat(256);
    for (event, arg, needle) in [
        ("join", json!(""), "room names"),
        ("join", json!(long), "room names"),
        ("join", json!(12), "room name"),
        ("join", json!(["a", 5]), "room name"),
        ("join", json!(["a", "b", "c", "d"]), "at most 3 rooms"),
        ("leave", json!({}), "room name"),
        ("publish", json!("nope"), "object"),
        ("publish", json!({"to": "a"}), "event"),
        ("publish", json!({"event": "disconnect"}), "reserved"),
        ("publish", json!({"event": "x", "to": [""]}), "room names"),
        ("publish", json!({"event": "x", "except": 3}), "room name"),
    ] {
        let answer = c.call("", 1, event, arg.clone()).await;
        let error = answer["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "{event} {arg}: {answer}");
    }
    assert_eq!(
        c.call("", 2, "join", json!(["a", "b", "c"])).await,
        json!({"ok": true})
    );
    assert_eq!(
        c.call("", 3, "join", json!("a")).await,
        json!({"ok": true}),
        "rejoining is free"
    );
    assert!(c.call("", 4, "join", json!("d")).await["error"].is_string());
    let utf8 = "é".repeat(127); // 254 bytes
    assert_eq!(
        c.call("", 5, "leave", json!("c")).await,
        json!({"ok": true})
    );
    assert_eq!(
        c.call("", 6, "join", json!(utf8)).await,
        json!({"ok": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_and_the_room_loses_nothing() {
    const MESSAGES: usize = 800;
    let server = gateway_server(&["--max-buffered-bytes", "262144"]);
    // The slow client joins, then never reads again.
    let slow = stalled_client(server.addr, r#"421["join","r"]"#);
    let mut healthy = Vec::new();
    for _ in 0..4 {
        let mut c = AClient::connect(server.addr, "/").await;
        assert_eq!(c.call("", 1, "join", json!("r")).await, json!({"ok": true}));
        healthy.push(c);
    }
    // Healthy clients count what they got; the publisher stays a few messages ahead of the
    // slowest of them, so their queues stay far below the limit however loaded the machine is,
    // while the stalled client's queue grows until it passes the limit.
    const WINDOW: usize = 4;
    let progress: Vec<Arc<std::sync::atomic::AtomicUsize>> =
        (0..healthy.len()).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for (mut c, got) in healthy.into_iter().zip(progress.iter().cloned()) {
        readers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while seqs.len() < MESSAGES {
                match c.recv().await {
                    Frame::Text(t) => {
                        if let Some((_, s)) = parse_m(&t) {
                            seqs.push(s);
                            got.store(seqs.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    other => panic!("healthy client got {other:?}"),
                }
            }
            seqs
        }));
    }
    let publisher = AClient::connect(server.addr, "/").await;
    let blob = "z".repeat(16 * 1024);
    for s in 0..MESSAGES {
        let slowest = || {
            progress
                .iter()
                .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
                .min()
                .unwrap_or(0)
        };
        common::wait_until_async("the healthy clients to keep up", || slowest() + WINDOW >= s)
            .await;
        publisher.send(&format!(
            "42{}",
            json!(["publish", {"to": "r", "event": "m", "data": {"p": 0, "s": s, "blob": blob}}])
        ));
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), (0..MESSAGES).collect::<Vec<_>>());
    }
    server.wait_until("the slow consumer to be counted", |m| {
        m.shards().iter().map(|s| s.slow_consumers()).sum::<u64>() == 1
    });
    drop(slow);
}

/// A blocking client with a tiny receive buffer that sends `join` (awaiting its ack), then
/// reads nothing until the test does.
fn stalled_client(
    addr: std::net::SocketAddr,
    join: &str,
) -> tungstenite::WebSocket<std::net::TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = sock.into();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tungstenite::client(url, stream)
        .map_err(|_| "handshake")
        .unwrap();
    ws.read().unwrap(); // open
    ws.send(tungstenite::Message::text("40")).unwrap();
    ws.read().unwrap(); // CONNECT reply
    ws.send(tungstenite::Message::text(join)).unwrap();
    ws.read().unwrap(); // the join ack
    ws
}

/// A library-API app: "ask-all" broadcasts to the namespace with an ack and reports the answers.
fn ack_app() -> Vec<Endpoint> {
    let mut io = SocketIo::new(SocketIoConfig::default());
    io.namespace("/").on("ask-all", |socket, data, _ack| {
        let op = socket.namespace();
        let timeout = Duration::from_millis(data.first().as_u64().unwrap_or(2000));
        let socket = socket.clone();
        let answers = op.emit_with_ack("q", Payload::from("?"), timeout);
        tokio::task::spawn_local(async move {
            let report = match answers.await {
                Ok(responses) => json!({"answers": responses.len(), "complete": true}),
                Err(BroadcastAckError::Timeout { responses, missing }) => {
                    json!({"answers": responses.len(), "missing": missing})
                }
                Err(e) => json!({"error": e.to_string()}),
            };
            let _ = socket.emit("report", report);
        });
    });
    vec![Endpoint::socketio(
        "/socket.io/",
        EngineConfig::from_config(&Config::default()),
        io,
    )]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_acks_are_collected_from_every_shard() {
    let server = TestServer::start(4, ack_app());
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(AClient::connect(server.addr, "/").await);
    }
    assert!(
        server
            .metrics
            .shards()
            .iter()
            .filter(|s| s.sessions_open() > 0)
            .count()
            >= 2
    );
    // Round 1: everyone answers.
    clients[0].send(r#"42["ask-all",3000]"#);
    for c in clients.iter_mut() {
        let q = c.recv_text().await;
        let id = q
            .strip_prefix("42")
            .and_then(|r| r.split('[').next())
            .expect("ack id");
        assert!(!id.is_empty(), "the broadcast asks for an ack: {q}");
        c.send(&format!("43{id}[\"yes\"]"));
    }
    assert_eq!(
        clients[0].recv_text().await,
        r#"42["report",{"answers":16,"complete":true}]"#
    );
    // Round 2: one client stays silent.
    clients[0].send(r#"42["ask-all",300]"#);
    for (i, c) in clients.iter_mut().enumerate() {
        let q = c.recv_text().await;
        let id = q
            .strip_prefix("42")
            .and_then(|r| r.split('[').next())
            .unwrap()
            .to_string();
        if i != 5 {
            c.send(&format!("43{id}[\"yes\"]"));
        }
    }
    assert_eq!(
        clients[0].recv_text().await,
        r#"42["report",{"answers":15,"missing":1}]"#
    );
}

/// "flood" sends N volatile 16 KiB packets to room "r", "mark" one volatile "end" marker;
/// "join" joins "r".
fn volatile_app(max_buffered: usize) -> Vec<Endpoint> {
    let mut io = SocketIo::new(SocketIoConfig::default());
    io.namespace("/")
        .on("join", |socket, _data, ack| {
            socket.join("r");
            if let Some(ack) = ack {
                let _ = ack.send(json!({"ok": true}));
            }
        })
        .on("flood", |socket, data, ack| {
            let blob = "v".repeat(16 * 1024);
            for s in 0..data.first().as_u64().unwrap_or(0) {
                let _ = socket
                    .to("r")
                    .volatile()
                    .emit("v", json!({"s": s, "blob": blob}));
            }
            if let Some(ack) = ack {
                let _ = ack.send(json!({"ok": true}));
            }
        })
        .on("mark", |socket, _data, ack| {
            let _ = socket.to("r").volatile().emit("end", json!(true));
            if let Some(ack) = ack {
                let _ = ack.send(json!({"ok": true}));
            }
        });
    let config = Config {
        max_buffered_bytes: max_buffered,
        ..Config::default()
    };
    vec![Endpoint::socketio(
        "/socket.io/",
        EngineConfig::from_config(&config),
        io,
    )]
}

/// The marker of [`volatile_app`]'s "mark", as the slow client reads it.
const END: &str = r#"42["end",true]"#;

/// The next text frame of a blocking client (within its read timeout, `WAIT`).
fn read_text(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> String {
    match ws.read().expect("a frame in time") {
        tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_packets_are_dropped_for_a_full_client_instead_of_disconnecting_it() {
    let server = TestServer::start(4, volatile_app(128 * 1024));
    let mut slow = stalled_client(server.addr, r#"421["join"]"#);
    let mut flooder = AClient::connect(server.addr, "/").await;
    // Far more than the queue limit plus the kernel buffers, sent while `slow` reads nothing.
    assert_eq!(
        flooder.call("", 1, "flood", json!(1000)).await,
        json!({"ok": true})
    );
    // How much of the flood is kept is what the test measures, so its end cannot be counted:
    // the flooder sends a volatile "end" marker behind it, again until one is kept (a full
    // queue drops markers too), and the slow client reads up to it. Deliveries from one sender
    // keep their order.
    let marking = tokio::spawn(async move {
        for id in 2u64.. {
            flooder.call("", id, "mark", json!(null)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut seen = Vec::new();
    loop {
        let t = read_text(&mut slow);
        if t == END {
            break;
        }
        let v: Value = serde_json::from_str(t.trim_start_matches("42")).expect("an event");
        seen.push(v[1]["s"].as_u64().expect("a flood packet"));
    }
    marking.abort();
    assert!(
        !seen.is_empty() && seen.len() < 1000,
        "some volatile packets dropped: got {}",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "what arrives stays in order"
    );
    // Still connected: a normal round trip works, and nobody was counted as slow.
    slow.send(tungstenite::Message::text(r#"422["join"]"#))
        .unwrap();
    // Markers sent before the marking stopped may still come first.
    let mut answer = read_text(&mut slow);
    while answer == END {
        answer = read_text(&mut slow);
    }
    assert_eq!(answer, r#"432[{"ok":true}]"#);
    let slow_consumers: u64 = server
        .metrics
        .shards()
        .iter()
        .map(|s| s.slow_consumers())
        .sum();
    assert_eq!(slow_consumers, 0);
}
