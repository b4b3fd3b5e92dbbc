//! Socket.IO v5 against a real 4-shard server (docs/PROTOCOL.md §2): namespaces, auth, events,
//! acks both ways, binary attachments, invalid packets, connect timeout.

use crate::common;

use std::time::Duration;

use common::{Frame, TestServer, WsClient};
use serde_json::json;
use shardio::engineio::EngineConfig;
use shardio::protocol::socketio::Payload;
use shardio::socketio::{ConnectError, SocketIo, SocketIoConfig};
use shardio::{Config, Endpoint};

#[test]
fn connect_replies_with_a_sid_and_the_app_sees_the_auth_payload() {
    let server = TestServer::conformance();
    let (mut c, sid) = WsClient::socketio(server.addr, Some(r#"{"token":"123"}"#));
    assert_eq!(sid.len(), 20);
    assert_eq!(c.recv_text(), r#"42["auth",{"token":"123"}]"#);
    // Without auth the handshake auth is {}.
    let (mut c2, sid2) = WsClient::socketio(server.addr, None);
    assert_ne!(sid, sid2);
    assert_eq!(c2.recv_text(), r#"42["auth",{}]"#);
}

#[test]
fn namespaces_custom_and_invalid() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text(r#"40/custom,{"token":"abc"}"#);
    let reply = c.recv_text();
    assert!(reply.starts_with(r#"40/custom,{"sid":""#), "{reply}");
    assert_eq!(c.recv_text(), r#"42/custom,["auth",{"token":"abc"}]"#);
    // Unknown namespace: exact refusal, and the connection stays usable.
    c.send_text("40/random");
    assert_eq!(
        c.recv_text(),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    c.send_text("40");
    assert!(c.recv_text().starts_with(r#"40{"sid":""#));
    assert_eq!(c.recv_text(), r#"42["auth",{}]"#);
    c.send_text(r#"42["message","still open"]"#);
    assert_eq!(c.recv_text(), r#"42["message-back","still open"]"#);
}

#[test]
fn events_and_client_acks() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.recv_text(); // auth
    c.send_text(r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(c.recv_text(), r#"42["message-back",1,"2",{"3":[true]}]"#);
    c.send_text(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(c.recv_text(), r#"43456[1,"2",{"3":[false]}]"#);
}

#[test]
fn binary_attachments_both_ways() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.recv_text();
    c.send_text(r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    c.send_binary(&[1, 2, 3]);
    c.send_binary(&[4, 5, 6]);
    assert_eq!(
        c.recv_text(),
        r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(c.recv_binary(), vec![1, 2, 3]);
    assert_eq!(c.recv_binary(), vec![4, 5, 6]);
    c.send_text(r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    c.send_binary(&[1, 2, 3]);
    c.send_binary(&[4, 5, 6]);
    assert_eq!(
        c.recv_text(),
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(c.recv_binary(), vec![1, 2, 3]);
    assert_eq!(c.recv_binary(), vec![4, 5, 6]);
}

#[test]
fn invalid_packets_close_the_connection() {
    let server = TestServer::conformance();
    let bad: &[&[&str]] = &[
        &["4abc"],
        &["42{}"],
        &[r#"42abc["x"]"#],
        &[r#"42["disconnect"]"#],
        &[r#"4511-["m"]"#], // more than 10 attachments
        &[r#"451-["m",{"_placeholder":true,"num":0}]"#, "42[\"x\"]"], // text while binary pending
        &[r#"451-["m",{"_placeholder":true,"num":5}]"#, "BIN"], // placeholder out of range
        &["BIN"],           // binary nobody announced
        &[r#"42/custom,["message"]"#], // namespace not joined
        &["40"],            // second CONNECT to the same namespace
        &["44{}"],          // CONNECT_ERROR from a client
    ];
    for packets in bad {
        let (mut c, _) = WsClient::socketio(server.addr, None);
        c.recv_text();
        for p in *packets {
            if *p == "BIN" {
                c.send_binary(&[1]);
            } else {
                c.send_text(p);
            }
        }
        c.expect_closed();
    }
    server.wait_until("every session to close", |m| m.sessions_open() == 0);
}

#[test]
fn client_disconnect_keeps_the_engineio_connection() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::socketio(server.addr, None);
    c.recv_text();
    c.auto_pong = false;
    c.send_text("41");
    // Nothing is sent for the DISCONNECT; the next frame is the heartbeat.
    assert_eq!(c.recv(), Frame::Text("2".into()));
    c.send_text("3");
    // The namespace can be joined again on the same connection.
    c.send_text("40");
    assert!(c.recv_text().starts_with(r#"40{"sid":""#));
}

#[test]
fn connections_that_never_connect_a_namespace_are_closed() {
    let server = TestServer::conformance();
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    // Pings are answered, yet the connection is closed after connectTimeout (1 s).
    let started = std::time::Instant::now();
    c.expect_closed();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );
}

/// A test app exercising server-to-client acks, server disconnects and authorization.
fn ack_app() -> Vec<Endpoint> {
    let mut io = SocketIo::new(SocketIoConfig::default());
    io.namespace("/")
        .authorize(
            |_req, auth| match auth.get("token").and_then(|t| t.as_str()) {
                Some("good") => Ok(()),
                _ => Err(ConnectError::new("Not authorized").with_data(json!({"hint": "token"}))),
            },
        )
        .on("ask", |socket, data, _ack| {
            let socket = socket.clone();
            let timeout = Duration::from_millis(data.first().as_u64().unwrap_or(2000));
            tokio::task::spawn_local(async move {
                let question = Payload::from("ready?").bin(vec![7u8, 7]);
                match socket.emit_with_ack("question", question, timeout).await {
                    Ok(answer) => {
                        let _ = socket.emit("answer", answer);
                    }
                    Err(e) => {
                        let _ = socket.emit("answer-error", e.to_string().as_str());
                    }
                }
            });
        })
        .on("kick-me", |socket, _data, _ack| socket.disconnect())
        .on("emit-reserved", |socket, _data, ack| {
            let refused = socket.emit("disconnect", Payload::new()).is_err();
            if let Some(ack) = ack {
                let _ = ack.send(json!(refused));
            }
        });
    let config = Config::default();
    vec![Endpoint::socketio(
        "/socket.io/",
        EngineConfig::from_config(&config),
        io,
    )]
}

#[test]
fn server_acks_arrive_or_time_out() {
    let server = TestServer::start(4, ack_app());
    let (mut c, _) = WsClient::socketio(server.addr, Some(r#"{"token":"good"}"#));
    // The question carries a server ack id: `451-<id>[...]` (one attachment).
    let ask = |c: &mut WsClient, timeout_ms: u64| -> String {
        c.send_text(&format!(r#"42["ask",{timeout_ms}]"#));
        let q = c.recv_text();
        let rest = q
            .strip_prefix("451-")
            .expect("a binary event with one attachment");
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        assert_eq!(
            &rest[id.len()..],
            r#"["question","ready?",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(c.recv_binary(), vec![7, 7]);
        id
    };
    let id = ask(&mut c, 2000);
    c.send_text(&format!(r#"43{id}["yes",{{"n":1}}]"#));
    assert_eq!(c.recv_text(), r#"42["answer","yes",{"n":1}]"#);
    // A binary ack from the client.
    let id2 = ask(&mut c, 2000);
    assert_ne!(id, id2, "each emit gets its own ack id");
    c.send_text(&format!(r#"461-{id2}[{{"_placeholder":true,"num":0}}]"#));
    c.send_binary(&[9]);
    assert_eq!(
        c.recv_text(),
        r#"451-["answer",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(c.recv_binary(), vec![9]);
    // No answer: the ack times out.
    let id3 = ask(&mut c, 100);
    assert_eq!(c.recv_text(), r#"42["answer-error","ack timed out"]"#);
    // A late answer to an expired ack is ignored.
    c.send_text(&format!(r#"43{id3}["late"]"#));
    c.send_text(r#"421["emit-reserved"]"#);
    assert_eq!(c.recv_text(), "431[true]");
}

#[test]
fn authorization_refusals_and_server_disconnects() {
    let server = TestServer::start(4, ack_app());
    let (mut c, _) = WsClient::open(server.addr, "/socket.io/");
    c.send_text(r#"40{"token":"bad"}"#);
    assert_eq!(
        c.recv_text(),
        r#"44{"message":"Not authorized","data":{"hint":"token"}}"#
    );
    c.send_text(r#"40{"token":"good"}"#);
    assert!(c.recv_text().starts_with(r#"40{"sid":""#));
    c.send_text(r#"42["kick-me"]"#);
    assert_eq!(c.recv_text(), "41");
    // The Engine.IO connection survives a namespace disconnect.
    c.send_text(r#"40{"token":"good"}"#);
    assert!(c.recv_text().starts_with(r#"40{"sid":""#));
}
