//! `--redis-mode streams`: the Redis stream of `@socket.io/redis-streams-adapter` 0.3 between
//! shardio machines (2 shards each) and Node; a real `redis-server` per test, killed and
//! restarted under the bridges to check that an outage loses nothing and repeats nothing.

use crate::common;
use crate::redis::{assert_quiet, joined, next_event, SilentRelay};

use std::time::{Duration, Instant};

use common::aclient::AClient;
use common::redis::RedisServer;
use common::{TestServer, WsClient, WAIT};
use serde_json::{json, Value};
use shardio::engineio::EngineConfig;
use shardio::gateway::endpoints as default_endpoints;
use shardio::metrics::RecoveryEvent;
use shardio::socketio::{SocketIo, SocketIoConfig};
use shardio::{Config, Endpoint};

/// The gateway app with the bridge on `redis` in streams mode.
fn streams_gateway(redis: &RedisServer) -> TestServer {
    streams_gateway_with(redis, &[])
}

/// [`streams_gateway`] with more flags.
pub(crate) fn streams_gateway_with(redis: &RedisServer, flags: &[&str]) -> TestServer {
    streams_gateway_at(&redis.url(), flags)
}

/// A streams-mode gateway whose bridge reaches Redis at `url` (a relay, say), once connected.
fn streams_gateway_at(url: &str, flags: &[&str]) -> TestServer {
    let mut args = vec!["shardio", "--redis", url, "--redis-mode", "streams"];
    args.extend_from_slice(flags);
    let config = <Config as clap::Parser>::parse_from(args);
    let server = TestServer::start_with_redis(
        2,
        default_endpoints(&config, None),
        Some(config.redis.clone()),
    );
    server.wait_until("the bridge to connect", |m| m.bridge().connected() == 1);
    server
}

/// Publishes `n` to room `r` as `c`.
fn publish_n(c: &AClient, n: u32) {
    c.send(&format!(
        r#"42["publish",{{"to":"r","event":"n","data":{n}}}]"#
    ));
}

/// Publishes `range` from `c`, one every 2 ms: a steady stream over time is what the outage
/// tests cut into.
async fn publish_steadily(c: &AClient, range: std::ops::RangeInclusive<u32>) {
    for n in range {
        publish_n(c, n);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The numbers `c` receives until it has `count` of them, in arrival order; fails after
/// `limit` with what came.
async fn receive_numbers(c: &mut AClient, count: usize, limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, next_event(c)).await {
            Ok((event, Value::Number(n), _)) if event == "n" => {
                got.push(u32::try_from(n.as_u64().expect("a number")).expect("small"));
            }
            Ok(other) => panic!("unexpected event {other:?}"),
            Err(_) => panic!(
                "{} of {count} messages arrived within {limit:?}; missing: {:?}",
                got.len(),
                (0..u32::try_from(count).expect("small"))
                    .filter(|n| !got.contains(n))
                    .collect::<Vec<_>>()
            ),
        }
    }
    got
}

/// Machines A and B in streams mode, a client of each in room `r`.
async fn publisher_and_subscriber(
    redis: &RedisServer,
) -> (TestServer, TestServer, AClient, AClient) {
    publisher_and_subscriber_with(redis, &[]).await
}

/// [`publisher_and_subscriber`] with more flags for both machines.
async fn publisher_and_subscriber_with(
    redis: &RedisServer,
    flags: &[&str],
) -> (TestServer, TestServer, AClient, AClient) {
    let (a, b) = (
        streams_gateway_with(redis, flags),
        streams_gateway_with(redis, flags),
    );
    let a1 = joined(a.addr, json!("r")).await;
    let b1 = joined(b.addr, json!("r")).await;
    (a, b, a1, b1)
}

/// Waits until both bridges know that Redis is gone.
fn both_notice(a: &TestServer, b: &TestServer) {
    a.wait_until("A to notice", |m| m.bridge().connected() == 0);
    b.wait_until("B to notice", |m| m.bridge().connected() == 0);
}

fn xlen(redis: &RedisServer) -> u64 {
    let reply = redis.command("XLEN socket.io");
    reply.trim_start_matches(':').parse().expect("XLEN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_mode_broadcasts_cross_machines_both_ways_through_the_stream() {
    let redis = RedisServer::start();
    let (a, b) = (streams_gateway(&redis), streams_gateway(&redis));
    let mut a_r = joined(a.addr, json!(["r"])).await;
    let mut a_x = joined(a.addr, json!(["r", "x"])).await;
    let mut b_r = joined(b.addr, json!(["r"])).await;
    let mut b_x = joined(b.addr, json!(["r", "x"])).await;
    let mut b_o = joined(b.addr, json!(["other"])).await;

    // A to B: room r except x.
    a_r.send(r#"42["publish",{"to":"r","except":"x","event":"note","data":{"n":1}}]"#);
    let (event, data, _) = next_event(&mut b_r).await;
    assert_eq!((event.as_str(), data), ("note", json!({"n": 1})));

    // B to A: binary to x.
    b_x.send(r#"451-["publish",{"to":"x","event":"blob","data":{"_placeholder":true,"num":0}}]"#);
    b_x.send_binary(&[0xde, 0xad]);
    let (event, _, bins) = next_event(&mut a_x).await;
    assert_eq!((event.as_str(), bins), ("blob", vec![vec![0xde, 0xad]]));

    // B to everyone: the namespace.
    b_o.send(r#"42["publish",{"event":"all","data":"hi"}]"#);
    for (name, c) in [
        ("a_r", &mut a_r),
        ("a_x", &mut a_x),
        ("b_r", &mut b_r),
        ("b_x", &mut b_x),
    ] {
        let (event, data, _) = next_event(c).await;
        assert_eq!((event.as_str(), data), ("all", json!("hi")), "{name}");
    }
    for (name, c) in [
        ("a_r", &mut a_r),
        ("a_x", &mut a_x),
        ("b_r", &mut b_r),
        ("b_x", &mut b_x),
        ("b_o", &mut b_o),
    ] {
        assert_quiet(c, name).await;
    }

    // They went through the stream, not the classic adapter's channels.
    assert_eq!(xlen(&redis), 3);
    // An entry that does not decode is counted and skipped; the next one is delivered.
    redis.command("XADD socket.io * uid other nsp / type 3 data not-base64!");
    b_o.send(r#"42["publish",{"to":"r","event":"after","data":1}]"#);
    let (event, _, _) = next_event(&mut a_r).await;
    assert_eq!(event, "after");
    for m in [&a, &b] {
        m.wait_until("the bad entry to be counted", |m| {
            m.bridge().malformed() == 1
        });
    }
    assert_eq!(
        redis.command("PUBSUB NUMSUB socket.io-request#/#"),
        "*2",
        "no classic subscription"
    );
    for m in [&a, &b] {
        let bridge = m.metrics.bridge();
        assert_eq!((bridge.malformed(), bridge.dropped()), (1, 0));
        assert!(bridge.published() >= 1 && bridge.received() >= 1);
    }
}

#[test]
fn a_node_server_with_the_streams_adapter_and_a_streams_emitter_interoperate() {
    let redis = RedisServer::start();
    let shardio = streams_gateway(&redis);
    let out = common::node::run_script(
        "node_streams.mjs",
        &[&redis.url(), &shardio.url()],
        Duration::from_secs(45),
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(shardio.metrics.bridge().malformed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_nothing_and_repeats_nothing() {
    restart_mid_run(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recovery_on_a_redis_restart_mid_run_loses_nothing_here_or_there() {
    // With sessions in Redis, A's own subscribers get A's broadcasts through the stream too:
    // they wait out the outage with B's and miss nothing either.
    restart_mid_run(&["--recovery-window", "60000"]).await;
}

async fn restart_mid_run(flags: &[&str]) {
    let mut redis = RedisServer::start_persistent();
    let (a, b, a1, mut b1) = publisher_and_subscriber_with(&redis, flags).await;
    let mut a2 = joined(a.addr, json!("r")).await;

    // Redis is killed while A publishes; A goes on publishing while it is away (queued in
    // the bridge), then after it is back.
    publish_steadily(&a1, 0..=149).await;
    redis.kill();
    publish_steadily(&a1, 150..=199).await;
    both_notice(&a, &b);
    publish_steadily(&a1, 200..=249).await;
    a.wait_until("A to hold what it could not add", |m| {
        m.bridge().stream_waiting() >= 50
    });
    redis.restart();
    publish_steadily(&a1, 250..=299).await;

    for (c, who) in [(&mut b1, "b1"), (&mut a2, "a2")] {
        let got = receive_numbers(c, 300, WAIT * 2).await;
        assert_eq!(
            got,
            (0..300).collect::<Vec<_>>(),
            "{who}: every message, once, in order"
        );
        assert_quiet(c, who).await;
    }
    for m in [&a, &b] {
        let bridge = m.metrics.bridge();
        assert!(bridge.reconnects() >= 1);
        assert_eq!((bridge.dropped(), bridge.malformed()), (0, 0));
    }
    assert_eq!(xlen(&redis), 300, "each message is in the stream once");
    assert_eq!(a.metrics.bridge().stream_waiting(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_without_its_data_is_read_from_the_start() {
    let mut redis = RedisServer::start();
    let (a, b, a1, mut b1) = publisher_and_subscriber(&redis).await;
    // An entry id far ahead of the clock (another writer's, or a Redis whose clock was ahead):
    // every later id of this stream is above it, and the restarted Redis's ids are below.
    let future = redis.command("XADD socket.io 9999999999999-0 uid other nsp / type 2");
    assert_eq!(
        future, "$15",
        "the id 9999999999999-0 (15 bytes) is the answer"
    );
    publish_n(&a1, 0);
    assert_eq!(receive_numbers(&mut b1, 1, WAIT).await, [0]);

    redis.kill();
    both_notice(&a, &b);
    publish_steadily(&a1, 1..=20).await;
    redis.restart();
    publish_steadily(&a1, 21..=40).await;

    let got = receive_numbers(&mut b1, 40, WAIT * 2).await;
    assert_eq!(
        got,
        (1..=40).collect::<Vec<_>>(),
        "read from the new stream's start"
    );
    assert_quiet(&mut b1, "b1 after the last message").await;
    assert_eq!(a.metrics.bridge().dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_xadd_reply_was_lost_are_not_added_twice() {
    let redis = RedisServer::start();
    // A reaches Redis through a relay that can swallow the replies to its XADDs: Redis adds
    // the entries, A never hears so and counts them as unconfirmed.
    let relay = SilentRelay::muting(redis.addr(), b"XADD");
    let a = streams_gateway_at(&format!("redis://127.0.0.1:{}/0", relay.port), &[]);
    let b = streams_gateway(&redis);
    let a1 = joined(a.addr, json!("r")).await;
    let mut b1 = joined(b.addr, json!("r")).await;

    publish_steadily(&a1, 0..=9).await;
    assert_eq!(
        receive_numbers(&mut b1, 10, WAIT).await,
        (0..10).collect::<Vec<_>>()
    );
    relay.set_muted(true);
    publish_steadily(&a1, 10..=19).await;
    // The publisher's response timeout (2 s after the first muted XADD; well within `WAIT`)
    // ends the connected phase, and the bridge reconnects at once, on connections the relay
    // leaves alone: `connected` reads 0 for a few milliseconds only, too short to be sure to
    // see by polling, so the test waits for the reconnection it leads to.
    a.wait_until("A's publisher to time out and A to reconnect", |m| {
        m.bridge().reconnects() >= 1
    });
    relay.set_muted(false);
    a.wait_until("A to be connected", |m| m.bridge().connected() == 1);
    publish_steadily(&a1, 20..=29).await;

    let got = receive_numbers(&mut b1, 20, WAIT * 2).await;
    assert_eq!(got, (10..30).collect::<Vec<_>>(), "once each, in order");
    assert_quiet(&mut b1, "b1 after the last message").await;
    // (A probe in the failed pipeline is counted as dropped: Pub/Sub messages are not kept.)
    assert_eq!(xlen(&redis), 30, "no entry added twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_loses_redis_before_reading_anything_misses_nothing_added_meanwhile() {
    // B starts on an empty stream and reads nothing before its reader's connection falls
    // silent (a relay swallows the replies to its XREAD); A adds entries meanwhile. B's new
    // connection must read on from where the first one started, not from the stream's newest
    // entry, which would skip what A added.
    let redis = RedisServer::start();
    let relay = SilentRelay::muting(redis.addr(), b"XREAD");
    let b = streams_gateway_at(&format!("redis://127.0.0.1:{}/0", relay.port), &[]);
    let a = streams_gateway(&redis);
    let a1 = joined(a.addr, json!("r")).await;
    let mut b1 = joined(b.addr, json!("r")).await;
    relay.set_muted(true);
    publish_steadily(&a1, 0..=9).await;
    // The read's response timeout is its block time (5 s) plus 2 s: longer than `WAIT`.
    let reconnected = common::wait_within(WAIT * 3, || b.metrics.bridge().reconnects() >= 1);
    assert!(reconnected, "B's reader timed out and B reconnected");
    let got = receive_numbers(&mut b1, 10, WAIT * 2).await;
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "once each, in order");
}

/// The next frame of `c` that is an EVENT (`42[...]`), as its JSON array; acks are skipped.
fn next_event_array(c: &mut WsClient) -> Vec<Value> {
    loop {
        let text = c.recv_text();
        if let Some(body) = text.strip_prefix("42") {
            return serde_json::from_str(body).expect("event JSON");
        }
    }
}

#[test]
fn a_session_kept_while_redis_is_away_is_stored_on_its_return_and_recovered() {
    // Sessions are kept in Redis in streams mode: one that drops while Redis is down waits in
    // the bridge, is SET when Redis is back (with what is left of its window), and the client
    // then comes back recovered with what was published meanwhile.
    let mut redis = RedisServer::start_persistent();
    let url = redis.url();
    let flags = [
        "--redis",
        &url,
        "--redis-mode",
        "streams",
        "--recovery-window",
        "60000",
    ];
    let server = TestServer::gateway(2, &flags);
    server.wait_until("the bridge", |m| m.bridge().connected() == 1);
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text("40");
    let reply: Value =
        serde_json::from_str(c.recv_text().strip_prefix("40").expect("CONNECT reply")).unwrap();
    let (sid, pid) = (reply["sid"].clone(), reply["pid"].clone());
    c.send_text(r#"421["join",["r"]]"#);
    let (mut publisher, _) = WsClient::open(server.addr, "/socket.io/");
    publisher.send_text("40");
    publisher.recv_text();
    publisher.send_text(r#"42["publish",{"to":"r","event":"m","data":1}]"#);
    let first = next_event_array(&mut c);
    assert_eq!(first[..2], [json!("m"), json!(1)]);
    let offset = first[2].as_str().expect("an offset").to_owned();
    assert!(
        shardio::protocol::adapter::parse_entry_id(&offset).is_some(),
        "the offset is a stream entry id: {offset}"
    );

    redis.kill();
    server.wait_until("the bridge to notice", |m| m.bridge().connected() == 0);
    drop(c); // no close frame: a transport close, which keeps the session
    publisher.send_text(r#"42["publish",{"to":"r","event":"m","data":2}]"#);
    server.wait_until("the session to be kept and the publish to wait", |m| {
        let kept: u64 = m
            .shards()
            .iter()
            .map(|s| s.recovery_events(RecoveryEvent::Kept))
            .sum();
        kept == 1 && m.bridge().stream_waiting() == 1
    });
    assert_eq!(redis_key_count_after_restart(&mut redis, &server), 1);

    let (mut back, _) = WsClient::open(server.addr, "/socket.io/");
    back.send_text(&format!(r#"40{{"pid":{pid},"offset":"{offset}"}}"#));
    let missed = next_event_array(&mut back);
    assert_eq!(missed[..2], [json!("m"), json!(2)], "what it missed, first");
    let reply: Value =
        serde_json::from_str(back.recv_text().strip_prefix("40").expect("CONNECT reply")).unwrap();
    assert_eq!((reply["sid"].clone(), reply["pid"].clone()), (sid, pid));
    publisher.send_text(r#"42["publish",{"to":"r","event":"m","data":3}]"#);
    assert_eq!(
        next_event_array(&mut back)[..2],
        [json!("m"), json!(3)],
        "still in room r"
    );
    assert_eq!(
        redis.command(&format!(
            "EXISTS sio:session:{}",
            reply["pid"].as_str().unwrap()
        )),
        ":0",
        "the session was taken"
    );
}

/// Restarts `redis` (with its data), waits for `server`'s bridge, and counts the sessions
/// stored.
fn redis_key_count_after_restart(redis: &mut RedisServer, server: &TestServer) -> usize {
    redis.restart();
    server.wait_until("the bridge to reconnect", |m| m.bridge().connected() == 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let keys = redis.cli(&["--raw", "KEYS", "sio:session:*"]);
        let count = keys.lines().filter(|l| !l.is_empty()).count();
        if count > 0 || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_sessions_in_redis_only_what_goes_through_the_stream_carries_an_offset() {
    // socket.io-client keeps the last string argument of every event as its offset: a local
    // broadcast, which never reaches the stream, must not carry one (as in Node), or the
    // client's next recovery would present an offset no server can find. A socket's own emit
    // goes through the stream, as in Node, and carries its entry id.
    let redis = RedisServer::start();
    let mut io = SocketIo::new(SocketIoConfig {
        recovery_window: Some(Duration::from_secs(60)),
        ..SocketIoConfig::default()
    });
    io.namespace("/").on("go", |socket, _, _| {
        let _ = socket.namespace().local().emit("local", json!(1));
        let _ = socket.namespace().volatile().emit("volatile", json!(2));
        let _ = socket.emit("own", json!(3));
        let _ = socket.namespace().emit("everyone", json!(4));
    });
    let url = redis.url();
    let args = ["shardio", "--redis", &url, "--redis-mode", "streams"];
    let config = <Config as clap::Parser>::parse_from(args);
    let engine = EngineConfig::from_config(&config);
    let endpoints = vec![Endpoint::socketio("/socket.io/", engine, io)];
    let server = TestServer::start_with_redis(1, endpoints, Some(config.redis.clone()));
    server.wait_until("the bridge", |m| m.bridge().connected() == 1);
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text("40");
    assert!(c.recv_text().contains("\"pid\""), "recovery is on");
    c.send_text(r#"42["go"]"#);
    let mut got: Vec<Vec<Value>> = (0..4).map(|_| next_event_array(&mut c)).collect();
    // The local and volatile ones are delivered at once; the other two after the stream.
    got.sort_by_key(|e| e[1].as_u64());
    assert_eq!(got[0], [json!("local"), json!(1)]);
    assert_eq!(got[1], [json!("volatile"), json!(2)]);
    for (event, n) in [("own", 3), ("everyone", 4)] {
        let e = &got[usize::try_from(n).unwrap() - 1];
        assert_eq!(e[..2], [json!(event), json!(n)]);
        let offset = e[2].as_str().expect("an offset");
        assert!(
            shardio::protocol::adapter::parse_entry_id(offset).is_some(),
            "{event}: its offset is its stream entry id, not {offset}"
        );
    }
    assert_eq!(
        xlen(&redis),
        3,
        "own and everyone, and volatile: in the stream"
    );
}
