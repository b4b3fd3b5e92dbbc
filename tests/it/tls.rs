//! TLS (`--tls-cert`, `--tls-key`): HTTPS and WSS on every shard, with self-signed certificates
//! the tests make (rcgen). The npm socket.io-client over wss and over https polling on four
//! shards (polling requests land on any shard and are handed to their session's owner with
//! their TLS state), keep-alive and pipelined requests after such a hand-over, a 4 MiB echo
//! (TLS writes the socket takes in parts), what a client that does not speak TLS gets, the
//! startup checks of the files, and a certificate swap on SIGHUP of the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::node::run_script;
use crate::common::polling::{parse_response, Response};
use crate::common::process::ShardioProcess;
use crate::common::tls::{CertFiles, TlsConn};
use crate::common::{wait_child, Frame, TestServer, WsClient, WAIT};

/// The gateway as the binary runs it, with TLS, on `shards` shards.
fn gateway(shards: usize, certs: &CertFiles, extra: &[&str]) -> TestServer {
    let mut args = certs.args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::gateway(shards, &args)
}

fn tls_handshakes(server: &TestServer) -> (u64, u64) {
    let shards = server.metrics.shards();
    (
        shards.iter().map(|s| s.tls_handshakes()).sum(),
        shards.iter().map(|s| s.tls_handshake_failures()).sum(),
    )
}

/// `clients` npm clients of the gateway test script over https / wss, on four shards.
fn socketio_clients(clients: usize, transports: &str) -> TestServer {
    let certs = CertFiles::new();
    let server = gateway(4, &certs, &[]);
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let out = run_script(
        "gateway_client.mjs",
        &[&url, &clients.to_string(), transports],
        Duration::from_secs(40),
    );
    assert_eq!(out.trim(), "ok");
    let (handshakes, _) = tls_handshakes(&server);
    assert!(
        handshakes >= clients as u64,
        "{handshakes} TLS handshakes for {clients} clients"
    );
    assert!(server.shards_used() >= 2, "clients on several shards");
    server
}

#[test]
fn socketio_clients_over_wss_on_four_shards() {
    let server = socketio_clients(12, "websocket");
    // (Polling clients may leave a connection in its handshake when the script exits: a
    // failure the server counts, rightly.)
    assert_eq!(tls_handshakes(&server), (12, 0), "one handshake per client");
}

/// Without sticky sessions: every polling request of the npm client comes on a new connection
/// (a new TLS handshake), which the kernel gives to any shard; three in four are handed to the
/// shard that owns the session, TLS state and all.
#[test]
fn socketio_clients_over_https_polling_are_handed_between_shards() {
    let server = socketio_clients(20, "polling");
    server.assert_handoffs_arrived("20 polling clients over https");
}

/// The client's default: polling first, then the upgrade to wss (itself handed over when it
/// lands on another shard).
#[test]
fn socketio_clients_poll_then_upgrade_to_wss_on_four_shards() {
    let server = socketio_clients(20, "polling,websocket");
    server.assert_handoffs_arrived("20 clients upgrading to wss");
}

/// Sends raw bytes on a TLS connection and reads `count` responses.
fn exchange(conn: &mut TlsConn, bytes: &[u8], count: usize) -> Vec<Response> {
    conn.write_all(bytes).expect("write requests");
    conn.flush().expect("flush");
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while responses.len() < count {
        if let Some((response, used)) = parse_response(&buf) {
            buf.drain(..used);
            responses.push(response);
            continue;
        }
        match conn.read(&mut chunk) {
            Ok(0) => panic!("closed after {} responses", responses.len()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading responses: {e}"),
        }
    }
    assert!(buf.is_empty(), "nothing more than {count} responses");
    responses
}

fn post_then_get(target: &str, text: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{text}\
         GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        text.len()
    )
    .into_bytes()
}

/// A polling request handed to the owning shard carries the connection's TLS state: the owner
/// answers it, then goes on decrypting the same connection (a second pair of requests), and
/// a request pipelined behind the first (already read and decrypted by the first shard) is
/// answered too.
#[test]
fn polling_over_tls_keeps_the_connection_after_a_hand_over() {
    let certs = CertFiles::new();
    let server = TestServer::start_tls(4, shardio::conformance::endpoints(), &certs);
    let (mut first, _) = certs.connect(server.addr);
    let open = exchange(
        &mut first,
        b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: localhost\r\n\r\n",
        1,
    );
    let body = open[0].text().strip_prefix('0').expect("the open packet");
    let open: serde_json::Value = serde_json::from_str(body).expect("open packet JSON");
    let target = format!(
        "/engine.io/?EIO=4&transport=polling&sid={}",
        open["sid"].as_str().expect("sid")
    );
    let mut handed_over = 0;
    for i in 0..12 {
        let before = server.metrics.handoffs();
        let (mut conn, _) = certs.connect(server.addr);
        for round in 0..2 {
            let text = format!("4conn {i} round {round}");
            let got = exchange(&mut conn, &post_then_get(&target, &text), 2);
            assert_eq!((got[0].status, got[0].text()), (200, "ok"));
            assert_eq!((got[1].status, got[1].text()), (200, text.as_str()));
        }
        handed_over += usize::from(server.metrics.handoffs() > before);
    }
    assert!(
        handed_over > 0,
        "no connection landed on another shard than the session's: the test proves nothing"
    );
}

/// A message far larger than the socket buffers: the server's TLS writes are taken in parts,
/// and the last records wait for the socket after the session's queue is empty.
#[test]
fn a_four_mebibyte_message_echoes_over_wss() {
    let certs = CertFiles::new();
    let server = TestServer::start_tls(2, shardio::conformance::endpoints(), &certs);
    let (conn, _) = certs.connect(server.addr);
    let mut ws = WsClient::over(conn, "localhost", "/ws-echo").expect("wss handshake");
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    ws.send_binary(&big);
    assert!(ws.recv_binary() == big, "the echo is the message");
    ws.send_text("and after it");
    assert_eq!(ws.recv(), Frame::Text("and after it".into()));
}

/// A plain HTTP request on the TLS port gets no HTTP answer (rustls's alert, then the close),
/// is counted, and leaves the server serving TLS clients. A client that starts no handshake
/// is closed after `--head-timeout`.
#[test]
fn a_client_that_does_not_speak_tls_is_closed_and_counted() {
    let certs = CertFiles::new();
    let server = gateway(2, &certs, &["--head-timeout", "300"]);
    let mut plain = TcpStream::connect(server.addr).expect("connect");
    plain.set_read_timeout(Some(WAIT)).expect("timeout");
    plain
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let answer = until_closed(&mut plain);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no HTTP response on the TLS port: {:?}",
        String::from_utf8_lossy(&answer)
    );
    server.wait_until("the failed handshake to be counted", |m| {
        m.shards()
            .iter()
            .map(|s| s.tls_handshake_failures())
            .sum::<u64>()
            == 1
    });

    let mut silent = TcpStream::connect(server.addr).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let nothing = until_closed(&mut silent);
    assert!(nothing.is_empty(), "closed without a byte: {nothing:?}");
    server.wait_until("the silent client to be counted", |m| {
        m.shards()
            .iter()
            .map(|s| s.tls_handshake_failures())
            .sum::<u64>()
            == 2
    });

    let (conn, _) = certs.connect(server.addr);
    let (mut ws, _) = WsClient::open_over(conn, "localhost", "/socket.io/");
    ws.connect_socketio(None);
}

/// What the server sends until it closes the connection (a reset is a close too); fails the
/// test if it is still open after `WAIT`.
fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
}

/// Runs the binary with `args`, which must make it refuse to start; returns its stderr.
fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardio"))
        .args(["--listen", "127.0.0.1:0", "--no-pin", "--shards", "1"])
        .args(args)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardio");
    let status = wait_child(&mut child, WAIT).expect("shardio exits at once");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(2), "a configuration error: {stderr}");
    stderr
}

#[test]
fn bad_certificate_files_stop_startup_with_the_file_named() {
    let certs = CertFiles::new();
    let other = CertFiles::new();
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    let missing = certs
        .cert
        .with_file_name("missing.pem")
        .display()
        .to_string();

    let err = refused_start(&["--tls-cert", &cert]);
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
    let err = refused_start(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(err.contains(&format!("cannot read {missing}")), "{err}");
    let err = refused_start(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(err.contains(&format!("{key}: no PEM certificate")), "{err}");
    let err = refused_start(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(
        err.contains(&format!("{cert}: no PEM private key")),
        "{err}"
    );
    let other_key = other.key.display().to_string();
    let err = refused_start(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(
        err.contains(&format!(
            "{other_key} is not the private key of the certificate in {cert}"
        )),
        "{err}"
    );
}

/// Sends a Socket.IO event with ack id `id`; returns the ack's first argument (events that
/// arrive meanwhile are skipped).
fn call<S: Read + Write>(
    c: &mut WsClient<S>,
    id: u32,
    event: &str,
    arg: serde_json::Value,
) -> serde_json::Value {
    c.send_text(&format!("42{id}{}", serde_json::json!([event, arg])));
    let prefix = format!("43{id}");
    loop {
        if let Some(rest) = c.recv_text().strip_prefix(&prefix) {
            let args: Vec<serde_json::Value> = serde_json::from_str(rest).expect("ack arguments");
            return args.into_iter().next().unwrap_or_default();
        }
    }
}

#[test]
fn a_certificate_swapped_on_sighup_serves_new_connections_and_keeps_old_ones() {
    let mut certs = CertFiles::new();
    let old = certs.fingerprint();
    let args = certs.args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--shards", "2"]);
    let mut shardio = ShardioProcess::start(&args);
    let ok = serde_json::json!({"ok": true});

    let (conn, presented) = certs.connect(shardio.addr);
    assert_eq!(presented, old);
    let (mut before, _) = WsClient::open_over(conn, "localhost", "/socket.io/");
    before.connect_socketio(None);
    assert_eq!(call(&mut before, 1, "join", "r".into()), ok);

    let new = certs.renew();
    assert_ne!(new, old);
    let hup = |pid: i32| {
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -HUP");
    };
    hup(shardio.pid());
    shardio.wait_for_line(
        &format!("TLS certificate reloaded loaded=sha256 {new}"),
        WAIT,
    );

    let (conn, presented) = certs.connect(shardio.addr);
    assert_eq!(presented, new, "a new connection gets the new certificate");
    let (mut after, _) = WsClient::open_over(conn, "localhost", "/socket.io/");
    after.connect_socketio(None);
    let publish = serde_json::json!({"to": "r", "event": "note", "data": "after the swap"});
    assert_eq!(call(&mut after, 1, "publish", publish), ok);
    // The connection opened before the swap is still up, receives, and sends.
    assert_eq!(before.recv_text(), r#"42["note","after the swap"]"#);
    assert_eq!(call(&mut before, 2, "join", "s".into()), ok);

    // A broken file on the next SIGHUP keeps the certificate in use.
    std::fs::write(&certs.cert, "not a certificate").expect("write");
    hup(shardio.pid());
    shardio.wait_for_line("TLS certificate not reloaded", WAIT);
    let (_, presented) = certs.connect(shardio.addr);
    assert_eq!(presented, new);
    assert!(shardio.terminate(WAIT).success(), "SIGHUP did not end it");
}
