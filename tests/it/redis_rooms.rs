//! Per-room subscriptions (`--redis-subscribe rooms`): a machine subscribes to the namespace
//! channel and to the channel of each room it holds a member of, so it receives the broadcasts
//! of its rooms only. Real gateways, a real `redis-server` (whose own `PUBSUB` and
//! `INFO commandstats` are the witnesses), Node's adapter and emitter for the mixed cluster.

use crate::common;
use crate::redis::{assert_quiet, joined, next_event};

use std::time::Duration;

use common::aclient::AClient;
use common::node::run_script;
use common::redis::RedisServer;
use common::scrape::Scrape;
use common::{wait_until_async, TestServer};
use serde_json::json;
use shardio::gateway::endpoints as default_endpoints;
use shardio::Config;

/// A gateway bridged to `redis` in `mode`, 2 shards. The probe is slowed to once a minute so
/// that the only messages a test sees arrive from Redis are its own.
fn gateway(redis: &RedisServer, mode: &str) -> TestServer {
    let url = redis.url();
    let config = <Config as clap::Parser>::parse_from([
        "shardio",
        "--redis",
        url.as_str(),
        "--redis-subscribe",
        mode,
        "--redis-probe-interval",
        "60000",
    ]);
    let server = TestServer::start_with_redis(
        2,
        default_endpoints(&config, None),
        Some(config.redis.clone()),
    );
    server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
    server
}

fn room(name: &str) -> String {
    format!("socket.io#/#{name}#")
}

/// Waits until `n` connections subscribe to the channel of room `name`.
async fn subscribers(redis: &RedisServer, name: &str, n: i64) {
    let channel = room(name);
    wait_until_async(&format!("{n} subscribers of {channel}"), || {
        redis.numsub(&channel) == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_subscribes_to_the_rooms_it_holds_and_receives_nothing_else() {
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "rooms"), gateway(&redis, "rooms"));
    let mut a1 = joined(a.addr, json!(["r1", "shared"])).await;
    let b1 = joined(b.addr, json!(["r2", "shared"])).await;
    subscribers(&redis, "r1", 1).await;
    subscribers(&redis, "r2", 1).await;
    subscribers(&redis, "shared", 2).await;
    // Each socket's own id is a room: Node publishes `to(socket.id)` on its channel.
    subscribers(&redis, &a1.sid, 1).await;
    // No pattern: Node's PSUBSCRIBE is replaced by the namespace channel.
    let numpat: i64 = redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query(&mut redis.connection())
        .expect("PUBSUB NUMPAT");
    assert_eq!(numpat, 0);
    assert_eq!(redis.numsub("socket.io#/#"), 2);
    assert_eq!(
        a.metrics.bridge().room_channels(),
        3,
        "r1, shared and a1's id"
    );

    // B publishes 20 times to r2, which A does not hold, then once to r1 and once to shared.
    let before = a.metrics.bridge().messages_in();
    for n in 0..20 {
        b1.send(&format!(
            r#"42["publish",{{"to":"r2","event":"n","data":{n}}}]"#
        ));
    }
    b1.send(r#"42["publish",{"to":"r1","event":"to-r1","data":1}]"#);
    b1.send(r#"42["publish",{"to":"shared","event":"to-shared","data":2}]"#);
    assert_eq!(next_event(&mut a1).await.0, "to-r1");
    assert_eq!(next_event(&mut a1).await.0, "to-shared");
    assert_eq!(
        a.metrics.bridge().messages_in() - before,
        2,
        "A received exactly its two rooms' messages from Redis, none of r2's"
    );
    // Namespace-wide, on the namespace channel.
    b1.send(r#"42["publish",{"event":"all","data":3}]"#);
    assert_eq!(next_event(&mut a1).await.0, "all");
    assert_quiet(&mut a1, "a1").await;
    assert_eq!(a.metrics.bridge().messages_in() - before, 3);
    assert_eq!(a.metrics.bridge().malformed(), 0);
    // The same figures on /metrics, as benches/cluster_sim.py reads them.
    let scrape = Scrape::of(a.addr);
    assert_eq!(scrape.sum("shardio_redis_room_channels", &[]), 3.0);
    let bridge = a.metrics.bridge();
    assert_eq!(
        scrape.sum("shardio_redis_messages_in_total", &[]),
        bridge.messages_in() as f64
    );
    assert_eq!(
        scrape.sum("shardio_redis_bytes_in_total", &[]),
        bridge.bytes_in() as f64
    );
    assert!(bridge.bytes_in() > 0);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_pattern_mode_every_machine_receives_every_broadcast() {
    // The same traffic as above, Node's way: A receives r2's broadcasts too (and drops them).
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "pattern"), gateway(&redis, "pattern"));
    let mut a1 = joined(a.addr, json!(["r1"])).await;
    let b1 = joined(b.addr, json!(["r2"])).await;
    assert_eq!(redis.numsub(&room("r1")), 0, "no room channels");
    let before = a.metrics.bridge().messages_in();
    for n in 0..20 {
        b1.send(&format!(
            r#"42["publish",{{"to":"r2","event":"n","data":{n}}}]"#
        ));
    }
    b1.send(r#"42["publish",{"to":"r1","event":"to-r1","data":1}]"#);
    assert_eq!(next_event(&mut a1).await.0, "to-r1");
    assert_eq!(a.metrics.bridge().messages_in() - before, 21);
    assert_eq!(a.metrics.bridge().room_channels(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_disconnecting_unsubscribe_once_no_member_is_left() {
    let redis = RedisServer::start();
    let a = gateway(&redis, "rooms");
    // Two members of r on A (on whichever shards): the channel stays until both are gone.
    let mut a1 = joined(a.addr, json!(["r", "solo"])).await;
    let a2 = joined(a.addr, json!(["r"])).await;
    subscribers(&redis, "r", 1).await;
    subscribers(&redis, "solo", 1).await;
    assert_eq!(
        a1.call("", 2, "leave", json!("solo")).await,
        json!({"ok": true})
    );
    subscribers(&redis, "solo", 0).await;
    assert_eq!(
        a1.call("", 3, "leave", json!("r")).await,
        json!({"ok": true})
    );
    // a2 is still in r: the channel stays. a1's next join is the marker that the bridge has
    // applied a1's report (a shard's reports reach the bridge in order).
    assert_eq!(
        a1.call("", 4, "join", json!("marker")).await,
        json!({"ok": true})
    );
    subscribers(&redis, "marker", 1).await;
    assert_eq!(redis.numsub(&room("r")), 1);
    // Leaving the namespace (a client's disconnect) leaves every room.
    a2.send("41");
    subscribers(&redis, &a2.sid, 0).await;
    subscribers(&redis, "r", 0).await;
    a1.send("41");
    subscribers(&redis, &a1.sid, 0).await;
    assert_eq!(redis.channels("socket.io#/#?*"), Vec::<String>::new());
    assert_eq!(
        redis.numsub("socket.io#/#"),
        1,
        "the namespace channel stays"
    );
    a.wait_until("no room channel", |m| m.bridge().room_channels() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_is_one_subscribe() {
    let redis = RedisServer::start();
    let a = gateway(&redis, "rooms");
    let mut a1 = AClient::connect(a.addr, "/").await;
    subscribers(&redis, &a1.sid, 1).await;
    let rooms: Vec<String> = (0..50).map(|i| format!("burst-{i}")).collect();
    let before = redis.command_calls("subscribe");
    assert_eq!(
        a1.call("", 1, "join", json!(rooms)).await,
        json!({"ok": true})
    );
    subscribers(&redis, "burst-49", 1).await;
    for r in &rooms {
        assert_eq!(redis.numsub(&room(r)), 1, "{r}");
    }
    assert_eq!(
        redis.command_calls("subscribe") - before,
        1,
        "50 rooms gained at once: one SUBSCRIBE"
    );
    let before = redis.command_calls("unsubscribe");
    assert_eq!(
        a1.call("", 2, "leave", json!(rooms)).await,
        json!({"ok": true})
    );
    subscribers(&redis, "burst-49", 0).await;
    assert_eq!(redis.command_calls("unsubscribe") - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_gets_the_current_room_set_again() {
    let mut redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "rooms"), gateway(&redis, "rooms"));
    let mut a1 = joined(a.addr, json!(["kept", "dropped"])).await;
    let b1 = joined(b.addr, json!(["elsewhere"])).await;
    subscribers(&redis, "kept", 1).await;

    redis.kill();
    a.wait_until("the bridge to notice", |m| m.bridge().connected() == 0);
    // Changes while Redis is away: the fresh connection must carry them.
    assert_eq!(
        a1.call("", 2, "leave", json!("dropped")).await,
        json!({"ok": true})
    );
    assert_eq!(
        a1.call("", 3, "join", json!("gained")).await,
        json!({"ok": true})
    );
    redis.restart();
    a.wait_until("A to reconnect", |m| m.bridge().connected() == 1);
    b.wait_until("B to reconnect", |m| m.bridge().connected() == 1);
    subscribers(&redis, "kept", 1).await;
    subscribers(&redis, "gained", 1).await;
    assert_eq!(redis.numsub(&room("dropped")), 0);
    assert_eq!(redis.numsub(&room(&a1.sid)), 1);
    assert_eq!(redis.numsub("socket.io#/#"), 2);

    b1.send(r#"42["publish",{"to":"gained","event":"after","data":1}]"#);
    assert_eq!(next_event(&mut a1).await.0, "after");
    b1.send(r#"42["publish",{"to":"kept","event":"after","data":2}]"#);
    assert_eq!(next_event(&mut a1).await.1, json!(2));
    assert!(a.metrics.bridge().reconnects() >= 1);
}

/// A machine in rooms mode and one in pattern mode (Node's subscription) share rooms both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_pattern_machines_share_one_cluster() {
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "rooms"), gateway(&redis, "pattern"));
    let mut a1 = joined(a.addr, json!(["both"])).await;
    let mut b1 = joined(b.addr, json!(["both"])).await;
    b1.send(r#"42["publish",{"to":"both","event":"from-pattern","data":1}]"#);
    assert_eq!(next_event(&mut a1).await.0, "from-pattern");
    a1.send(r#"42["publish",{"to":"both","event":"from-rooms","data":2}]"#);
    assert_eq!(next_event(&mut b1).await.0, "from-rooms");
    a1.send(r#"42["publish",{"event":"everyone","data":3}]"#);
    assert_eq!(next_event(&mut b1).await.0, "everyone");
    b1.send(r#"42["publish",{"event":"everyone","data":4}]"#);
    assert_eq!(next_event(&mut a1).await.1, json!(4));
    assert_eq!(
        redis.numsub(&room("both")),
        1,
        "only the rooms-mode machine"
    );
    assert_quiet(&mut a1, "a1").await;
    assert_quiet(&mut b1, "b1").await;
}

/// The gateway acknowledges a join once Redis has confirmed the room's subscription: right
/// after the acknowledgement Redis counts the machine, and a broadcast published then from
/// another machine arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_acknowledged_once_its_room_is_subscribed() {
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "rooms"), gateway(&redis, "rooms"));
    let mut a1 = AClient::connect(a.addr, "/").await;
    let b1 = joined(b.addr, json!([])).await;
    for i in 0..20 {
        let name = format!("acked-{i}");
        assert_eq!(
            a1.call("", i + 1, "join", json!(name)).await,
            json!({"ok": true})
        );
        assert_eq!(redis.numsub(&room(&name)), 1, "{name} right after the ack");
        b1.send(&format!(
            r#"42["publish",{{"to":"{name}","event":"n","data":{i}}}]"#
        ));
        assert_eq!(next_event(&mut a1).await.1, json!(i), "{name}");
    }
    // A join that needs no new subscription is acknowledged at once (no confirmation to
    // wait for): the room is held already.
    assert_eq!(
        a1.call("", 99, "join", json!("acked-0")).await,
        json!({"ok": true})
    );
    assert_eq!(a.metrics.bridge().dropped(), 0);
}

/// The promise: once the room's SUBSCRIBE is confirmed (Redis counts the machine), every
/// broadcast published to the room from then on is delivered. A join is local at once; what
/// is published between the join and the confirmation may be missed, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_subscription_is_confirmed_every_broadcast_arrives() {
    let redis = RedisServer::start();
    let (a, b) = (gateway(&redis, "rooms"), gateway(&redis, "rooms"));
    let b1 = joined(b.addr, json!([])).await;
    let mut members = Vec::new();
    for i in 0..4 {
        let name = format!("late-{i}");
        let mut c = AClient::connect(a.addr, "/").await;
        assert_eq!(
            c.call("", 1, "join", json!(name)).await,
            json!({"ok": true})
        );
        subscribers(&redis, &name, 1).await;
        for n in 0..10 {
            b1.send(&format!(
                r#"42["publish",{{"to":"{name}","event":"n","data":{n}}}]"#
            ));
        }
        for n in 0..10 {
            assert_eq!(next_event(&mut c).await.1, json!(n), "{name}");
        }
        members.push(c);
    }
    assert_eq!(a.metrics.bridge().dropped(), 0);
}

/// A mixed cluster: shardio in rooms mode, a Node server with the classic adapter (pattern
/// subscription) and the emitter; room and namespace broadcasts every way (tests/js).
#[test]
fn node_servers_and_the_emitter_share_rooms_with_a_rooms_mode_machine() {
    let redis = RedisServer::start();
    let server = gateway(&redis, "rooms");
    let out = run_script(
        "rooms_mixed.mjs",
        &[&redis.url(), &server.url()],
        Duration::from_secs(60),
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(server.metrics.bridge().malformed(), 0);
}
