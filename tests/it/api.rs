//! The backend HTTP API: every status it answers, emits reaching clients on every shard (and
//! through Redis on other shardio machines and Node servers), join / leave / disconnect,
//! presence, keep-alive, and the internal listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::aclient::AClient;
use crate::common::jwt::{hs256, now};
use crate::common::node::run_script;
use crate::common::polling::{HttpConn, Response};
use crate::common::redis::RedisServer;
use crate::common::{wait_until, Frame, TestServer, WAIT};

const KEY: &str = "api-key-0123456789abcdef";
const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// One API request on its own connection.
fn api(
    addr: SocketAddr,
    method: &str,
    route: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut conn = HttpConn::connect(addr);
    api_on(&mut conn, method, route, key, body)
}

/// One API request on `conn` (kept alive).
fn api_on(
    conn: &mut HttpConn,
    method: &str,
    route: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let auth = key.map(|k| format!("Authorization: Bearer {k}"));
    let mut headers = vec!["Content-Type: application/json"];
    if let Some(auth) = &auth {
        headers.push(auth);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    conn.request(
        method,
        &format!("/api/v1/{route}"),
        &headers,
        body.as_bytes(),
    );
    conn.response()
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("a JSON body: {}", r.text()))
}

/// Joins `room` through the gateway and waits for the ack.
async fn join(c: &mut AClient, room: &str) {
    let ack = c.call("", 1, "join", json!(room)).await;
    assert_eq!(ack, json!({"ok": true}));
}

/// The next event of `c`, as `[name, args...]`.
async fn event(c: &mut AClient) -> Value {
    loop {
        let text = c.recv_text().await;
        if let Some(rest) = text.strip_prefix("42") {
            return serde_json::from_str(rest).expect("an event");
        }
    }
}

#[test]
fn without_a_key_the_api_is_off() {
    let server = TestServer::gateway(1, &[]);
    let r = api(server.addr, "GET", "rooms", Some(KEY), None);
    assert_eq!(r.status, 404);
}

#[test]
fn every_status_the_api_answers() {
    let server = TestServer::gateway(2, &["--api-key", KEY, "--max-payload", "2000"]);
    let addr = server.addr;
    let emit = json!({"rooms": ["a"], "event": "e", "data": 1});
    let unauthorized = api(addr, "POST", "emit", None, Some(&emit));
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        api(
            addr,
            "POST",
            "emit",
            Some("wrong-key-0123456789abc"),
            Some(&emit)
        )
        .status,
        401
    );
    let unknown = api(addr, "GET", "nothing-here", Some(KEY), None);
    assert_eq!(
        (unknown.status, json_of(&unknown)["error"].clone()),
        (404, json!("no such route"))
    );
    let wrong_method = api(addr, "GET", "emit", Some(KEY), None);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_eq!(
        api(addr, "DELETE", "rooms/x", Some(KEY), None).header("allow"),
        Some("GET")
    );
    let mut conn = HttpConn::connect(addr);
    conn.request(
        "POST",
        "/api/v1/emit",
        &[&format!("Authorization: Bearer {KEY}")],
        b"{not json",
    );
    let bad = conn.response();
    assert_eq!(bad.status, 400);
    assert!(json_of(&bad)["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    for (body, field) in [
        (json!({"rooms": ["a"]}), "event"),
        (json!({"event": "disconnect"}), "event"),
        (json!({"event": "e", "nsp": "/nowhere"}), "nsp"),
        (json!({"event": "e", "rooms": [1]}), "rooms"),
        (json!([]), "emit"),
        (json!("text"), "body"),
    ] {
        let r = api(addr, "POST", "emit", Some(KEY), Some(&body));
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(json_of(&r)["field"], field, "{body}: {}", r.text());
    }
    let join_without_room = api(addr, "POST", "join", Some(KEY), Some(&json!({"rooms": []})));
    assert_eq!(json_of(&join_without_room)["field"], "room");
    let disconnect_without_selection = api(addr, "POST", "disconnect", Some(KEY), Some(&json!({})));
    assert_eq!(json_of(&disconnect_without_selection)["field"], "rooms");
    let big = json!({"event": "e", "data": "x".repeat(3000)});
    assert_eq!(api(addr, "POST", "emit", Some(KEY), Some(&big)).status, 413);
    let ok = api(addr, "POST", "emit", Some(KEY), Some(&emit));
    assert_eq!(ok.status, 202);
    assert_eq!(
        json_of(&ok),
        json!({"ok": true, "emitted": 1, "complete": true})
    );
    let rooms = api(addr, "GET", "rooms", Some(KEY), None);
    assert_eq!(rooms.status, 200);
    assert_eq!(
        json_of(&rooms),
        json!({"nsp": "/", "rooms": [], "complete": true})
    );
}

#[test]
fn one_connection_carries_many_requests() {
    let server = TestServer::gateway(1, &["--api-key", KEY]);
    let mut conn = HttpConn::connect(server.addr);
    for n in 0..50 {
        let body = json!({"rooms": "r", "event": "e", "data": n});
        assert_eq!(
            api_on(&mut conn, "POST", "emit", Some(KEY), Some(&body)).status,
            202
        );
    }
    // Errors keep the connection too when the body was read.
    assert_eq!(
        api_on(&mut conn, "POST", "emit", Some(KEY), Some(&json!({}))).status,
        400
    );
    assert_eq!(
        api_on(&mut conn, "GET", "rooms", Some(KEY), None).status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_reaches_clients_on_every_shard() {
    let server = TestServer::gateway(4, &["--api-key", KEY]);
    let mut clients = Vec::new();
    // The kernel spreads connections over the shards: connect until all four have some.
    while clients.len() < 8 || server.shards_used() < 4 {
        assert!(
            clients.len() < 200,
            "connections reached only {} shards",
            server.shards_used()
        );
        let mut c = AClient::connect(server.addr, "/").await;
        join(&mut c, "news").await;
        clients.push(c);
    }
    let skipped = clients[0].sid.clone();
    let addr = server.addr;
    let body =
        json!({"rooms": ["news"], "except": [skipped], "event": "headline", "data": {"n": 1}});
    let r = tokio::task::spawn_blocking(move || api(addr, "POST", "emit", Some(KEY), Some(&body)))
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    for c in &mut clients[1..] {
        assert_eq!(event(c).await, json!(["headline", {"n": 1}]));
    }
    // A batch keeps its order; the excepted client gets only what is for it.
    let batch = json!([
        {"rooms": "news", "event": "first", "data": 1},
        {"rooms": ["news"], "event": "second", "data": 2},
    ]);
    let r = tokio::task::spawn_blocking(move || api(addr, "POST", "emit", Some(KEY), Some(&batch)))
        .await
        .unwrap();
    assert_eq!(json_of(&r)["emitted"], 2);
    for c in &mut clients {
        assert_eq!(event(c).await, json!(["first", 1]));
        assert_eq!(event(c).await, json!(["second", 2]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_and_disconnect_select_sockets_by_room_or_id() {
    let server = TestServer::gateway(4, &["--api-key", KEY]);
    let addr = server.addr;
    let call = move |route: &'static str, body: Value| {
        tokio::task::spawn_blocking(move || api(addr, "POST", route, Some(KEY), Some(&body)))
    };
    let mut a = AClient::connect(addr, "/").await;
    let mut b = AClient::connect(addr, "/").await;
    let r = call("join", json!({"rooms": [a.sid.clone()], "room": "vip"}))
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    // The join travels to a's shard: repeat the emit until it shows.
    let emit = json!({"rooms": "vip", "event": "v", "data": 1});
    loop {
        call("emit", emit.clone()).await.unwrap();
        if let Some(Frame::Text(t)) = a.try_recv(Duration::from_millis(100)).await {
            assert_eq!(t, r#"42["v",1]"#);
            break;
        }
    }
    assert_eq!(
        call("leave", json!({"rooms": "vip", "room": "vip"}))
            .await
            .unwrap()
            .status,
        202
    );
    assert_eq!(
        call("join", json!({"rooms": [], "room": ["all"]}))
            .await
            .unwrap()
            .status,
        202
    );
    let marker = json!({"rooms": "all", "event": "m", "data": 0});
    for c in [&mut a, &mut b] {
        loop {
            call("emit", marker.clone()).await.unwrap();
            if let Some(Frame::Text(t)) = c.try_recv(Duration::from_millis(100)).await {
                if t == r#"42["m",0]"# {
                    break;
                }
                assert_eq!(
                    t, r#"42["v",1]"#,
                    "only repeats of the vip emit came before"
                );
            }
        }
    }
    let r = call("disconnect", json!({"rooms": [b.sid.clone()]}))
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    loop {
        match b.recv().await {
            Frame::Text(t) if t == "41" => break,
            Frame::Text(t) if t == r#"42["m",0]"# => {}
            other => panic!("expected a disconnect, got {other:?}"),
        }
    }
}

#[test]
fn presence_names_members_their_user_shard_and_machine() {
    let server = TestServer::gateway(
        4,
        &[
            "--api-key",
            KEY,
            "--jwt-secret",
            SECRET,
            "--node-name",
            "box-a",
        ],
    );
    let token = |sub: &str| {
        hs256(
            SECRET,
            &json!({"sub": sub, "rooms": ["*"], "exp": now() + 300}),
        )
    };
    let mut clients = Vec::new();
    for sub in ["alice", "bob"] {
        let (mut c, _) = crate::common::WsClient::open(server.addr, "/socket.io/");
        c.send_text(&format!("40{}", json!({"token": token(sub)})));
        assert!(c.recv_text().starts_with("40{"));
        c.send_text(r#"421["join","news"]"#);
        assert_eq!(c.recv_text(), r#"431[{"ok":true}]"#);
        clients.push(c);
    }
    let r = api(server.addr, "GET", "rooms/news", Some(KEY), None);
    assert_eq!(r.status, 200);
    let body = json_of(&r);
    assert_eq!(body["count"], 2);
    assert_eq!(body["complete"], true);
    let mut members = body["members"].as_array().unwrap().clone();
    members.sort_by_key(|m| m["sub"].as_str().unwrap_or_default().to_owned());
    for (m, sub) in members.iter().zip(["alice", "bob"]) {
        assert_eq!(m["sub"], sub);
        assert_eq!(m["machine"], "box-a");
        assert!(m["shard"].as_u64().is_some_and(|s| s < 4), "{m}");
        assert_eq!(m["id"].as_str().map(str::len), Some(20));
    }
    let user_room = api(server.addr, "GET", "rooms/user%3Aalice", Some(KEY), None);
    assert_eq!(
        json_of(&user_room)["count"],
        1,
        "each user has its own room"
    );
    let rooms = json_of(&api(server.addr, "GET", "rooms?nsp=/", Some(KEY), None));
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"news") && names.contains(&"user:bob"),
        "{names:?}"
    );
    let nowhere = api(server.addr, "GET", "rooms/news?nsp=/admin", Some(KEY), None);
    assert_eq!(json_of(&nowhere)["field"], "nsp");
}

#[test]
fn with_an_internal_listener_the_api_is_there_only() {
    let server = TestServer::gateway(2, &["--api-key", KEY, "--internal-listen", "127.0.0.1:0"]);
    let internal = server.internal.expect("the internal listener is bound");
    assert_ne!(internal, server.addr);
    assert_eq!(api(internal, "GET", "rooms", Some(KEY), None).status, 200);
    assert_eq!(
        api(server.addr, "GET", "rooms", Some(KEY), None).status,
        404
    );
    let r = crate::common::polling::request(
        internal,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "the internal address serves no clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_an_emit_reaches_other_machines_and_presence_spans_them() {
    let redis = RedisServer::start();
    let url = redis.url();
    let a = TestServer::gateway(
        2,
        &["--api-key", KEY, "--redis", &url, "--node-name", "box-a"],
    );
    let b = TestServer::gateway(2, &["--redis", &url, "--node-name", "box-b"]);
    let mut on_b = AClient::connect(b.addr, "/").await;
    join(&mut on_b, "news").await;
    let addr = a.addr;
    let get = move |route: &'static str| {
        tokio::task::spawn_blocking(move || api(addr, "GET", route, Some(KEY), None))
    };
    // The other machine's answer comes through Redis (once both bridges are subscribed).
    let deadline = tokio::time::Instant::now() + WAIT;
    let presence = loop {
        let presence = json_of(&get("rooms/news").await.unwrap());
        if presence["count"] == 1 {
            break presence;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "box-b's member never showed: {presence}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(presence["complete"], true);
    assert_eq!(presence["members"][0]["machine"], "box-b");
    assert_eq!(presence["members"][0]["id"], json!(on_b.sid));
    let emit = json!({"rooms": "news", "event": "far", "data": "hi"});
    let r = tokio::task::spawn_blocking(move || api(addr, "POST", "emit", Some(KEY), Some(&emit)))
        .await
        .unwrap();
    assert_eq!(json_of(&r)["complete"], true);
    assert_eq!(event(&mut on_b).await, json!(["far", "hi"]));
    // Redis away: this machine does its part, the answer says the rest is missing.
    drop(redis);
    let emit = json!({"rooms": "news", "event": "x"});
    wait_until("the bridge sees Redis gone", || {
        a.metrics.bridge().connected() == 0
    });
    let r = api(a.addr, "POST", "emit", Some(KEY), Some(&emit));
    assert_eq!(r.status, 202);
    let body = json_of(&r);
    assert_eq!(body["complete"], false);
    assert!(body["incomplete"].as_str().unwrap().contains("Redis"));
    let presence = json_of(&api(a.addr, "GET", "rooms/news", Some(KEY), None));
    assert_eq!(
        (presence["count"].clone(), presence["complete"].clone()),
        (json!(0), json!(false))
    );
}

#[test]
fn an_api_emit_reaches_the_clients_of_a_node_socketio_server() {
    let redis = RedisServer::start();
    let url = redis.url();
    let server = TestServer::gateway(2, &["--api-key", KEY, "--redis", &url]);
    run_script(
        "api_node.mjs",
        &[&url, &server.url(), KEY],
        Duration::from_secs(45),
    );
}
