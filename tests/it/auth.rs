//! The gateway's JWT authentication and room policy, and the Origin allow-list: the JWT matrix
//! through the official socket.io-client and python-socketio, claims enforced on join and
//! publish, the user room, expiring connections, key reload on SIGHUP (the real binary), and
//! Origin checks on both transports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::common::jwt::{hs256, hs256_with_kid, now, signed, KeyDir};
use crate::common::node::{run_python, run_script};
use crate::common::polling::request;
use crate::common::{Frame, TestServer, WsClient, WAIT};

const SECRET: &str = "test-secret-0123456789abcdef0123456789";

fn claims() -> Value {
    json!({"sub": "u1", "rooms": ["chat:*"], "publish": ["chat:1"], "exp": now() + 300})
}

/// Sends CONNECT with `auth` on a fresh WebSocket; returns the client and the reply packet.
fn connect(addr: SocketAddr, auth: &Value) -> (WsClient, String) {
    let (mut c, _) = WsClient::open(addr, "/socket.io/");
    c.send_text(&format!("40{auth}"));
    let reply = c.recv_text();
    (c, reply)
}

/// A connected client with `token`.
fn connected(addr: SocketAddr, token: &str) -> WsClient {
    let (c, reply) = connect(addr, &json!({"token": token}));
    assert!(reply.starts_with("40{\"sid\""), "connected, got {reply}");
    c
}

/// Emits `event` with `arg` and ack id `id`; returns the ack's first argument (events that
/// arrive meanwhile are skipped).
fn call(c: &mut WsClient, id: u32, event: &str, arg: Value) -> Value {
    c.send_text(&format!("42{id}{}", json!([event, arg])));
    let prefix = format!("43{id}");
    loop {
        let text = c.recv_text();
        if let Some(rest) = text.strip_prefix(&prefix) {
            let args: Vec<Value> = serde_json::from_str(rest).expect("ack arguments");
            return args.into_iter().next().unwrap_or(Value::Null);
        }
    }
}

/// The next event packet's `[name, arg]`.
fn next_event(c: &mut WsClient) -> Value {
    loop {
        let text = c.recv_text();
        if let Some(rest) = text.strip_prefix("42") {
            return serde_json::from_str(rest).expect("event arguments");
        }
    }
}

struct Keys {
    dir: KeyDir,
    rsa: (std::path::PathBuf, std::path::PathBuf),
    ec: (std::path::PathBuf, std::path::PathBuf),
    ed: (std::path::PathBuf, std::path::PathBuf),
    /// An RSA key the server does not know.
    stranger: (std::path::PathBuf, std::path::PathBuf),
}

impl Keys {
    fn new() -> Keys {
        let dir = KeyDir::new();
        Keys {
            rsa: dir.pair("rsa", "rsa"),
            ec: dir.pair("ec", "ec"),
            ed: dir.pair("ed", "ed25519"),
            stranger: dir.pair("stranger", "rsa"),
            dir,
        }
    }

    /// The server flags for the secret and the three public keys.
    fn flags(&self) -> Vec<String> {
        vec![
            "--jwt-secret".into(),
            SECRET.into(),
            "--jwt-public-key".into(),
            format!("rsa1={}", self.rsa.1.display()),
            "--jwt-public-key".into(),
            format!("ec1={}", self.ec.1.display()),
            "--jwt-public-key".into(),
            format!("ed1={}", self.ed.1.display()),
        ]
    }
}

fn server_with(keys: &Keys, extra: &[&str]) -> TestServer {
    let flags = keys.flags();
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    TestServer::gateway(4, &args)
}

/// A JWT case: name, token, transport, and the expected refusal (message, reason), or `None`
/// for a connection.
type Case = (&'static str, Option<String>, &'static str, Option<Refusal>);
type Refusal = (&'static str, &'static str);

#[test]
fn the_jwt_matrix_through_the_official_client() {
    let keys = Keys::new();
    let server = server_with(&keys, &[]);
    let c = claims();
    let valid_hs = hs256(SECRET, &c);
    let tampered = {
        use base64::Engine as _;
        let mut parts: Vec<String> = valid_hs.split('.').map(str::to_owned).collect();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"sub": "admin", "rooms": ["*"], "exp": now() + 300}).to_string());
        parts.join(".")
    };
    let rsa_public_pem = std::fs::read(&keys.rsa.1).expect("the public key");
    let cases: Vec<Case> = vec![
        ("hs256", Some(valid_hs.clone()), "websocket", None),
        (
            "hs256 over polling",
            Some(valid_hs.clone()),
            "polling",
            None,
        ),
        (
            "rs256 by kid",
            Some(signed(Algorithm::RS256, Some("rsa1"), &keys.rsa.0, &c)),
            "websocket",
            None,
        ),
        (
            "ps256 by kid",
            Some(signed(Algorithm::PS256, Some("rsa1"), &keys.rsa.0, &c)),
            "websocket",
            None,
        ),
        (
            "rs256 without kid",
            Some(signed(Algorithm::RS256, None, &keys.rsa.0, &c)),
            "websocket",
            None,
        ),
        (
            "es256",
            Some(signed(Algorithm::ES256, Some("ec1"), &keys.ec.0, &c)),
            "websocket",
            None,
        ),
        (
            "eddsa",
            Some(signed(Algorithm::EdDSA, Some("ed1"), &keys.ed.0, &c)),
            "websocket",
            None,
        ),
        (
            "expired",
            Some(hs256(SECRET, &json!({"sub": "u1", "exp": now() - 3600}))),
            "websocket",
            Some(("unauthorized: token expired", "expired")),
        ),
        (
            "not yet valid",
            Some(hs256(
                SECRET,
                &json!({"exp": now() + 7200, "nbf": now() + 3600}),
            )),
            "websocket",
            Some(("unauthorized: token not yet valid", "not_yet_valid")),
        ),
        (
            "wrong secret",
            Some(hs256("a-secret-the-server-does-not-have-000", &c)),
            "websocket",
            Some(("unauthorized: invalid signature", "signature")),
        ),
        (
            "unknown rsa key under a known kid",
            Some(signed(Algorithm::RS256, Some("rsa1"), &keys.stranger.0, &c)),
            "websocket",
            Some(("unauthorized: invalid signature", "signature")),
        ),
        (
            "alg none",
            Some(format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
            })),
            "websocket",
            Some(("unauthorized: invalid token", "malformed")),
        ),
        (
            "hs256 signed with the rsa public key (key confusion)",
            Some(hs256_with_kid("rsa1", &rsa_public_pem, &c)),
            "websocket",
            Some(("unauthorized: algorithm not allowed", "algorithm")),
        ),
        (
            "tampered payload",
            Some(tampered),
            "websocket",
            Some(("unauthorized: invalid signature", "signature")),
        ),
        (
            "unknown kid",
            Some(signed(Algorithm::RS256, Some("nobody"), &keys.rsa.0, &c)),
            "websocket",
            Some(("unauthorized: unknown key id", "unknown_kid")),
        ),
        (
            "no token",
            None,
            "websocket",
            Some(("unauthorized: token missing", "missing")),
        ),
    ];
    let input: Vec<Value> = cases
        .iter()
        .map(|(name, token, transport, _)| {
            json!({"name": name, "token": token, "transports": [transport]})
        })
        .collect();
    let file = keys.dir.path.join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&input).unwrap()).unwrap();
    let out = run_script(
        "auth_client.mjs",
        &[&server.url(), file.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let results: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a result line"))
        .collect();
    assert_eq!(results.len(), cases.len(), "one result per case:\n{out}");
    for ((name, _, _, expected), got) in cases.iter().zip(&results) {
        assert_eq!(got["name"], *name);
        match expected {
            None => assert_eq!(got["connected"], true, "{name}: {got}"),
            Some((message, reason)) => {
                assert_eq!(got["connected"], false, "{name}: {got}");
                assert_eq!(got["message"], *message, "{name}");
                assert_eq!(got["reason"], *reason, "{name}");
            }
        }
    }
    // No refusal leaks key material: the messages are the fixed texts above.
    assert!(!out.contains(SECRET) && !out.contains("BEGIN"));
}

#[test]
fn python_socketio_connects_with_a_token_and_is_refused_without_a_valid_one() {
    let keys = Keys::new();
    let server = server_with(&keys, &[]);
    let url = server.url();
    let valid = hs256(SECRET, &claims());
    run_python(
        "auth_client.py",
        &[&url, &valid, "ok"],
        Duration::from_secs(30),
    );
    let expired = hs256(SECRET, &json!({"exp": now() - 3600}));
    run_python(
        "auth_client.py",
        &[&url, &expired, "unauthorized: token expired"],
        Duration::from_secs(30),
    );
}

#[test]
fn claims_decide_what_a_socket_may_join_and_publish_and_nothing_else_is_delivered() {
    let keys = Keys::new();
    let server = server_with(&keys, &[]);
    let mut publisher = connected(server.addr, &hs256(SECRET, &claims()));
    let reader_claims =
        json!({"sub": "u2", "rooms": ["chat:*"], "publish": [], "exp": now() + 300});
    let mut reader = connected(server.addr, &hs256(SECRET, &reader_claims));
    assert_eq!(
        call(&mut reader, 1, "join", json!(["chat:1", "chat:2"])),
        json!({"ok": true})
    );
    assert_eq!(
        call(&mut publisher, 1, "join", json!("chat:x")),
        json!({"ok": true})
    );
    assert_eq!(
        call(&mut publisher, 2, "join", json!(["chat:3", "admin"])),
        json!({"error": "not allowed to join \"admin\""})
    );
    assert!(
        !call(&mut publisher, 3, "join", json!("user:u2"))["error"].is_null(),
        "another user's room is not in the patterns"
    );
    let denied = call(
        &mut publisher,
        4,
        "publish",
        json!({"to": "chat:2", "event": "leak", "data": 1}),
    );
    assert_eq!(
        denied,
        json!({"error": "not allowed to publish to \"chat:2\""})
    );
    let everywhere = call(
        &mut publisher,
        5,
        "publish",
        json!({"event": "leak", "data": 2}),
    );
    assert_eq!(
        everywhere,
        json!({"error": "not allowed to publish to the whole namespace"})
    );
    // The reader reads up to the allowed publish: nothing denied came before it.
    let allowed = call(
        &mut publisher,
        6,
        "publish",
        json!({"to": "chat:1", "event": "fine", "data": 3}),
    );
    assert_eq!(allowed, json!({"ok": true}));
    assert_eq!(next_event(&mut reader), json!(["fine", 3]));
    // A reader may not publish at all.
    assert_eq!(
        call(
            &mut reader,
            2,
            "publish",
            json!({"to": "chat:1", "event": "x"})
        ),
        json!({"error": "not allowed to publish to \"chat:1\""})
    );
}

#[test]
fn a_verified_socket_is_in_its_user_room_and_cannot_leave_it() {
    let keys = Keys::new();
    let server = server_with(&keys, &[]);
    let backend_like =
        json!({"sub": "svc", "rooms": [], "publish": ["user:*"], "exp": now() + 300});
    let mut publisher = connected(server.addr, &hs256(SECRET, &backend_like));
    let mut phone = connected(server.addr, &hs256(SECRET, &claims()));
    let mut laptop = connected(server.addr, &hs256(SECRET, &claims()));
    assert_eq!(
        call(&mut phone, 1, "leave", json!("user:u1")),
        json!({"error": "a socket cannot leave its user room \"user:u1\""})
    );
    let sent = call(
        &mut publisher,
        1,
        "publish",
        json!({"to": "user:u1", "event": "dm", "data": "hi"}),
    );
    assert_eq!(sent, json!({"ok": true}));
    assert_eq!(next_event(&mut phone), json!(["dm", "hi"]));
    assert_eq!(next_event(&mut laptop), json!(["dm", "hi"]));
}

#[test]
fn client_publish_off_leaves_publishing_to_the_backend() {
    let server = TestServer::gateway(2, &["--client-publish", "off"]);
    let (mut c, _) = WsClient::socketio(server.addr, None);
    assert_eq!(
        call(&mut c, 1, "publish", json!({"event": "x"})),
        json!({"error": "publishing is reserved to the backend API"})
    );
    assert_eq!(call(&mut c, 2, "join", json!("a")), json!({"ok": true}));
}

#[test]
fn an_expiring_token_closes_its_connection_with_a_reason() {
    let keys = Keys::new();
    let server = server_with(&keys, &["--jwt-expire-connections", "--jwt-leeway", "0"]);
    let soon = json!({"sub": "u1", "rooms": ["chat:*"], "exp": now() + 2});
    let mut c = connected(server.addr, &hs256(SECRET, &soon));
    assert_eq!(
        call(&mut c, 1, "join", json!("chat:1")),
        json!({"ok": true})
    );
    // It is told at `exp`, within the read limit of a few seconds.
    let deadline = std::time::Instant::now() + WAIT + Duration::from_secs(3);
    loop {
        assert!(std::time::Instant::now() < deadline, "no expiry notice");
        if let Frame::Text(t) = c.recv() {
            if let Some(refusal) = t.strip_prefix("44") {
                let err: Value = serde_json::from_str(refusal).unwrap();
                assert_eq!(
                    err,
                    json!({"message": "unauthorized: token expired", "data": {"reason": "expired"}})
                );
                break;
            }
        }
    }
    // The socket left its namespace: a packet for it now is refused by closing.
    c.send_text(r#"42["join","chat:2"]"#);
    assert!(matches!(c.recv(), Frame::Closed(_)));
}

#[test]
fn without_a_jwt_option_the_gateway_stays_open() {
    let server = TestServer::gateway(2, &[]);
    let (mut c, _) = WsClient::socketio(server.addr, None);
    assert_eq!(
        call(&mut c, 1, "join", json!("anything")),
        json!({"ok": true})
    );
}

/// The `shardio` binary, started with `args`; returns it, the address it listens on, and its
/// log lines.
fn spawn_binary(args: &[&str]) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardio"))
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--no-pin"])
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the shardio binary");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx.recv_timeout(WAIT).expect("the binary logs its address");
        if let Some(at) = line.find("address=") {
            let addr: String = line[at + 8..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            break addr.parse().expect("an address");
        }
    };
    (child, addr, rx)
}

/// Waits for a log line containing `what`.
fn logged(lines: &std::sync::mpsc::Receiver<String>, what: &str) {
    loop {
        let line = lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no log line with {what:?}"));
        if line.contains(what) {
            return;
        }
    }
}

/// Whether a CONNECT with `token` is accepted.
fn accepted(addr: SocketAddr, token: &str) -> bool {
    let (_c, reply) = connect(addr, &json!({"token": token}));
    reply.starts_with("40")
}

#[test]
fn keys_are_reloaded_on_sighup() {
    let dir = KeyDir::new();
    let (old_private, old_public) = dir.pair("old", "ec");
    let (new_private, new_public) = dir.pair("new", "ed25519");
    let live = dir.path.join("live.pub");
    std::fs::copy(&old_public, &live).unwrap();
    let spec = format!("k1={}", live.display());
    let (mut child, addr, log) = spawn_binary(&["--jwt-public-key", &spec]);
    let c = claims();
    let old_token = signed(Algorithm::ES256, Some("k1"), &old_private, &c);
    let new_token = signed(Algorithm::EdDSA, Some("k1"), &new_private, &c);
    assert!(accepted(addr, &old_token));
    assert!(!accepted(addr, &new_token));
    std::fs::copy(&new_public, &live).unwrap();
    let pid = child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    logged(&log, "JWT keys reloaded");
    assert!(
        accepted(addr, &new_token),
        "the new key is in use after SIGHUP"
    );
    assert!(!accepted(addr, &old_token), "the old key is gone");
    // A broken file on the next SIGHUP keeps the keys in use.
    std::fs::write(&live, "not a key").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    logged(&log, "JWT keys not reloaded");
    assert!(accepted(addr, &new_token));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the server"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_disallowed_origin_is_refused_on_both_transports_before_any_session() {
    let server = TestServer::gateway(
        2,
        &[
            "--allowed-origin",
            "https://app.example.com",
            "--allowed-origin",
            "https://b.example",
        ],
    );
    let target = "/socket.io/?EIO=4&transport=polling";
    let sessions = || -> u64 {
        server
            .metrics
            .shards()
            .iter()
            .map(|s| s.sessions_total())
            .sum()
    };
    let evil = request(
        server.addr,
        "GET",
        target,
        &["Origin: https://evil.example"],
        b"",
    );
    assert_eq!(evil.status, 403);
    assert_eq!(evil.text(), r#"{"code":4,"message":"Forbidden"}"#);
    let upper = request(
        server.addr,
        "GET",
        target,
        &["Origin: HTTPS://APP.EXAMPLE.COM"],
        b"",
    );
    assert_eq!(upper.status, 200, "origins compare case-insensitively");
    assert_eq!(
        request(server.addr, "GET", target, &[], b"").status,
        200,
        "no Origin: allowed"
    );
    let upgrade = |origin: &str| {
        crate::common::http_request(
            server.addr,
            &format!(
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n\r\n"
            ),
        )
    };
    let (status, _, body) = upgrade("https://evil.example");
    assert_eq!((status, body.as_str()), (403, "Forbidden"));
    assert_eq!(sessions(), 2, "the refused requests opened no session");
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://b.example\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut conn, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    crate::common::wait_until("the allowed upgrade's session", || sessions() == 3);
}
