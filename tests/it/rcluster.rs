//! The bridge on a Redis Cluster (`--redis-mode sharded`) and behind Sentinel: real
//! `redis-server` processes started by each test (3 masters, with replicas where a master is
//! killed; a master, a replica and a sentinel), shardio gateways of 2 shards, real clients, and
//! a Node server with the sharded adapter.

use crate::common;
use crate::redis::{joined, next_event, until_delivered};

use std::collections::HashSet;
use std::time::Duration;

use common::aclient::AClient;
use common::rcluster::{RedisCluster, SentinelSetup, SETTLE};
use common::{wait_until_async, TestServer, WAIT};
use serde_json::json;

/// The HTTP API's key on the servers that answer presence questions.
const API_KEY: &str = "cluster-test-key-0123";

/// Rooms whose channels the test checks lie on more than one master.
const ROOMS: [&str; 4] = ["room-a", "room-b", "room-c", "room-d"];

fn bridged(args: &[&str]) -> TestServer {
    let server = TestServer::gateway(2, args);
    server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
    server
}

fn sharded_gateway(cluster: &RedisCluster, subscription_mode: &str) -> TestServer {
    let urls = cluster.urls();
    bridged(&[
        "--redis",
        &urls,
        "--redis-mode",
        "sharded",
        "--redis-subscription-mode",
        subscription_mode,
    ])
}

/// Three shardio gateways and a Node sharded-adapter server on a 3-master cluster, all in
/// `subscription_mode`: the script checks every direction.
fn node_and_three_shardios(subscription_mode: &str) {
    let cluster = RedisCluster::start(3, 0);
    let masters: HashSet<usize> = ROOMS
        .iter()
        .map(|room| cluster.master_of(&format!("socket.io#/#{room}#")))
        .collect();
    assert!(
        masters.len() > 1,
        "the rooms' channels all lie on one master"
    );
    let servers: Vec<TestServer> = (0..3)
        .map(|_| sharded_gateway(&cluster, subscription_mode))
        .collect();
    let mut args = vec![
        cluster.urls(),
        subscription_mode.to_owned(),
        ROOMS.join(","),
    ];
    args.extend(servers.iter().map(TestServer::url));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::node::run_script("node_sharded.mjs", &args, Duration::from_secs(75));
    assert_eq!(out.trim(), "ok");
    for s in &servers {
        let b = s.metrics.bridge();
        assert_eq!((b.malformed(), b.dropped()), (0, 0));
    }
}

#[test]
fn shardio_and_node_sharded_servers_share_rooms_on_a_redis_cluster() {
    node_and_three_shardios("dynamic");
}

#[test]
fn the_static_subscription_mode_interoperates_too() {
    node_and_three_shardios("static");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_fails_over_and_delivery_resumes() {
    let mut cluster = RedisCluster::start(3, 1);
    let urls = cluster.urls();
    let args = [
        "--redis",
        &urls,
        "--redis-mode",
        "sharded",
        "--api-key",
        API_KEY,
    ];
    let (a, b) = (bridged(&args), bridged(&args));
    let a1 = joined(a.addr, json!("r")).await;
    let mut b1 = joined(b.addr, json!("r")).await;
    until_delivered(&a1, &mut b1, WAIT).await;

    // The master of room r's channel goes; its replica takes over its slots.
    let victim = cluster.master_of("socket.io#/#r#");
    cluster.kill(victim);
    until_delivered(&a1, &mut b1, SETTLE).await;
    cluster.wait_ok();
    assert!(
        a.metrics.bridge().reconnects() + b.metrics.bridge().reconnects() >= 1,
        "a bridge rebuilt its connection"
    );
    // The other way too, once both bridges are back.
    b.wait_until("b's bridge back", |m| m.bridge().connected() == 1);
    a.wait_until("a's bridge back", |m| m.bridge().connected() == 1);
    let mut a1 = a1;
    until_delivered(&b1, &mut a1, SETTLE).await;

    // A question from shardio (presence: fetchSockets) counts the servers with SHARDNUMSUB
    // and gets b's answer on a's own channel.
    let (status, _, body) = common::http_request(
        a.addr,
        &format!(
            "GET /api/v1/rooms/r HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
    let presence: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (presence["count"].clone(), presence["complete"].clone()),
        (json!(2), json!(true))
    );
    let mut ids: Vec<&str> = presence["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![a1.sid.as_str(), b1.sid.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_finds_the_master_through_sentinel_and_follows_a_failover() {
    let mut setup = SentinelSetup::start();
    let sentinel = setup.sentinel();
    let args = ["--redis-sentinel", &sentinel, "--redis-master", "mymaster"];
    let (a, b) = (bridged(&args), bridged(&args));
    let a1 = joined(a.addr, json!("r")).await;
    let mut b1 = joined(b.addr, json!("r")).await;
    until_delivered(&a1, &mut b1, WAIT).await;

    setup.master.kill();
    until_delivered(&a1, &mut b1, SETTLE).await;
    assert!(
        setup.replica.cli(&["role"]).starts_with("master"),
        "Sentinel promoted the replica"
    );
    for s in [&a, &b] {
        assert!(
            s.metrics.bridge().reconnects() >= 1,
            "the bridge reconnected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_by_sentinel_is_left_for_the_new_one() {
    let setup = SentinelSetup::start();
    let sentinel = setup.sentinel();
    let a = bridged(&["--redis-sentinel", &sentinel, "--redis-master", "mymaster"]);
    // The bridge's pattern subscription is on the master.
    assert_eq!(setup.master.cli(&["pubsub", "numpat"]).trim(), "1");

    // A failover with the old master still up: it becomes a replica, where a PUBLISH would
    // reach nobody on the new master. The bridge must move (Sentinel also kills the clients of
    // the old master; `+switch-master` makes the bridge leave it at the switch already).
    // Refused (NOGOODREPLICA) until the sentinel has heard from the replica: ask again.
    let started = common::wait_within(SETTLE, || {
        let answer = setup.sentinel_cli(&["sentinel", "failover", "mymaster"]);
        let ok = answer.trim() == "OK";
        if !ok {
            // Polling interval: each try starts a redis-cli.
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    assert!(started, "Sentinel did not start a failover");
    let moved = common::wait_within(SETTLE, || {
        setup.replica.cli(&["pubsub", "numpat"]).trim() == "1"
    });
    assert!(moved, "the bridge did not move to the new master");
    assert!(a.metrics.bridge().reconnects() >= 1);
    a.wait_until("the bridge back", |m| m.bridge().connected() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_master_is_followed() {
    let cluster = RedisCluster::start(3, 0);
    let (a, b) = (
        sharded_gateway(&cluster, "dynamic"),
        sharded_gateway(&cluster, "dynamic"),
    );
    let a1 = joined(a.addr, json!("r")).await;
    let mut b1 = joined(b.addr, json!("r")).await;
    until_delivered(&a1, &mut b1, WAIT).await;

    // Redis drops the subscriptions of a slot that leaves a node (SUNSUBSCRIBE from the
    // server); the bridge subscribes again where the slot went.
    let channel = "socket.io#/#r#";
    let to = (cluster.master_of(channel) + 1) % 3;
    cluster.move_slot(channel, to);
    until_delivered(&a1, &mut b1, SETTLE).await;
}

/// The room channels of the dynamic modes follow the shards' batched reports, as
/// `--redis-subscribe rooms` does: a gateway `join` is acknowledged once the master of the
/// room's slot has confirmed the SSUBSCRIBE, so a broadcast another server publishes right
/// after the ack arrives; the last member's leave unsubscribes; a socket's own id gets a
/// channel in `dynamic-private` only (as Node's adapter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_channels_follow_the_shards_and_a_join_waits_for_its_subscription() {
    let cluster = RedisCluster::start(3, 0);
    for mode in ["dynamic", "dynamic-private"] {
        let (a, b) = (
            sharded_gateway(&cluster, mode),
            sharded_gateway(&cluster, mode),
        );
        let mut a1 = AClient::connect(a.addr, "/").await;
        let b1 = joined(b.addr, json!([])).await;
        for i in 0..12 {
            let name = format!("{mode}-acked-{i}");
            let channel = format!("socket.io#/#{name}#");
            assert_eq!(
                a1.call("", i + 1, "join", json!(name)).await,
                json!({"ok": true})
            );
            assert_eq!(
                cluster.shardnumsub(&channel),
                1,
                "{channel} right after the ack"
            );
            b1.send(&format!(
                r#"42["publish",{{"to":"{name}","event":"n","data":{i}}}]"#
            ));
            assert_eq!(next_event(&mut a1).await.1, json!(i), "{name}");
        }
        let own = format!("socket.io#/#{}#", a1.sid);
        let want = i64::from(mode == "dynamic-private");
        wait_until_async(&format!("{own}: {want} subscriber"), || {
            cluster.shardnumsub(&own) == want
        })
        .await;
        let name = format!("{mode}-acked-0");
        assert_eq!(
            a1.call("", 100, "leave", json!(name)).await,
            json!({"ok": true})
        );
        let channel = format!("socket.io#/#{name}#");
        wait_until_async(&format!("{channel} unsubscribed"), || {
            cluster.shardnumsub(&channel) == 0
        })
        .await;
        assert_eq!(a.metrics.bridge().dropped(), 0);
    }
}
