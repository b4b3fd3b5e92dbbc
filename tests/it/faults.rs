//! Faults inside one process (README, "Limits and failure behaviour"): a panic while serving
//! one client closes that client only; a shard that dies anyway stops the server; running out
//! of file descriptors is logged a bounded number of times, and clients are served again once
//! descriptors are free.

use crate::common;

use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::polling::{HttpConn, PollingClient};
use common::process::ShardioProcess;
use common::{TestServer, WsClient};
use shardio::engineio::{EngineApp, EngineAppFactory, EngineConfig, EngineShard};
use shardio::metrics::ShardMetrics;
use shardio::socketio::{SocketIo, SocketIoConfig};
use shardio::{Endpoint, ServerError};

/// A Socket.IO app whose `boom` handler panics; `echo` acks its argument; every disconnect
/// is counted in `left`.
fn panicking_app(left: Arc<AtomicUsize>) -> Vec<Endpoint> {
    let mut io = SocketIo::new(SocketIoConfig::default());
    io.namespace("/")
        .on("boom", |_, _, _| panic!("a bug in the boom handler"))
        .on("echo", |_, data, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(data);
            }
        })
        .on_disconnect(move |_, _| {
            left.fetch_add(1, Relaxed);
        });
    let engine = EngineConfig {
        // Slow enough that the polling test need not answer pings.
        ping_interval: Duration::from_secs(20),
        ..EngineConfig::default()
    };
    vec![Endpoint::socketio("/socket.io/", engine, io)]
}

fn panics(server: &TestServer) -> u64 {
    server
        .metrics
        .shards()
        .iter()
        .map(ShardMetrics::panics)
        .sum()
}

/// Emits `echo` with ack id `id` and checks the answer.
fn echo(c: &mut WsClient, id: u32) {
    c.send_text(&format!(r#"42{id}["echo","e{id}"]"#));
    assert_eq!(c.recv_text(), format!(r#"43{id}["e{id}"]"#));
}

#[test]
fn a_panicking_handler_closes_its_websocket_only_and_the_shard_goes_on() {
    let left = Arc::new(AtomicUsize::new(0));
    // One shard: the victim, the bystander and the newcomer share it.
    let server = TestServer::start(1, panicking_app(left.clone()));
    let (mut victim, _) = WsClient::socketio(server.addr, None);
    let (mut bystander, _) = WsClient::socketio(server.addr, None);
    echo(&mut bystander, 1);

    victim.send_text(r#"42["boom"]"#);
    assert_eq!(
        victim.expect_closed(),
        None,
        "the connection is dropped with the task"
    );
    server.wait_until("the victim's session to be removed", |m| {
        m.sessions_open() == 1
    });
    assert_eq!(panics(&server), 1);
    assert_eq!(left.load(Relaxed), 1, "the victim's disconnect handler ran");

    // Nothing is left borrowed or broken: the bystander goes on, a newcomer gets in.
    echo(&mut bystander, 2);
    let (mut newcomer, _) = WsClient::socketio(server.addr, None);
    echo(&mut newcomer, 3);
    // And a second panic is contained the same way.
    newcomer.send_text(r#"42["boom"]"#);
    newcomer.expect_closed();
    server.wait_until("the newcomer's session to be removed", |m| {
        m.sessions_open() == 1
    });
    echo(&mut bystander, 4);
    assert_eq!((panics(&server), left.load(Relaxed)), (2, 2));
}

#[test]
fn a_panicking_handler_over_polling_closes_that_session_only() {
    let left = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start(1, panicking_app(left.clone()));
    let (mut bystander, _) = WsClient::socketio(server.addr, None);
    let (victim, _) = PollingClient::open(server.addr, "/socket.io/");
    victim.send("40");
    assert!(victim.recv().starts_with("40{"), "CONNECT answered");

    let mut post = victim.raw_post("Content-Length: 10\r\n\r\n42[\"boom\"]");
    assert!(
        post.rest_until_closed().is_empty(),
        "the POST's connection is dropped unanswered"
    );
    server.wait_until("the victim's session to be removed", |m| {
        m.sessions_open() == 1
    });
    assert_eq!((panics(&server), left.load(Relaxed)), (1, 1));
    echo(&mut bystander, 1);
    // The session is gone for its client too.
    let r = victim.get();
    assert_eq!(r.status, 400, "{}", r.text());
    // Keep-alive connections of other clients were never touched.
    let mut conn = HttpConn::connect(server.addr);
    conn.request("GET", "/socket.io/?EIO=4&transport=polling", &[], b"");
    assert_eq!(conn.response().status, 200);
}

/// An Engine.IO app whose instance for shard `dies_on` panics as the shard starts.
struct DiesOnShard(usize);

impl EngineAppFactory for DiesOnShard {
    fn for_shard(&self, shard: &Rc<EngineShard>) -> Rc<dyn EngineApp> {
        assert_ne!(shard.id, self.0, "shard {} cannot start", self.0);
        shardio::conformance::endpoints()
            .into_iter()
            .find_map(|ep| match ep.app {
                shardio::App::Engine(factory) => Some(factory.for_shard(shard)),
                shardio::App::SocketIo(_) | shardio::App::WebSocketEcho | shardio::App::Page(_) => {
                    None
                }
            })
            .expect("the conformance echo app")
    }
}

#[test]
fn a_shard_that_dies_stops_the_server_with_an_error_promptly() {
    let endpoint = Endpoint::engine("/engine.io/", EngineConfig::default(), DiesOnShard(1));
    let mut server = TestServer::start(4, vec![endpoint]);
    // No shutdown is asked: the server stops by itself, and says which shard failed.
    match server.exited_within(common::WAIT) {
        Some(Err(ServerError::ShardFailed(1))) => {}
        other => panic!("expected shard 1 to fail the server, got {other:?}"),
    }
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "no shard listens any more"
    );
}

#[test]
fn out_of_descriptors_the_accept_loop_logs_boundedly_and_recovers() {
    let (shards, start) = (2, Instant::now());
    // Accepted connections that send nothing stay open, holding their descriptors.
    let mut server = ShardioProcess::start(&["--shards", "2", "--head-timeout", "60000"]);

    // Leave the server a few descriptors more than it has open now. The startup line comes
    // once every shard serves, so each has its runtime and listener by now: what the server
    // opens from here on is one descriptor per connection.
    let pid = server.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .count() as u64;
    rlimit::prlimit(
        pid,
        rlimit::Resource::NOFILE,
        Some((open + 8, open + 8)),
        None,
    )
    .expect("lower the server's descriptor limit");

    // More clients than descriptors: the server accepts until it has none left.
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.addr).expect("the kernel queues the connection"))
        .collect();
    common::wait_until("accept to fail", || {
        server.count_lines("accept failed", start) > 0
    });
    // Two seconds out of descriptors: the window is the subject (how many lines it logs).
    std::thread::sleep(Duration::from_secs(2));
    let failures = server.count_lines("accept failed", start);
    assert!(
        failures <= shards,
        "at most one line per shard per 10 s interval, got {failures}"
    );

    // Descriptors come back: the server accepts and serves again.
    idle.clear();
    let served = common::wait_within(Duration::from_secs(10), || {
        std::panic::catch_unwind(|| WsClient::socketio(server.addr, None)).is_ok()
    });
    assert!(served, "a new client is served once descriptors are free");
    server.wait_for_line("accepting connections again", common::WAIT);
    // Descriptors came and went: still one line per shard per 10 s interval at most.
    let allowed = shards * (1 + start.elapsed().as_secs() as usize / 10);
    let failures = server.count_lines("accept failed", start);
    assert!(failures <= allowed, "{failures} failure lines");

    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "shardio exited with {status}");
}
