//! The operator's endpoints: `/metrics` counts what clients do, exactly, in a text a real
//! Prometheus server scrapes; `/healthz` and `/readyz` on the public port or the internal one;
//! `/readyz` follows Redis and the drain, and HAProxy's checks (the deployed configuration)
//! follow `/readyz`, taking a draining machine out before it closes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::common::haproxy::Haproxy;
use crate::common::jwt::{hs256, now};
use crate::common::polling::{request, PollingClient};
use crate::common::process::ShardioProcess;
use crate::common::prometheus::Prometheus;
use crate::common::redis::RedisServer;
use crate::common::scrape::Scrape;
use crate::common::{self, http_get as get, http_request, TestServer, WsClient, WAIT};

/// The Engine.IO packets of a polling payload.
fn packets(payload: &str) -> Vec<String> {
    payload.split('\u{1e}').map(str::to_owned).collect()
}

#[test]
fn metrics_count_what_clients_do_per_shard() {
    let server = TestServer::gateway(2, &[]);
    // What the clients send and get, Engine.IO packets as text, to check the byte counts.
    let (mut sent, mut received) = (Vec::<String>::new(), Vec::<String>::new());

    let (mut a, _) = WsClient::open(server.addr, "/socket.io/");
    for packet in ["40", r#"421["join","r"]"#] {
        a.send_text(packet);
        sent.push(packet.into());
        received.push(a.recv_text());
    }
    assert_eq!(received[1], r#"431[{"ok":true}]"#);

    let (b, _) = PollingClient::open(server.addr, "/socket.io/");
    for packet in ["40", r#"422["join","r"]"#] {
        b.send(packet);
        sent.push(packet.into());
        received.extend(packets(&b.recv()));
    }
    assert_eq!(
        received.last().map(String::as_str),
        Some(r#"432[{"ok":true}]"#)
    );

    // A publishes to the room: one broadcast, delivered to B (the sender is skipped).
    let publish = r#"42["publish",{"to":"r","event":"tick","data":"x"}]"#;
    a.send_text(publish);
    sent.push(publish.into());
    let tick = b.recv();
    assert_eq!(tick, r#"42["tick","x"]"#);
    received.push(tick);
    // A namespace that does not exist is refused.
    a.send_text("40/nope,");
    sent.push("40/nope,".into());
    let refusal = a.recv_text();
    assert!(refusal.starts_with("44/nope,"), "{refusal}");
    received.push(refusal);

    let m = Scrape::of(server.addr);
    assert_eq!(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
    // Every per-shard series has one sample per shard.
    assert_eq!(m.series("shardio_handshakes_total", &[]), 2);
    assert_eq!(m.series("shardio_connections", &[("shard", "1")]), 2);
    assert_eq!(m.sum("shardio_shards", &[]), 2.0);
    let websocket = [("transport", "websocket")];
    assert_eq!(m.sum("shardio_connections", &websocket), 1.0);
    assert_eq!(
        m.sum("shardio_connections", &[("transport", "polling")]),
        1.0
    );
    assert_eq!(m.sum("shardio_handshakes_total", &[]), 2.0);
    assert_eq!(m.sum("shardio_namespace_connects_total", &[]), 2.0);
    let unknown = [("reason", "unknown_namespace")];
    assert_eq!(m.sum("shardio_namespace_refusals_total", &unknown), 1.0);
    assert_eq!(m.sum("shardio_namespace_refusals_total", &[]), 1.0);
    assert_eq!(m.sum("shardio_broadcasts_total", &[]), 1.0);
    assert_eq!(m.sum("shardio_deliveries_total", &[]), 1.0);
    // Messages both ways, and their bytes: exactly what the clients sent and got.
    let bytes = |packets: &[String]| packets.iter().map(String::len).sum::<usize>() as f64;
    assert_eq!(
        m.sum("shardio_messages_received_total", &[]),
        sent.len() as f64
    );
    assert_eq!(m.sum("shardio_received_bytes_total", &[]), bytes(&sent));
    assert_eq!(
        m.sum("shardio_messages_sent_total", &[]),
        received.len() as f64
    );
    assert_eq!(m.sum("shardio_sent_bytes_total", &[]), bytes(&received));
    // The handshake GET, then one GET per answer; one POST per packet sent.
    let polling = "shardio_polling_requests_total";
    assert_eq!(m.sum(polling, &[("method", "GET")]), 4.0);
    assert_eq!(m.sum(polling, &[("method", "POST")]), 2.0);
    assert_eq!(
        m.sum("shardio_handoffs_sent_total", &[]),
        m.sum("shardio_handoffs_received_total", &[])
    );
    assert_eq!(m.sum("shardio_disconnects_total", &[]), 0.0);
    // The same counters, read in the process.
    let shards = server.metrics.shards();
    assert_eq!(shards.iter().map(|s| s.deliveries()).sum::<u64>(), 1);
    assert_eq!(shards.iter().map(|s| s.messages_in()).sum::<u64>(), 6);

    // A leaves: its transport closes; the gauge goes down, the reason is counted.
    drop(a);
    server.wait_until("A's session to end", |m| m.sessions_open() == 1);
    let m = Scrape::of(server.addr);
    assert_eq!(m.sum("shardio_connections", &websocket), 0.0);
    let closed = [("reason", "transport_close")];
    assert_eq!(m.sum("shardio_disconnects_total", &closed), 1.0);
    assert_eq!(m.sum("shardio_disconnects_total", &[]), 1.0);
}

#[test]
fn an_upgrade_moves_a_session_from_polling_to_websocket() {
    let server = TestServer::gateway(1, &[]);
    let (c, _) = PollingClient::open(server.addr, "/socket.io/");
    let m = Scrape::of(server.addr);
    assert_eq!(
        m.sum("shardio_connections", &[("transport", "polling")]),
        1.0
    );
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={}", c.sid);
    let mut ws = WsClient::connect(server.addr, &target).expect("the upgrade's WebSocket");
    ws.send_text("2probe");
    assert_eq!(ws.recv_text(), "3probe");
    ws.send_text("5");
    server.wait_until("the upgrade", |_| {
        let m = Scrape::of(server.addr);
        m.sum("shardio_connections", &[("transport", "websocket")]) == 1.0
    });
    let m = Scrape::of(server.addr);
    assert_eq!(
        m.sum("shardio_connections", &[("transport", "polling")]),
        0.0
    );
    assert_eq!(m.sum("shardio_handshakes_total", &[]), 1.0);
}

#[test]
fn api_requests_and_jwt_refusals_are_counted_by_route_status_and_reason() {
    const KEY: &str = "api-key-0123456789abcdef";
    const SECRET: &str = "a-secret-of-at-least-32-bytes-long!!";
    let server = TestServer::gateway(2, &["--api-key", KEY, "--jwt-secret", SECRET]);
    let emit = serde_json::to_vec(&json!({"rooms": ["r"], "event": "e", "data": 1})).unwrap();
    let bearer = format!("Authorization: Bearer {KEY}");
    let json = "Content-Type: application/json";
    let api = |route: &str, method: &str, auth: bool, body: &[u8]| {
        let headers: Vec<&str> = if auth {
            vec![json, &bearer]
        } else {
            vec![json]
        };
        request(
            server.addr,
            method,
            &format!("/api/v1/{route}"),
            &headers,
            body,
        )
        .status
    };
    assert_eq!(api("emit", "POST", false, &emit), 401);
    assert_eq!(api("emit", "POST", true, &emit), 202);
    assert_eq!(api("emit", "POST", true, &emit), 202);
    assert_eq!(api("rooms/r", "GET", true, b""), 200);
    assert_eq!(api("no/such/route", "GET", true, b""), 404);

    // Two CONNECTs refused for their tokens, one accepted.
    let expired = hs256(SECRET, &json!({"sub": "a", "exp": now() - 60}));
    let valid = hs256(SECRET, &json!({"sub": "a", "exp": now() + 300}));
    for (auth, answer) in [
        (json!({}), "44"),
        (json!({"token": expired}), "44"),
        (json!({"token": valid}), "40"),
    ] {
        let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
        c.send_text(&format!("40{auth}"));
        let reply = c.recv_text();
        assert!(reply.starts_with(answer), "{auth}: {reply}");
    }

    let m = Scrape::of(server.addr);
    let api_requests = |route: &str, status: &str| {
        m.sum(
            "shardio_api_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(api_requests("emit", "401"), 1.0);
    assert_eq!(api_requests("emit", "202"), 2.0);
    assert_eq!(api_requests("rooms/<room>", "200"), 1.0);
    assert_eq!(api_requests("other", "404"), 1.0);
    assert_eq!(m.sum("shardio_api_requests_total", &[]), 5.0);
    let jwt = "shardio_jwt_refusals_total";
    assert_eq!(m.sum(jwt, &[("reason", "missing")]), 1.0);
    assert_eq!(m.sum(jwt, &[("reason", "expired")]), 1.0);
    assert_eq!(m.sum(jwt, &[]), 2.0);
    let refusals = "shardio_namespace_refusals_total";
    assert_eq!(m.sum(refusals, &[("reason", "middleware")]), 2.0);
    assert_eq!(m.sum("shardio_namespace_connects_total", &[]), 1.0);
    assert_eq!(server.metrics.jwt_refusals("expired"), 1);
    assert_eq!(server.metrics.api_requests("emit", 202), 2);
}

#[test]
fn with_an_internal_listener_metrics_leave_the_public_port_and_health_is_on_both() {
    let server = TestServer::gateway(2, &["--internal-listen", "127.0.0.1:0"]);
    let internal = server.internal.expect("the internal listener");
    let m = Scrape::of(internal);
    assert_eq!(m.sum("shardio_shards", &[]), 2.0);
    assert_eq!(get(server.addr, "/metrics").0, 404);
    for addr in [server.addr, internal] {
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
        assert_eq!(get(addr, "/readyz"), (200, "ready\n".into()));
    }
    // Only GET; the API is off without a key.
    let (status, head, _) = http_request(
        internal,
        "POST /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    assert_eq!(get(internal, "/api/v1/rooms").0, 404);
    // OpenMetrics for the scrapers that ask for it.
    let (status, head, body) = http_request(
        internal,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[test]
fn readyz_is_503_while_the_configured_redis_is_away() {
    let mut redis = RedisServer::start();
    let server = TestServer::gateway(2, &["--redis", &redis.url()]);
    let ready = || get(server.addr, "/readyz");
    common::wait_until("ready with Redis", || ready().0 == 200);
    assert_eq!(
        Scrape::of(server.addr).sum("shardio_redis_connected", &[]),
        1.0
    );

    redis.kill();
    common::wait_until("not ready without Redis", || ready().0 == 503);
    assert_eq!(ready().1, "not ready: redis unreachable\n");
    // Alive all the same, and serving its own clients.
    assert_eq!(get(server.addr, "/healthz").0, 200);
    let _client = WsClient::socketio(server.addr, None);
    assert_eq!(
        Scrape::of(server.addr).sum("shardio_redis_connected", &[]),
        0.0
    );

    redis.restart();
    common::wait_until("ready again", || ready().0 == 200);
    let m = Scrape::of(server.addr);
    assert!(m.sum("shardio_redis_reconnects_total", &[]) >= 1.0);
}

#[test]
fn a_real_prometheus_scrapes_the_internal_listener() {
    let server = TestServer::gateway(2, &["--internal-listen", "127.0.0.1:0"]);
    let internal = server.internal.expect("the internal listener");
    let prometheus = Prometheus::start(internal);
    let _clients: Vec<_> = (0..3)
        .map(|_| WsClient::socketio(server.addr, None))
        .collect();
    // Prometheus starts scraping a few seconds after it is ready (it batches target updates).
    let sees = |expr: &str, want: f64| {
        common::wait_within(Duration::from_secs(30), || {
            prometheus.query(expr) == Some(want)
        })
    };
    assert!(sees("up{job=\"shardio\"}", 1.0), "the scrape is up");
    // Prometheus read every series and their labels: the sessions, per shard and in all.
    assert!(sees(
        "sum(shardio_connections{transport=\"websocket\"})",
        3.0
    ));
    assert!(
        sees("count(shardio_handshakes_total)", 2.0),
        "one series per shard"
    );
    assert!(sees("sum(shardio_namespace_connects_total)", 3.0));
    assert!(sees("shardio_shards", 2.0));
    // A scrape with one malformed or duplicated sample fails as a whole: all were taken.
    let scraped = prometheus.query("scrape_samples_scraped{job=\"shardio\"}");
    let exposed = Scrape::of(internal).samples.len() as f64;
    assert_eq!(scraped, Some(exposed));
}

#[test]
fn readyz_turns_503_on_sigterm_and_haproxy_stops_sending_before_the_drain_delay_ends() {
    let redis = RedisServer::start();
    // A: the binary with a drain delay, stopped by SIGTERM. B: in this process.
    let a = ShardioProcess::start(&[
        "--shards",
        "2",
        "--redis",
        &redis.url(),
        "--drain-delay",
        "20000",
        "--shutdown-timeout",
        "2000",
    ]);
    a.wait_for_line("Redis bridge connected", WAIT);
    let b = TestServer::gateway(2, &["--redis", &redis.url()]);
    common::wait_until("B ready", || get(b.addr, "/readyz").0 == 200);
    let lb = Haproxy::start(&[a.addr, b.addr]);
    let lb_addr = SocketAddr::from(([127, 0, 0, 1], lb.port));
    // A client of A, connected before the drain.
    let (mut on_a, _) = WsClient::socketio(a.addr, None);
    on_a.send_text(r#"421["join","r"]"#);
    assert_eq!(on_a.recv_text(), r#"431[{"ok":true}]"#);

    a.signal("TERM");
    common::wait_until("A not ready", || get(a.addr, "/readyz").0 == 503);
    assert_eq!(get(a.addr, "/readyz").1, "not ready: draining\n");

    // HAProxy's /readyz checks take A out: handshakes through it all land on B, while A
    // still answers (its drain delay has not ended).
    let handshakes_on_b = || {
        b.metrics
            .shards()
            .iter()
            .map(|s| s.sessions_total())
            .sum::<u64>()
    };
    let mut in_a_row = 0;
    let moved = common::wait_within(Duration::from_secs(15), || {
        let before = handshakes_on_b();
        let r = request(
            lb_addr,
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        in_a_row = if handshakes_on_b() == before + 1 {
            in_a_row + 1
        } else {
            0
        };
        in_a_row == 10
    });
    assert!(
        moved,
        "HAProxy kept sending handshakes to the draining machine"
    );
    assert_eq!(
        get(a.addr, "/healthz").0,
        200,
        "A still serves during the delay"
    );

    // A's client was served all along: a publish from B reaches it through Redis.
    let (mut publisher, _) = WsClient::socketio(b.addr, None);
    publisher.send_text(r#"42["publish",{"to":"r","event":"tick","data":"drain"}]"#);
    assert_eq!(on_a.recv_text(), r#"42["tick","drain"]"#);
}
