//! The Redis bridge between machines: several shardio servers (2 shards each) in one test, one
//! real `redis-server` started by the test, real WebSocket clients.

use crate::common;

use std::time::{Duration, Instant};

use common::aclient::AClient;
use common::haproxy::Haproxy;
use common::node::LiveScript;
use common::process::ShardioProcess;
use common::redis::RedisServer;
use common::{Frame, TestServer, WsClient, WAIT};
use serde_json::{json, Value};
use shardio::gateway::endpoints as default_endpoints;
use shardio::protocol::socketio::Payload;
use shardio::socketio::{SocketIo, SocketIoConfig};
use shardio::{Config, Endpoint};

/// The gateway app with the bridge on `redis`.
fn gateway(redis: &RedisServer) -> TestServer {
    let url = redis.url();
    let config = <Config as clap::Parser>::parse_from(["shardio", "--redis", url.as_str()]);
    let server = TestServer::start_with_redis(
        2,
        default_endpoints(&config, None),
        Some(config.redis.clone()),
    );
    wait_bridged(&server);
    server
}

fn wait_bridged(server: &TestServer) {
    server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
}

/// The next event a client receives: (name, first argument, binary attachments).
pub(crate) async fn next_event(c: &mut AClient) -> (String, Value, Vec<Vec<u8>>) {
    let text = c.recv_text().await;
    let (attachments, json) = match text.strip_prefix("45") {
        Some(rest) => {
            let (n, json) = rest.split_once('-').expect("attachment count");
            (n.parse::<usize>().expect("count"), json.to_owned())
        }
        None => (0, text.strip_prefix("42").expect("an event").to_owned()),
    };
    let v: Value = serde_json::from_str(&json).expect("event JSON");
    let mut bins = Vec::new();
    for _ in 0..attachments {
        match c.recv().await {
            Frame::Binary(b) => bins.push(b),
            other => panic!("expected an attachment, got {other:?}"),
        }
    }
    (v[0].as_str().expect("name").to_owned(), v[1].clone(), bins)
}

/// Nothing more arrives for a while: a fixed window on purpose, since that nothing arrives is
/// the check.
pub(crate) async fn assert_quiet(c: &mut AClient, who: &str) {
    if let Some(frame) = c.try_recv(Duration::from_millis(300)).await {
        panic!("{who} got an unexpected frame: {frame:?}");
    }
}

pub(crate) async fn joined(addr: std::net::SocketAddr, rooms: Value) -> AClient {
    let mut c = AClient::connect(addr, "/").await;
    assert_eq!(c.call("", 1, "join", rooms).await, json!({"ok": true}));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_every_machine_exactly_once_with_rooms_except_and_binary() {
    let redis = RedisServer::start();
    let machines: Vec<TestServer> = (0..3).map(|_| gateway(&redis)).collect();
    // On each machine: c0 in r, c1 in r and x, c2 in other.
    let mut clients = Vec::new();
    for m in &machines {
        for rooms in [json!(["r"]), json!(["r", "x"]), json!(["other"])] {
            clients.push(joined(m.addr, rooms).await);
        }
    }

    // From machine A: to r except x. The publisher itself is skipped.
    clients[0].send(r#"42["publish",{"to":"r","except":"x","event":"note","data":{"n":1}}]"#);
    for i in [3, 6] {
        let (event, data, _) = next_event(&mut clients[i]).await;
        assert_eq!(
            (event.as_str(), data),
            ("note", json!({"n": 1})),
            "client {i}"
        );
    }

    // From machine B: binary to x; B's own x member is the publisher.
    clients[4]
        .send(r#"451-["publish",{"to":"x","event":"blob","data":{"_placeholder":true,"num":0}}]"#);
    clients[4].send_binary(&[0xde, 0xad, 0xbe, 0xef]);
    for i in [1, 7] {
        let (event, data, bins) = next_event(&mut clients[i]).await;
        assert_eq!(event, "blob", "client {i}");
        assert_eq!(data, json!({"_placeholder": true, "num": 0}));
        assert_eq!(bins, vec![vec![0xde, 0xad, 0xbe, 0xef]]);
    }

    // From machine C: the whole namespace.
    clients[8].send(r#"42["publish",{"event":"all","data":"hi"}]"#);
    for (i, c) in clients.iter_mut().enumerate().filter(|(i, _)| *i != 8) {
        let (event, data, _) = next_event(c).await;
        assert_eq!((event.as_str(), data), ("all", json!("hi")), "client {i}");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_quiet(c, &format!("client {i}")).await;
    }
    for m in &machines {
        let b = m.metrics.bridge();
        assert_eq!((b.malformed(), b.dropped()), (0, 0));
        assert!(b.published() >= 1 && b.received() >= 1);
    }
}

/// An app on the library API that exposes the cluster-wide operations to its clients.
fn cluster_app(name: &'static str) -> Vec<Endpoint> {
    const T: Duration = Duration::from_secs(3);
    let mut io = SocketIo::new(SocketIoConfig::default());
    io.namespace("/")
        .on("join", |s, data, ack| {
            s.join(data.first().as_str().unwrap_or_default());
            let _ = ack.map(|a| a.send("ok"));
        })
        .on("fetch", |s, data, ack| {
            let room = data.first().as_str().unwrap_or_default().to_owned();
            let fetch = s.namespace().to(room).fetch_sockets(T);
            tokio::task::spawn_local(async move {
                let mut ids: Vec<String> = fetch
                    .await
                    .expect("whole")
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
                ids.sort();
                let _ = ack.map(|a| a.send(json!(ids)));
            });
        })
        .on("fetch-or-partial", |s, data, ack| {
            // A minute to wait: far past the test client's patience, so an answer it gets came
            // without waiting for the timeout.
            let room = data.first().as_str().unwrap_or_default().to_owned();
            let fetch = s
                .namespace()
                .to(room)
                .fetch_sockets(Duration::from_secs(60));
            tokio::task::spawn_local(async move {
                let (whole, sockets) = match fetch.await {
                    Ok(sockets) => (true, sockets),
                    Err(incomplete) => (false, incomplete.partial),
                };
                let ids: Vec<String> = sockets.into_iter().map(|s| s.id).collect();
                let _ = ack.map(|a| a.send(json!({"whole": whole, "ids": ids})));
            });
        })
        .on("rooms", |s, _data, ack| {
            let rooms = s.namespace().all_rooms(T);
            tokio::task::spawn_local(async move {
                let rooms = rooms.await.expect("whole");
                let _ = ack.map(|a| a.send(json!(rooms)));
            });
        })
        .on("join-all", |s, data, ack| {
            let (from, to) = (data.first()["from"].as_str(), data.first()["to"].as_str());
            s.namespace()
                .to(from.unwrap_or_default())
                .sockets_join([to.unwrap_or_default()]);
            let _ = ack.map(|a| a.send("ok"));
        })
        .on("kick", |s, data, ack| {
            s.namespace()
                .to(data.first().as_str().unwrap_or_default())
                .disconnect_sockets(false);
            let _ = ack.map(|a| a.send("ok"));
        })
        .on("sse", |s, _data, ack| {
            let asked = s.namespace().server_side_emit_with_ack("ping", "hi", T);
            tokio::task::spawn_local(async move {
                let answers: Vec<Value> = asked
                    .await
                    .expect("every server answers")
                    .into_iter()
                    .map(|p| p.first().clone())
                    .collect();
                let _ = ack.map(|a| a.send(json!(answers)));
            });
        })
        .on("bcast", |s, _data, ack| {
            let acks = s.namespace().to("r").emit_with_ack("q", json!(1), T);
            tokio::task::spawn_local(async move {
                let mut answers: Vec<String> = acks
                    .await
                    .expect("every client acks")
                    .iter()
                    .map(|p| p.first().as_str().unwrap_or_default().to_owned())
                    .collect();
                answers.sort();
                let _ = ack.map(|a| a.send(json!(answers)));
            });
        })
        .on_server_side_emit(move |_io, event, data, ack| {
            assert_eq!((event, data.first()), ("ping", &json!("hi")));
            if let Some(ack) = ack {
                ack.send(Payload::from(format!("pong-from-{name}").as_str()));
            }
        });
    vec![Endpoint::socketio(
        "/socket.io/",
        shardio::engineio::EngineConfig::default(),
        io,
    )]
}

fn cluster_server(redis: &RedisServer, name: &'static str) -> TestServer {
    let config = shardio::config::RedisConfig::new(redis.url());
    let server = TestServer::start_with_redis(2, cluster_app(name), Some(config));
    wait_bridged(&server);
    server
}

/// Answers a broadcast with ack `42<id>["q",1]` with `answer`.
async fn answer_q(c: &mut AClient, answer: &str) {
    let text = c.recv_text().await;
    let rest = text.strip_prefix("42").expect("an event");
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(&rest[id.len()..], r#"["q",1]"#);
    c.send(&format!("43{id}[\"{answer}\"]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_operations_of_the_library_span_machines() {
    let redis = RedisServer::start();
    let (a, b) = (cluster_server(&redis, "A"), cluster_server(&redis, "B"));
    let mut a1 = AClient::connect(a.addr, "/").await;
    let mut a2 = AClient::connect(a.addr, "/").await;
    let mut b1 = AClient::connect(b.addr, "/").await;
    let mut b2 = AClient::connect(b.addr, "/").await;
    for c in [&mut a1, &mut b1, &mut b2] {
        assert_eq!(c.call("", 1, "join", json!("r")).await, json!("ok"));
    }
    let mut in_r = vec![a1.sid.clone(), b1.sid.clone(), b2.sid.clone()];
    in_r.sort();

    assert_eq!(a2.call("", 2, "fetch", json!("r")).await, json!(in_r));
    let rooms = b2.call("", 2, "rooms", json!(null)).await;
    for room in [&a1.sid, &a2.sid, &b1.sid, &b2.sid, &"r".to_owned()] {
        assert!(
            rooms.as_array().expect("rooms").contains(&json!(room)),
            "{room} in {rooms}"
        );
    }

    // Sockets of both machines join g.
    assert_eq!(
        a2.call("", 3, "join-all", json!({"from": "r", "to": "g"}))
            .await,
        json!("ok")
    );
    // The command travels through Redis; fetch until it has landed.
    let deadline = Instant::now() + WAIT;
    loop {
        if a2.call("", 4, "fetch", json!("g")).await == json!(in_r) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sockets_join did not reach machine B"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Server-side emit: only the other machine answers.
    assert_eq!(
        a1.call("", 5, "sse", json!(null)).await,
        json!(["pong-from-B"])
    );
    assert_eq!(
        b1.call("", 5, "sse", json!(null)).await,
        json!(["pong-from-A"])
    );

    // Broadcast with acks across machines.
    a2.send(r#"426["bcast"]"#);
    answer_q(&mut a1, "a1").await;
    answer_q(&mut b1, "b1").await;
    answer_q(&mut b2, "b2").await;
    loop {
        let t = a2.recv_text().await;
        if let Some(rest) = t.strip_prefix("436") {
            assert_eq!(rest, r#"[["a1","b1","b2"]]"#);
            break;
        }
    }

    // Disconnect a socket of the other machine.
    assert_eq!(a1.call("", 7, "kick", json!(b1.sid)).await, json!("ok"));
    assert_eq!(b1.recv_text().await, "41");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_keeps_local_delivery_and_cross_machine_delivery_resumes() {
    let mut redis = RedisServer::start();
    let (a, b, a1, mut a2, mut b1) = two_machines(&redis).await;
    publish_n(&a1, 0);
    assert_eq!(next_event(&mut a2).await.1, json!(0));
    assert_eq!(next_event(&mut b1).await.1, json!(0));

    redis.kill();
    a.wait_until("the bridge to notice", |m| m.bridge().connected() == 0);
    for n in 1..=5 {
        publish_n(&a1, n);
        assert_eq!(
            next_event(&mut a2).await.1,
            json!(n),
            "local delivery goes on"
        );
    }
    assert_quiet(&mut b1, "b1 while Redis is down").await;

    redis.restart();
    let back = Instant::now();
    let mut n = 100;
    let resumed = loop {
        publish_n(&a1, n);
        assert_eq!(next_event(&mut a2).await.1, json!(n));
        if let Some(Frame::Text(t)) = b1.try_recv(Duration::from_millis(100)).await {
            break t;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "delivery did not resume within 5 s"
        );
        n += 1;
    };
    assert!(resumed.starts_with(r#"42["n","#), "{resumed}");
    for m in [&a, &b] {
        assert!(m.metrics.bridge().reconnects() >= 1);
        assert_eq!(m.metrics.bridge().connected(), 1);
    }
    assert!(
        a.metrics.bridge().dropped() >= 1,
        "publishes while Redis was down are counted"
    );
    a.shutdown().expect("A stops cleanly");
    b.shutdown().expect("B stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_question_while_redis_is_away_gets_the_local_answer_marked_incomplete() {
    let mut redis = RedisServer::start();
    let a = cluster_server(&redis, "A");
    let mut a1 = AClient::connect(a.addr, "/").await;
    assert_eq!(a1.call("", 1, "join", json!("r")).await, json!("ok"));
    assert_eq!(
        a1.call("", 2, "fetch-or-partial", json!("r")).await,
        json!({"whole": true, "ids": [a1.sid]}),
        "with Redis up (no other server), the answer is whole"
    );
    redis.kill();
    a.wait_until("the bridge to notice", |m| m.bridge().connected() == 0);
    // The question's own timeout is a minute; the client waits far less.
    assert_eq!(
        a1.call("", 3, "fetch-or-partial", json!("r")).await,
        json!({"whole": false, "ids": [a1.sid]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_at_start_does_not_stop_the_server() {
    let mut redis = RedisServer::start();
    redis.kill();
    let url = redis.url();
    let config = <Config as clap::Parser>::parse_from(["shardio", "--redis", url.as_str()]);
    let a = TestServer::start_with_redis(
        2,
        default_endpoints(&config, None),
        Some(config.redis.clone()),
    );
    let a1 = joined(a.addr, json!("r")).await;
    let mut a2 = joined(a.addr, json!("r")).await;
    a1.send(r#"42["publish",{"to":"r","event":"n","data":1}]"#);
    assert_eq!(next_event(&mut a2).await.1, json!(1));
    assert_eq!(a.metrics.bridge().connected(), 0);
    redis.restart();
    a.wait_until("the bridge to connect once Redis is up", |m| {
        m.bridge().connected() == 1
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_from_redis_are_counted_and_dropped() {
    let redis = RedisServer::start();
    let a = gateway(&redis);
    let mut a1 = joined(a.addr, json!("r")).await;
    let mut pipe = std::net::TcpStream::connect(redis.addr()).expect("redis");
    for (channel, payload) in [
        ("socket.io#/#", &b"\x93\xc1"[..]),
        ("socket.io#/#r#", b"not msgpack"),
        ("socket.io-request#/#", b"{\"type\":"),
        ("socket.io-request#/#", b"{\"type\":99}"),
        ("socket.io-response#/#", b"\xff"),
    ] {
        use std::io::Write;
        let mut cmd = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
            channel.len(),
            payload.len()
        )
        .into_bytes();
        cmd.extend_from_slice(payload);
        cmd.extend_from_slice(b"\r\n");
        pipe.write_all(&cmd).expect("publish");
    }
    a.wait_until("five malformed messages", |m| m.bridge().malformed() == 5);
    // Still serving, still bridged.
    a1.send(r#"42["publish",{"to":"r","event":"n","data":1}]"#);
    assert_quiet(&mut a1, "the publisher").await;
    assert_eq!(a.metrics.bridge().connected(), 1);
}

/// Runs `node tests/js/<script> <redis-url> <shardio-url>` against a gateway bridged to a
/// Redis of its own, and checks its "ok"; returns the gateway (then its Redis) for more checks.
fn script_against_a_bridged_gateway(script: &str, limit: Duration) -> (TestServer, RedisServer) {
    let redis = RedisServer::start();
    let shardio = gateway(&redis);
    let out = common::node::run_script(script, &[&redis.url(), &shardio.url()], limit);
    assert_eq!(out.trim(), "ok");
    (shardio, redis)
}

#[test]
fn a_node_socketio_server_and_shardio_share_one_redis() {
    let (shardio, _redis) =
        script_against_a_bridged_gateway("node_cluster.mjs", Duration::from_secs(45));
    assert_eq!(shardio.metrics.bridge().malformed(), 0);
}

#[test]
fn the_redis_emitter_reaches_shardio_clients() {
    script_against_a_bridged_gateway("emitter.mjs", Duration::from_secs(25));
}

#[test]
fn socketio_clients_behind_haproxy_see_each_others_publishes() {
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis), gateway(&redis));
    let lb = Haproxy::start(&[a.addr, b.addr]);
    // The official client, WebSocket only: its clients land on both machines and every
    // publish must reach every eligible client once (gateway_client.mjs checks that).
    let out = common::node::run_script(
        "gateway_client.mjs",
        &[&format!("http://127.0.0.1:{}", lb.port), "8", "websocket"],
        Duration::from_secs(30),
    );
    assert_eq!(out.trim(), "ok");
    for m in [&a, &b] {
        assert!(
            m.metrics
                .shards()
                .iter()
                .map(|s| s.sessions_total())
                .sum::<u64>()
                >= 2,
            "the load balancer used both machines"
        );
    }
}

/// A TCP relay to Redis that can silently swallow what Redis sends on subscriber connections
/// (those that sent SUBSCRIBE), keeping them open: a subscription that stops delivering
/// without any error, which only the bridge's probe can notice. Muting applies to the
/// connections open when it starts: those the bridge opens once it has noticed and
/// reconnected are relayed in full, so the test knows which path the recovery takes.
pub(crate) struct SilentRelay {
    pub(crate) port: u16,
    mute: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bumped by each `set_muted(true)`; a connection accepted before it is muted.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SilentRelay {
    fn start(target: std::net::SocketAddr) -> SilentRelay {
        SilentRelay::muting(target, b"subscribe")
    }

    /// A relay that, once muted, swallows what Redis sends on the connections that sent
    /// `trigger` (any case) and were open when it was muted.
    pub(crate) fn muting(target: std::net::SocketAddr, trigger: &'static [u8]) -> SilentRelay {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mute = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let (muted, generations) = (mute.clone(), generation.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let born = generations.load(SeqCst);
                let Ok(mut server) = std::net::TcpStream::connect(target) else {
                    return;
                };
                let subscriber = Arc::new(AtomicBool::new(false));
                let (mut client_r, mut server_w) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let sub = subscriber.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = client_r.read(&mut buf) {
                        if buf[..n]
                            .windows(trigger.len())
                            .any(|w| w.eq_ignore_ascii_case(trigger))
                        {
                            sub.store(true, SeqCst);
                        }
                        if server_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                let (muted, generations) = (muted.clone(), generations.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = server.read(&mut buf) {
                        if muted.load(SeqCst)
                            && subscriber.load(SeqCst)
                            && born < generations.load(SeqCst)
                        {
                            continue;
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SilentRelay {
            port,
            mute,
            generation,
        }
    }

    /// Muting: the connections open now that sent the trigger fall silent.
    pub(crate) fn set_muted(&self, muted: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        if muted {
            self.generation.fetch_add(1, SeqCst);
        }
        self.mute.store(muted, SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_silently_stops_is_caught_by_the_probe() {
    let redis = RedisServer::start();
    let relay = SilentRelay::start(redis.addr());
    let mut config =
        shardio::config::RedisConfig::new(format!("redis://127.0.0.1:{}/0", relay.port));
    config.probe_interval = 300;
    let url = redis.url();
    let gw = <Config as clap::Parser>::parse_from(["shardio", "--redis", url.as_str()]);
    let a = TestServer::start_with_redis(2, default_endpoints(&gw, None), Some(config));
    wait_bridged(&a);
    let b = gateway(&redis);
    let mut a1 = joined(a.addr, json!("r")).await;
    let b1 = joined(b.addr, json!("r")).await;
    let publish = |n: u32| {
        b1.send(&format!(
            r#"42["publish",{{"to":"r","event":"n","data":{n}}}]"#
        ))
    };
    publish(0);
    assert_eq!(next_event(&mut a1).await.1, json!(0));

    relay.set_muted(true);
    a.wait_until("the probe to be missed", |m| m.bridge().probes_lost() >= 1);
    relay.set_muted(false);
    let back = Instant::now();
    let mut n = 1;
    loop {
        publish(n);
        if let Some(Frame::Text(_)) = a1.try_recv(Duration::from_millis(100)).await {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(8),
            "delivery did not resume"
        );
        n += 1;
    }
    assert!(a.metrics.bridge().reconnects() >= 1);
}

/// Two gateways bridged through `redis`, A and B, with clients in room `r`: two on A, one on B.
async fn two_machines(redis: &RedisServer) -> (TestServer, TestServer, AClient, AClient, AClient) {
    let (a, b) = (gateway(redis), gateway(redis));
    let a1 = joined(a.addr, json!("r")).await;
    let a2 = joined(a.addr, json!("r")).await;
    let b1 = joined(b.addr, json!("r")).await;
    (a, b, a1, a2, b1)
}

/// Publishes `n` to room `r` as `c`.
pub(crate) fn publish_n(c: &AClient, n: u32) {
    c.send(&format!(
        r#"42["publish",{{"to":"r","event":"n","data":{n}}}]"#
    ));
}

/// Publishes from `from` until `to` receives something (delivery across machines resumed);
/// fails after `limit`.
pub(crate) async fn until_delivered(from: &AClient, to: &mut AClient, limit: Duration) {
    let since = Instant::now();
    for n in 1000.. {
        publish_n(from, n);
        if let Some(Frame::Text(_)) = to.try_recv(Duration::from_millis(100)).await {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "delivery did not resume within {limit:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_answers_slowly_never_stalls_a_shard_and_delivery_resumes() {
    // DEBUG is off by default since Redis 7; `local`: for clients on this machine.
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let (_a, _b, a1, mut a2, mut b1) = two_machines(&redis).await;
    publish_n(&a1, 0);
    assert_eq!(next_event(&mut a2).await.1, json!(0));
    assert_eq!(next_event(&mut b1).await.1, json!(0));

    // Redis answers nobody for 3 s, longer than the bridge waits for an answer (2 s).
    let mut sleeping = redis.send_command("DEBUG SLEEP 3");
    let mut answer = [0u8; 16];
    // Asleep once a PING goes unanswered: a fixed window per try, since that no answer comes
    // is the check.
    let asleep = common::wait_within(WAIT, || {
        let mut ping = redis.send_command("PING");
        ping.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        std::io::Read::read(&mut ping, &mut answer).is_err()
    });
    assert!(asleep, "Redis went to sleep");
    for n in 1..=5 {
        publish_n(&a1, n);
        assert_eq!(next_event(&mut a2).await.1, json!(n), "local delivery");
    }
    // All that came while Redis slept: its answer to DEBUG SLEEP is still to come.
    sleeping.set_nonblocking(true).expect("non-blocking");
    let asleep = std::io::Read::read(&mut sleeping, &mut answer);
    assert!(
        matches!(&asleep, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the deliveries happened while Redis slept, not after: {asleep:?}"
    );
    sleeping.set_nonblocking(false).expect("blocking");
    sleeping.set_read_timeout(Some(WAIT)).expect("timeout");
    let n = std::io::Read::read(&mut sleeping, &mut answer).expect("Redis wakes up");
    assert_eq!(&answer[..n], b"+OK\r\n");

    until_delivered(&a1, &mut b1, Duration::from_secs(10)).await;
    until_delivered(&b1, &mut a2, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_rebuilt_and_delivery_resumes() {
    let redis = RedisServer::start();
    let (a, b, a1, mut a2, mut b1) = two_machines(&redis).await;
    publish_n(&b1, 0);
    assert_eq!(next_event(&mut a2).await.1, json!(0));

    // Every pub/sub connection, the bridges' subscriptions, dropped by Redis at once.
    let killed = redis.command("CLIENT KILL TYPE pubsub");
    assert_eq!(killed, ":2", "both bridges' subscriptions");
    publish_n(&a1, 1);
    assert_eq!(next_event(&mut a2).await.1, json!(1), "local delivery");

    until_delivered(&b1, &mut a2, Duration::from_secs(10)).await;
    until_delivered(&a1, &mut b1, Duration::from_secs(10)).await;
    for m in [&a, &b] {
        assert!(m.metrics.bridge().reconnects() >= 1);
        assert_eq!(m.metrics.bridge().connected(), 1);
    }
}

#[test]
fn sigterm_drains_an_instance_behind_haproxy_and_its_clients_move_to_the_other() {
    let redis = RedisServer::start();
    // A: the binary, stopped by SIGTERM. B: in this process, so the test can read its counters.
    let mut a = ShardioProcess::start(&["--shards", "2", "--redis", &redis.url()]);
    a.wait_for_line("Redis bridge connected", WAIT);
    let b = gateway(&redis);
    let lb = Haproxy::start(&[a.addr, b.addr]);
    let clients = 8;
    let mut script = LiveScript::start(
        "drain_client.mjs",
        &[
            &format!("http://127.0.0.1:{}", lb.port),
            &clients.to_string(),
        ],
    );
    let never = ["twice"];
    script.expect_line("ready", &never, Duration::from_secs(20));
    let on_b = b.metrics.sessions_open();
    assert!(
        on_b < clients,
        "the load balancer put some clients on A ({on_b} of {clients} on B)"
    );

    // B publishes: its clients get it directly, A's through Redis.
    let (mut publisher, _) = WsClient::socketio(b.addr, None);
    let tick = |c: &mut WsClient, tag: &str| {
        c.send_text(&format!(
            r#"42["publish",{{"to":"r","event":"tick","data":"{tag}"}}]"#
        ))
    };
    tick(&mut publisher, "before");
    script.expect_line("got before", &never, Duration::from_secs(10));

    // A drains: it closes its listener and every client with 1001, and exits 0.
    let status = a.terminate(Duration::from_secs(15));
    assert!(status.success(), "A exited with {status}");
    // Every client of A reconnected through the load balancer, to B, and joined again.
    let all_on_b = common::wait_within(Duration::from_secs(30), || {
        b.metrics.sessions_open() == clients + 1
    });
    assert!(all_on_b, "{} sessions on B", b.metrics.sessions_open());
    script.expect_line("ready", &never, Duration::from_secs(30));
    tick(&mut publisher, "after");
    script.expect_line("got after", &never, Duration::from_secs(10));
    script.finish(common::WAIT);
}
