//! Interest routing on a real 4-shard server: a broadcast to a room travels on the bus only to
//! the shards with a member in it (the whole namespace to every shard), joins, leaves and
//! disconnects move the marks, and broadcasts from Redis are routed the same way. Where a
//! client lands is the kernel's choice (SO_REUSEPORT); its socket id names its shard.

use crate::common;

use std::net::SocketAddr;

use common::aclient::AClient;
use common::redis::RedisServer;
use common::scrape::Scrape;
use common::TestServer;
use serde_json::{json, Value};
use shardio::engineio::Sid;
use shardio::gateway::endpoints as default_endpoints;
use shardio::Config;

const SHARDS: usize = 4;

fn gateway_server(shards: usize, redis: Option<&RedisServer>) -> TestServer {
    let mut args = vec!["shardio".to_owned()];
    if let Some(redis) = redis {
        args.extend(["--redis".to_owned(), redis.url()]);
    }
    let config = <Config as clap::Parser>::parse_from(args);
    let server = TestServer::start_with_redis(
        shards,
        default_endpoints(&config, None),
        redis.map(|_| config.redis.clone()),
    );
    if redis.is_some() {
        server.wait_until("the bridge to subscribe", |m| m.bridge().connected() == 1);
    }
    server
}

fn shard_of(c: &AClient) -> usize {
    Sid::parse(&c.sid).expect("a socket id").shard()
}

/// Connects clients until each of the `shards` shards holds at least `per_shard` of them;
/// returns them sorted by shard: `clients[s]` are those of shard `s`.
async fn clients_on_every_shard(
    addr: SocketAddr,
    shards: usize,
    per_shard: usize,
) -> Vec<Vec<AClient>> {
    let mut by_shard: Vec<Vec<AClient>> = (0..shards).map(|_| Vec::new()).collect();
    for _ in 0..400 {
        if by_shard.iter().all(|c| c.len() >= per_shard) {
            return by_shard;
        }
        let c = AClient::connect(addr, "/").await;
        by_shard[shard_of(&c)].push(c);
    }
    panic!("400 connections did not reach every shard {per_shard} times");
}

async fn join(c: &mut AClient, room: &str) {
    assert_eq!(
        c.call("", 1, "join", json!(room)).await,
        json!({"ok": true})
    );
}

async fn leave(c: &mut AClient, room: &str) {
    assert_eq!(
        c.call("", 2, "leave", json!(room)).await,
        json!({"ok": true})
    );
}

/// Publishes `{"n": n}` as event `m` to `to` (the whole namespace when `None`), and waits for
/// the gateway's ack: the origin shard has handled it (delivered locally, sent on the bus).
async fn publish(c: &mut AClient, to: Option<&str>, n: usize) {
    let mut req = json!({"event": "m", "data": {"n": n}});
    if let Some(room) = to {
        req["to"] = json!(room);
    }
    assert_eq!(c.call("", 3, "publish", req).await, json!({"ok": true}));
}

/// The next event `m`'s number.
async fn next_m(c: &mut AClient) -> usize {
    loop {
        let text = c.recv_text().await;
        let Some(json) = text.strip_prefix("42") else {
            continue;
        };
        let v: Value = serde_json::from_str(json).expect("event JSON");
        if v[0] == "m" {
            return v[1]["n"].as_u64().expect("n") as usize;
        }
    }
}

fn received(server: &TestServer) -> Vec<u64> {
    let shards = server.metrics.shards();
    shards.iter().map(|s| s.bus_messages_received()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_broadcast_goes_only_to_the_shards_with_members() {
    let server = gateway_server(SHARDS, None);
    let mut by_shard = clients_on_every_shard(server.addr, SHARDS, 2).await;
    // Members on shards 0 and 2 (two each), the publisher on shard 3, nobody of the room on 1.
    let mut members: Vec<AClient> = Vec::new();
    for shard in [0, 2] {
        for mut c in by_shard[shard].drain(..2) {
            join(&mut c, "room").await;
            members.push(c);
        }
    }
    let mut publisher = by_shard[3].pop().expect("a client on shard 3");
    let before = received(&server);
    const N: usize = 50;
    for n in 0..N {
        publish(&mut publisher, Some("room"), n).await;
    }
    for m in &mut members {
        for n in 0..N {
            assert_eq!(
                next_m(m).await,
                n,
                "every member gets every publish, in order"
            );
        }
    }
    let after = received(&server);
    assert_eq!(
        after[1], before[1],
        "shard 1 holds no member: no bus message"
    );
    assert_eq!(
        after[3], before[3],
        "the publisher's shard delivers without the bus"
    );
    for shard in [0, 2] {
        assert_eq!(
            after[shard] - before[shard],
            N as u64,
            "shard {shard}: one per publish"
        );
    }

    // The whole namespace: every other shard gets it, and every client.
    publish(&mut publisher, None, N).await;
    for m in &mut members {
        assert_eq!(next_m(m).await, N);
    }
    let bystander = &mut by_shard[1][0];
    assert_eq!(next_m(bystander).await, N, "namespace-wide reaches shard 1");
    let now = received(&server);
    assert_eq!(now[1], after[1] + 1);

    // The operator's view: the same counter per shard in /metrics.
    let scrape = Scrape::of(server.addr);
    for (shard, count) in now.iter().enumerate() {
        let label = shard.to_string();
        let series = scrape.sum("shardio_bus_received_total", &[("shard", &label)]);
        assert_eq!(series, *count as f64, "shard {shard} in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_leaves_and_disconnects_move_a_shards_interest() {
    let server = gateway_server(SHARDS, None);
    let mut by_shard = clients_on_every_shard(server.addr, SHARDS, 2).await;
    let mut publisher = by_shard[0].pop().expect("a client on shard 0");
    let mut a = by_shard[1].pop().expect("a client on shard 1");
    let mut b = by_shard[1].pop().expect("another client on shard 1");

    join(&mut a, "r").await;
    join(&mut b, "r").await;
    publish(&mut publisher, Some("r"), 1).await;
    assert_eq!(next_m(&mut a).await, 1);
    assert_eq!(next_m(&mut b).await, 1);

    // One member leaves: the room keeps a member on shard 1, which still gets the broadcast.
    leave(&mut a, "r").await;
    let before = received(&server)[1];
    publish(&mut publisher, Some("r"), 2).await;
    assert_eq!(next_m(&mut b).await, 2);
    assert_eq!(received(&server)[1], before + 1);

    // The last member leaves: shard 1 is out of the room.
    leave(&mut b, "r").await;
    let before = received(&server)[1];
    publish(&mut publisher, Some("r"), 3).await;
    // A broadcast that reached shard 1 anyway would be counted by the time a later one is
    // delivered there: the bus keeps each sender's order.
    publish(&mut publisher, None, 4).await;
    assert_eq!(
        next_m(&mut a).await,
        4,
        "nothing of room r, then the namespace-wide one"
    );
    assert_eq!(next_m(&mut b).await, 4);
    assert_eq!(
        received(&server)[1],
        before + 1,
        "only the namespace-wide broadcast"
    );

    // Back in, then disconnected: leaving by disconnect clears the mark too.
    join(&mut a, "r").await;
    publish(&mut publisher, Some("r"), 5).await;
    assert_eq!(next_m(&mut a).await, 5);
    // Engine.IO's close packet: the client goes away, the server closes the session.
    a.send("1");
    server.wait_until("a's session to close", |m| {
        m.shards()[1].sessions_open() == by_shard[1].len() as u64 + 1
    });
    let before = received(&server)[1];
    publish(&mut publisher, Some("r"), 6).await;
    publish(&mut publisher, None, 7).await;
    assert_eq!(next_m(&mut b).await, 7);
    assert_eq!(
        received(&server)[1],
        before + 1,
        "only the namespace-wide broadcast"
    );
}

/// The ordering guarantee: once a join is acknowledged, a broadcast started afterwards on any
/// shard reaches the new member, even when its room is new on the member's shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_after_an_acknowledged_join_is_delivered() {
    let server = gateway_server(SHARDS, None);
    let mut by_shard = clients_on_every_shard(server.addr, SHARDS, 1).await;
    let mut clients: Vec<AClient> = by_shard.iter_mut().filter_map(|c| c.pop()).collect();
    for round in 0..100 {
        // A fresh room each round, joined on one shard, published to at once from another.
        let (to, from) = (round % SHARDS, (round + 1 + round / SHARDS % 3) % SHARDS);
        let room = format!("fresh-{round}");
        join(&mut clients[to], &room).await;
        publish(&mut clients[from], Some(&room), round).await;
        assert_eq!(next_m(&mut clients[to]).await, round, "round {round}");
    }
}

/// A socket's own room (its id) is reached on its shard without a mark in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_a_socket_id_goes_to_its_shard_only() {
    let server = gateway_server(SHARDS, None);
    let mut by_shard = clients_on_every_shard(server.addr, SHARDS, 1).await;
    let target_sid = by_shard[2][0].sid.clone();
    let mut publisher = by_shard[0].pop().expect("a client on shard 0");
    let before = received(&server);
    publish(&mut publisher, Some(&target_sid), 9).await;
    assert_eq!(next_m(&mut by_shard[2][0]).await, 9);
    let after = received(&server);
    assert_eq!(after[2], before[2] + 1);
    assert_eq!((after[1], after[3]), (before[1], before[3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_from_redis_go_only_to_the_shards_with_members() {
    let redis = RedisServer::start();
    let server = gateway_server(2, Some(&redis));
    let other = gateway_server(1, Some(&redis));
    let mut by_shard = clients_on_every_shard(server.addr, 2, 1).await;
    let mut member = by_shard[1].pop().expect("a client on shard 1");
    join(&mut member, "far").await;
    let mut publisher = AClient::connect(other.addr, "/").await;
    let before = received(&server);
    const N: usize = 20;
    for n in 0..N {
        publish(&mut publisher, Some("far"), n).await;
    }
    for n in 0..N {
        assert_eq!(next_m(&mut member).await, n);
    }
    // The whole namespace from Redis reaches both shards; shard 0 gets only that one.
    publish(&mut publisher, None, N).await;
    assert_eq!(next_m(&mut member).await, N);
    assert_eq!(next_m(&mut by_shard[0][0]).await, N);
    let after = received(&server);
    assert_eq!(after[1] - before[1], N as u64 + 1);
    assert_eq!(after[0] - before[0], 1, "shard 0 holds no member of far");
}

/// Batching: what one shard queues for another within a turn of its loop travels as one
/// parcel. A batch of emits posted to the API is handled in one turn of the shard that took the
/// request: every other shard with members receives all of them in a single parcel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turns_broadcasts_to_a_shard_travel_as_one_parcel() {
    const KEY: &str = "api-key-0123456789abcdef";
    const N: usize = 20;
    let server = TestServer::gateway(SHARDS, &["--api-key", KEY]);
    let mut by_shard = clients_on_every_shard(server.addr, SHARDS, 1).await;
    for clients in &mut by_shard {
        join(&mut clients[0], "batch").await;
    }
    let shards = server.metrics.shards();
    let parcels = |s: &shardio::metrics::ShardMetrics| s.bus_parcels_received();
    let before: Vec<(u64, u64)> = shards
        .iter()
        .map(|s| (s.bus_messages_received(), parcels(s)))
        .collect();
    let batch: Vec<Value> = (0..N)
        .map(|n| json!({"rooms": "batch", "event": "m", "data": {"n": n}}))
        .collect();
    let addr = server.addr;
    let status = tokio::task::spawn_blocking(move || {
        let mut conn = common::polling::HttpConn::connect(addr);
        let auth = format!("Authorization: Bearer {KEY}");
        let body = Value::Array(batch).to_string();
        conn.request("POST", "/api/v1/emit", &[&auth], body.as_bytes());
        conn.response().status
    })
    .await
    .expect("the request");
    assert_eq!(status, 202);
    for clients in &mut by_shard {
        for n in 0..N {
            assert_eq!(next_m(&mut clients[0]).await, n);
        }
    }
    let delta: Vec<(u64, u64)> = shards
        .iter()
        .zip(&before)
        .map(|(s, (m, p))| (s.bus_messages_received() - m, parcels(s) - p))
        .collect();
    // The shard that took the request delivered its own; each other one got one parcel.
    let origin = delta.iter().filter(|d| **d == (0, 0)).count();
    let batched = delta.iter().filter(|d| **d == (N as u64, 1)).count();
    assert_eq!(
        (origin, batched),
        (1, SHARDS - 1),
        "per shard (messages, parcels): {delta:?}"
    );
}
