//! The shared test harness: a real shardio server on 127.0.0.1:0 (stopped on drop) and a
//! small blocking WebSocket client that speaks raw Engine.IO frames. Every wait has a timeout.

pub(crate) mod aclient;
pub(crate) mod haproxy;
pub(crate) mod jwt;
pub(crate) mod node;
pub(crate) mod polling;
pub(crate) mod process;
pub(crate) mod prometheus;
pub(crate) mod raw_ws;
pub(crate) mod rcluster;
pub(crate) mod redis;
pub(crate) mod scrape;
pub(crate) mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardio::config::{LimitsConfig, RedisConfig, RuntimeConfig};
use shardio::metrics::Metrics;
use shardio::Server;
use shardio::{Endpoint, ServerError};
use tungstenite::{Message, WebSocket};

/// How long any single wait in a test may take before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A server running on its own thread; dropping it shuts it down and joins it.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    /// The API's own address, with `--internal-listen`.
    pub internal: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

pub(crate) fn runtime(shards: usize) -> RuntimeConfig {
    RuntimeConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        shards: Some(shards),
        no_pin: true,
        shutdown_timeout: 5_000,
        bus_capacity: shardio::config::defaults::BUS_CAPACITY,
        drain_delay: 0,
    }
}

impl TestServer {
    pub(crate) fn start(shards: usize, endpoints: Vec<Endpoint>) -> TestServer {
        TestServer::start_with_redis(shards, endpoints, None)
    }

    /// A server whose Redis bridge uses `redis` (when given).
    pub(crate) fn start_with_redis(
        shards: usize,
        endpoints: Vec<Endpoint>,
        redis: Option<RedisConfig>,
    ) -> TestServer {
        TestServer::start_with(shards, endpoints, redis, LimitsConfig::default())
    }

    /// A server with the limits `limits` (and a Redis bridge when `redis` is given).
    pub(crate) fn start_with(
        shards: usize,
        endpoints: Vec<Endpoint>,
        redis: Option<RedisConfig>,
        limits: LimitsConfig,
    ) -> TestServer {
        let mut server = Server::bind(&runtime(shards))
            .expect("bind 127.0.0.1:0")
            .with_limits(limits);
        if let Some(redis) = redis {
            server = server.with_redis(redis);
        }
        TestServer::run(server, endpoints)
    }

    /// The gateway as the binary runs it for `args` (flags after `shardio`), on 127.0.0.1:0
    /// with `shards` shards: JWT keys, the API, Redis and the rest from the flags.
    pub(crate) fn gateway(shards: usize, args: &[&str]) -> TestServer {
        let mut argv = vec!["shardio"];
        argv.extend_from_slice(args);
        let mut config = <shardio::Config as clap::Parser>::parse_from(argv);
        config.runtime = runtime(shards);
        config.validate().expect("a valid test configuration");
        let verifier = shardio::auth::Verifier::from_config(&config.auth).expect("the keys load");
        let certificates =
            shardio::tls::Certificates::from_config(&config.tls).expect("the certificate loads");
        let server = Server::bind(&config.runtime)
            .expect("bind 127.0.0.1:0")
            .with_redis(config.redis.clone())
            .with_api(config.api.clone())
            .expect("bind the API")
            .with_limits(config.limits.clone())
            .with_tls(certificates);
        TestServer::run(server, shardio::gateway::endpoints(&config, verifier))
    }

    /// `endpoints` on `shards` shards, over TLS with the certificate of `certs`.
    pub(crate) fn start_tls(
        shards: usize,
        endpoints: Vec<Endpoint>,
        certs: &tls::CertFiles,
    ) -> TestServer {
        let certificates = shardio::tls::Certificates::load(&certs.cert, &certs.key)
            .expect("the test certificate");
        let server = Server::bind(&runtime(shards))
            .expect("bind 127.0.0.1:0")
            .with_tls(Some(certificates));
        TestServer::run(server, endpoints)
    }

    fn run(server: Server, endpoints: Vec<Endpoint>) -> TestServer {
        let addr = server.local_addr();
        let internal = server.internal_addr();
        let metrics = server.metrics();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            server.run(endpoints, async {
                let _ = rx.await;
            })
        });
        TestServer {
            addr,
            internal,
            metrics,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// The conformance apps (Engine.IO echo, Socket.IO test app) on 4 shards.
    pub(crate) fn conformance() -> TestServer {
        TestServer::start(4, shardio::conformance::endpoints())
    }

    /// The conformance apps on 4 shards with settings changed by `tune` (e.g. a heartbeat slow
    /// enough that a test need not answer pings).
    pub(crate) fn conformance_with(
        tune: impl Fn(&mut shardio::engineio::EngineConfig),
    ) -> TestServer {
        let mut endpoints = shardio::conformance::endpoints();
        for ep in &mut endpoints {
            tune(&mut ep.engine);
        }
        TestServer::start(4, endpoints)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and returns what `Server::run` returned.
    pub(crate) fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join().expect("server thread joins")
    }

    /// What `Server::run` returned if it returned by itself (no shutdown asked) within
    /// `limit`; `None` while it still runs.
    pub(crate) fn exited_within(&mut self, limit: Duration) -> Option<Result<(), ServerError>> {
        let thread = self.thread.as_ref()?;
        if !wait_within(limit, || thread.is_finished()) {
            return None;
        }
        self.thread
            .take()
            .map(|t| t.join().expect("server thread must not panic"))
    }

    fn stop_and_join(&mut self) -> Option<Result<(), ServerError>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread
            .take()
            .map(|t| t.join().expect("server thread must not panic"))
    }

    /// How many shards have opened at least one session.
    pub(crate) fn shards_used(&self) -> usize {
        self.metrics
            .shards()
            .iter()
            .filter(|s| s.sessions_total() > 0)
            .count()
    }

    /// Checks that requests were handed between shards (else the test proves nothing: `who`
    /// never needed a hand-over), and waits until each reached its owner (a sender counts
    /// its hand-over as the bus takes it, so the owner's count may lag a moment).
    pub(crate) fn assert_handoffs_arrived(&self, who: &str) {
        assert!(
            self.metrics.handoffs() > 0,
            "{who} never needed a hand-over: the test proves nothing"
        );
        self.wait_until("every hand-over to reach its owner", |m| {
            m.shards()
                .iter()
                .map(|s| s.handoffs_received())
                .sum::<u64>()
                == m.handoffs()
        });
    }

    /// Waits until `f` holds (polling the server's counters).
    pub(crate) fn wait_until(&self, what: &str, f: impl Fn(&Metrics) -> bool) {
        wait_until(what, || f(&self.metrics));
    }
}

/// A port free when we look; whoever needs it takes it right after.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `done` until it holds; fails the test with `what` after `WAIT`. For conditions a test
/// can observe but not be told of (a counter, a port that starts listening).
pub(crate) fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(wait_within(WAIT, done), "timed out waiting for {what}");
}

/// Polls `done` until it holds or `limit` has passed; returns whether it held.
pub(crate) fn wait_within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// [`wait_until`] for async tests: sleeps on the runtime between polls.
pub(crate) async fn wait_until_async(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits for `child` to exit within `limit`; kills it (and reaps it) and returns `None` when
/// it does not.
pub(crate) fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    let exited = wait_within(limit, || {
        status = child.try_wait().expect("waiting for a child process");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// A child process that is killed (and reaped) when the test ends, whether it passes or not.
pub(crate) struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// What a test client can receive.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame with its code, or the connection ending without one (`None`).
    Closed(Option<u16>),
}

/// A client's TCP connection: reads time out after [`WAIT`], no Nagle delay.
fn client_tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A blocking WebSocket client speaking raw Engine.IO, over TCP or (`tls::TlsConn`) TLS.
pub(crate) struct WsClient<S: Read + Write = TcpStream> {
    ws: WebSocket<S>,
    /// Answer Engine.IO pings with pongs automatically (and hide them).
    pub auto_pong: bool,
}

impl<S: Read + Write> WsClient<S> {
    /// Opens a WebSocket to `path_and_query` over a connected `stream` (its read timeout set)
    /// to `host`.
    pub(crate) fn over(
        stream: S,
        host: &str,
        path_and_query: &str,
    ) -> Result<WsClient<S>, tungstenite::Error> {
        let url = format!("ws://{host}{path_and_query}");
        let (ws, _) = tungstenite::client(url, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
            }
        })?;
        Ok(WsClient {
            ws,
            auto_pong: true,
        })
    }

    /// Opens an Engine.IO session on `path` over `stream`; returns the client and the open
    /// packet JSON.
    pub(crate) fn open_over(stream: S, host: &str, path: &str) -> (WsClient<S>, serde_json::Value) {
        let mut c = WsClient::over(stream, host, &format!("{path}?EIO=4&transport=websocket"))
            .expect("websocket handshake");
        let open = c.recv_text();
        let json = open.strip_prefix('0').expect("first packet is open");
        (c, serde_json::from_str(json).expect("open packet is JSON"))
    }

    /// Sends a Socket.IO CONNECT to namespace `/` with `auth`; returns the socket id.
    pub(crate) fn connect_socketio(&mut self, auth: Option<&str>) -> String {
        self.send_text(&format!("40{}", auth.unwrap_or("")));
        let reply = self.recv_text();
        let json = reply.strip_prefix("40").expect("CONNECT reply");
        let v: serde_json::Value = serde_json::from_str(json).expect("CONNECT reply JSON");
        v["sid"].as_str().expect("sid in CONNECT reply").to_string()
    }
}

impl WsClient {
    /// Opens a WebSocket to `path_and_query` (e.g. `/socket.io/?EIO=4&transport=websocket`).
    pub(crate) fn connect(
        addr: SocketAddr,
        path_and_query: &str,
    ) -> Result<WsClient, tungstenite::Error> {
        WsClient::over(client_tcp(addr)?, &addr.to_string(), path_and_query)
    }

    /// Opens an Engine.IO session over WebSocket; returns the client and the open packet JSON.
    pub(crate) fn open(addr: SocketAddr, path: &str) -> (WsClient, serde_json::Value) {
        let stream = client_tcp(addr).expect("connect");
        WsClient::open_over(stream, &addr.to_string(), path)
    }

    /// Opens a Socket.IO connection to namespace `/` with `auth`; returns the client and the
    /// socket id from the CONNECT reply.
    pub(crate) fn socketio(addr: SocketAddr, auth: Option<&str>) -> (WsClient, String) {
        let (mut c, _) = WsClient::open(addr, "/socket.io/");
        let sid = c.connect_socketio(auth);
        (c, sid)
    }
}

impl<S: Read + Write> WsClient<S> {
    pub(crate) fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send text frame");
    }

    pub(crate) fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::binary(data.to_vec()))
            .expect("send binary frame");
    }

    /// Sends raw bytes on the TCP stream, bypassing WebSocket framing.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.ws.get_mut().write_all(bytes).expect("raw write");
    }

    /// The next frame (pings are answered and skipped when `auto_pong`).
    pub(crate) fn recv(&mut self) -> Frame {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) if self.auto_pong && t.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3"));
                }
                Ok(Message::Text(t)) => return Frame::Text(t.to_string()),
                Ok(Message::Binary(b)) => return Frame::Binary(b.to_vec()),
                Ok(Message::Close(frame)) => {
                    return Frame::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no frame within {WAIT:?}");
                }
                Err(_) => return Frame::Closed(None),
            }
        }
    }

    pub(crate) fn recv_text(&mut self) -> String {
        match self.recv() {
            Frame::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub(crate) fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv() {
            Frame::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Reads until the connection closes; returns the close code if a close frame came.
    pub(crate) fn expect_closed(&mut self) -> Option<u16> {
        loop {
            match self.recv() {
                Frame::Closed(code) => return code,
                Frame::Text(_) | Frame::Binary(_) => {}
            }
        }
    }
}

/// Sends a raw HTTP request and returns (status, headers, body). The request must ask for
/// `Connection: close` or be answered with one.
pub(crate) fn http_request(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write request");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if let Some(parsed) = parse_response(&response) {
                    return parsed;
                }
            }
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    parse_response(&response).expect("a complete HTTP response")
}

/// `GET path` on `addr` with `Connection: close`: status and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    (status, body)
}

fn parse_response(bytes: &[u8]) -> Option<(u16, String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| (status, head.to_string(), body[..length].to_string()))
}

/// Checks an open packet of the conformance apps: exactly Node's keys (§1.2), the suites'
/// timings, and the upgrades the transport offers.
pub(crate) fn assert_conformance_open_packet(open: &serde_json::Value, upgrades: &[&str]) {
    let keys: std::collections::HashSet<&str> = open
        .as_object()
        .expect("open packet is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        std::collections::HashSet::from([
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ])
    );
    assert_eq!(open["upgrades"], serde_json::json!(upgrades));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 1_000_000);
    let sid = open["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 20);
    assert!(sid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}
