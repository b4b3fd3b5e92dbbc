//! The soak: two `shardio` processes (the real binary, 2 shards each) sharing a real
//! redis-server, under churn for `SHARDIO_SOAK_SECS` seconds (120 unless set, 40 at least):
//! WebSocket clients connect, join, publish with acks, leave, and go cleanly, by dropping the
//! connection, or cut mid-frame; polling clients do the same and go by a close packet, by
//! going silent, by aborting a long poll or a body; HTTP requests are cut mid-head; slow
//! consumers stop reading a flooded room. Canary subscribers on both processes receive every
//! publish of a canary publisher all along, in order.
//!
//! The churn runs a warm-up quarter, stops, and the processes must come back to the state they
//! had before it: sessions, connection tasks, descriptors, threads, rooms and sockets (asked
//! through Redis as another node would), Redis subscriptions and clients. Their RSS there is
//! the baseline. Then the rest of the churn runs, and after it the same state must come back,
//! with RSS within 10% of the baseline. Every wait has a deadline; nothing is timed.
//!
//! The processes' counters are read from their `/metrics`, as an operator's Prometheus would.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use shardio::protocol::adapter::{BroadcastOpts, Request, RequestBody, Response};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::common::polling::{HttpConn, PollingClient};
use crate::common::redis::RedisServer;
use crate::common::scrape::Scrape;
use crate::common::{TestServer, WsClient, WAIT};

/// How long the churn runs, warm-up included, unless `SHARDIO_SOAK_SECS` says otherwise.
const DEFAULT_SECS: u64 = 120;

/// The shortest soak: its warm-up quarter must be long enough for the allocator to reach the
/// sizes the churn needs, or RSS after it is no baseline.
const MIN_SECS: u64 = 40;

/// How long the processes may take to come back to their state after the churn stops: an
/// abandoned polling session lasts a ping interval and a ping timeout.
const SETTLE: Duration = Duration::from_secs(60);

/// The settings of both processes: short heartbeats and connect deadline, so that abandoned
/// sessions end soon; a small outbound limit, so that slow consumers are cut soon; a slow Redis
/// probe, so that a machine busy with other tests does not pass for a lost subscription (the
/// bridge would rebuild its connections, and pub/sub keeps nothing for the canaries meanwhile).
const SERVER_ARGS: &[&str] = &[
    "--redis-probe-interval",
    "10000",
    "--shards",
    "2",
    "--no-pin",
    "--ping-interval",
    "2000",
    "--ping-timeout",
    "3000",
    "--connect-timeout",
    "2000",
    "--max-buffered-bytes",
    "65536",
];

const ROOMS: usize = 16;

#[test]
fn soak_comes_back_to_its_baseline_state_and_memory() {
    let secs = std::env::var("SHARDIO_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(DEFAULT_SECS)
        .max(MIN_SECS);
    let warm_up = Duration::from_secs(secs / 4);
    let main = Duration::from_secs(secs) - warm_up;

    let redis = RedisServer::start();
    let servers = [Shardio::start(&redis), Shardio::start(&redis)];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for s in &servers {
        crate::common::wait_until("the bridge to connect", || {
            s.metrics().sum("shardio_redis_connected", &[]) == 1.0
        });
    }
    let addrs = [servers[0].addr, servers[1].addr];

    let canary = rt.block_on(Canary::start(addrs));
    let baseline = settled_state(&servers, &redis, None);
    eprintln!("soak: state before the churn: {baseline:?}");

    let tally = Arc::new(Tally::default());
    let base = churn_then_memory(&rt, &servers, &redis, &baseline, warm_up, &tally);
    eprintln!("soak: warm-up {warm_up:?} done; (RSS, its anonymous part) KiB: {base:?}");
    let end = churn_then_memory(&rt, &servers, &redis, &baseline, main, &tally);
    eprintln!("soak: {main:?} more done; (RSS, its anonymous part) KiB: {end:?}; {tally:?}");

    let published = rt.block_on(canary.finish());
    eprintln!("soak: each canary got all {published} publishes, in order");

    for (i, s) in servers.iter().enumerate() {
        assert!(
            end[i].0 * 10 <= base[i].0 * 11,
            "process {i}: RSS {} KiB after the churn, {} KiB after the warm-up",
            end[i].0,
            base[i].0
        );
        let m = s.metrics();
        for name in ["reconnects", "dropped", "malformed"] {
            let total = m.sum(&format!("shardio_redis_{name}_total"), &[]);
            assert_eq!(total, 0.0, "process {i}: {name}");
        }
        s.assert_no_panic();
    }
    // The churn did what it says.
    let slow: f64 = servers
        .iter()
        .map(|s| s.metrics().sum("shardio_slow_consumers_total", &[]))
        .sum();
    assert!(slow > 0.0, "no slow consumer was cut");
    tally.assert_every_kind_ran();
}

/// The connection-task counter the soak relies on: one per HTTP connection being served, none
/// for a WebSocket (its session's task serves it), back to zero when the connections go.
#[test]
fn connection_tasks_count_the_http_connections_being_served() {
    let server = TestServer::conformance();
    let tasks = |m: &shardio::metrics::Metrics| -> u64 {
        m.shards().iter().map(|s| s.connection_tasks()).sum()
    };
    assert_eq!(tasks(&server.metrics), 0);
    let mut conns: Vec<HttpConn> = (0..3).map(|_| HttpConn::connect(server.addr)).collect();
    server.wait_until("a task per connection", |m| tasks(m) == 3);
    // A kept-alive connection keeps its task after a response.
    conns[0].request("GET", "/nowhere", &[], b"");
    assert_eq!(conns[0].response().status, 404);
    let (ws, _) = WsClient::open(server.addr, "/engine.io/");
    server.wait_until("the WebSocket served by its session", |m| {
        tasks(m) == 3 && m.sessions_open() == 1
    });
    drop(conns);
    drop(ws);
    server.wait_until("no task left", |m| tasks(m) == 0 && m.sessions_open() == 0);
}

/// Churns for `length`, waits until the state is `baseline` again, and returns each process's
/// RSS and its anonymous part, in KiB.
fn churn_then_memory(
    rt: &tokio::runtime::Runtime,
    servers: &[Shardio],
    redis: &RedisServer,
    baseline: &State,
    length: Duration,
    tally: &Arc<Tally>,
) -> Vec<(u64, u64)> {
    churn(rt, [servers[0].addr, servers[1].addr], length, tally);
    settled_state(servers, redis, Some(baseline));
    servers
        .iter()
        .map(|s| (s.status("VmRSS"), s.status("RssAnon")))
        .collect()
}

/// One `shardio` process; killed on drop.
struct Shardio {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    panics: Arc<Mutex<Vec<String>>>,
}

impl Shardio {
    fn start(redis: &RedisServer) -> Shardio {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardio"))
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .args(SERVER_ARGS)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardio");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("shardio logs its address before anything can fail")
                .expect("a log line");
            if line.contains("shardio listening") {
                break line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                    .expect("address in the startup line")
                    .parse()
                    .expect("a socket address");
            }
        };
        // The log is read all along (a full pipe would stall the server): its tail is kept
        // for failure messages, and panics are kept.
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let panics = Arc::new(Mutex::new(Vec::new()));
        let (tail, found) = (log.clone(), panics.clone());
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("panicked") {
                    found.lock().unwrap().push(line.clone());
                }
                let mut tail = tail.lock().unwrap();
                if tail.len() == 50 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        Shardio {
            child,
            addr,
            log,
            panics,
        }
    }

    fn proc_path(&self, name: &str) -> String {
        format!("/proc/{}/{name}", self.child.id())
    }

    /// A `/proc/<pid>/status` field's number (`VmRSS` in KiB, `Threads`).
    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(self.proc_path("status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    }

    fn descriptors(&self) -> usize {
        std::fs::read_dir(self.proc_path("fd"))
            .expect("proc fd")
            .count()
    }

    /// The counters, scraped from `/metrics` (the scrape's own connection is one of the
    /// HTTP connections it counts, every time).
    fn metrics(&self) -> Scrape {
        Scrape::of(self.addr)
    }

    fn assert_no_panic(&self) {
        let panics = self.panics.lock().unwrap();
        assert!(
            panics.is_empty(),
            "the server panicked: {panics:?}; last lines: {:?}",
            self.log.lock().unwrap()
        );
    }
}

impl Drop for Shardio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What must come back after the churn.
#[derive(Debug, Clone, PartialEq)]
struct State {
    /// Per process: (sessions, connection tasks, descriptors, threads).
    processes: Vec<(u64, u64, usize, u64)>,
    /// Per process, as ALL_ROOMS answers tell: its rooms, sorted (in no order of processes).
    rooms: Vec<Vec<String>>,
    /// Per process, as REMOTE_FETCH answers tell: (socket, its rooms), sorted.
    sockets: Vec<Vec<(String, Vec<String>)>>,
    /// Redis: patterns subscribed, channels subscribed with their subscriber counts, clients.
    redis: (i64, Vec<String>, usize),
}

fn state(servers: &[Shardio], redis: &RedisServer) -> State {
    let processes = servers
        .iter()
        .map(|s| {
            // Descriptors first: the scrape's own connection is not among them.
            let (descriptors, threads) = (s.descriptors(), s.status("Threads"));
            let m = s.metrics();
            (
                m.sum("shardio_connections", &[]) as u64,
                m.sum("shardio_http_connections", &[]) as u64,
                descriptors,
                threads,
            )
        })
        .collect();
    let mut rooms: Vec<Vec<String>> = ask(redis, servers.len(), |request_id| {
        RequestBody::AllRooms { request_id }
    })
    .into_iter()
    .map(|r| match r {
        Response::AllRooms { mut rooms, .. } => {
            rooms.sort();
            rooms
        }
        other => panic!("an ALL_ROOMS answer, got {other:?}"),
    })
    .collect();
    rooms.sort();
    let mut sockets: Vec<Vec<(String, Vec<String>)>> = ask(redis, servers.len(), |request_id| {
        RequestBody::RemoteFetch {
            request_id,
            opts: BroadcastOpts::default(),
        }
    })
    .into_iter()
    .map(|r| match r {
        Response::RemoteFetch { sockets, .. } => {
            let mut sockets: Vec<_> = sockets
                .into_iter()
                .map(|s| {
                    let mut rooms = s.rooms;
                    rooms.sort();
                    (s.id, rooms)
                })
                .collect();
            sockets.sort();
            sockets
        }
        // No socket at all reads as an empty SOCKETS answer.
        Response::Sockets { sockets, .. } if sockets.is_empty() => Vec::new(),
        other => panic!("a REMOTE_FETCH answer, got {other:?}"),
    })
    .collect();
    sockets.sort();
    State {
        processes,
        rooms,
        sockets,
        redis: redis_subscriptions(redis),
    }
}

/// Waits until two readings in a row agree (and equal `expected`, when given); returns it.
fn settled_state(servers: &[Shardio], redis: &RedisServer, expected: Option<&State>) -> State {
    let deadline = Instant::now() + SETTLE;
    let mut last = state(servers, redis);
    loop {
        // A pause between readings, so that "two in a row" spans some time.
        std::thread::sleep(Duration::from_millis(500));
        let now = state(servers, redis);
        if now == last && expected.is_none_or(|e| *e == now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the state did not come back within {SETTLE:?}:\nexpected {expected:?}\nnow      {now:?}"
        );
        last = now;
    }
}

/// Redis's own view: patterns, channels and their subscribers, clients (this reader's own
/// included).
fn redis_subscriptions(redis: &RedisServer) -> (i64, Vec<String>, usize) {
    let mut con = redis_connection(redis);
    let numpat: i64 = redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query(&mut con)
        .expect("PUBSUB NUMPAT");
    let mut names: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut con)
        .expect("PUBSUB CHANNELS");
    names.sort();
    // How many subscribers each channel has.
    let counts: Vec<i64> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&names)
        .query::<Vec<redis::Value>>(&mut con)
        .expect("PUBSUB NUMSUB")
        .chunks(2)
        .map(|pair| redis::from_redis_value_ref(&pair[1]).expect("a count"))
        .collect();
    let channels = names
        .into_iter()
        .zip(counts)
        .map(|(name, n)| format!("{name} x{n}"))
        .collect();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut con)
        .expect("CLIENT LIST");
    (numpat, channels, clients.lines().count())
}

fn redis_connection(redis: &RedisServer) -> redis::Connection {
    let con = redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_connection()
        .expect("connect to Redis");
    con.set_read_timeout(Some(WAIT)).expect("timeout");
    con
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(0);

/// Asks every process a cluster question through Redis, as another node of the adapter
/// would, and returns the `expected` answers.
fn ask(
    redis: &RedisServer,
    expected: usize,
    body: impl Fn(String) -> RequestBody,
) -> Vec<Response> {
    let request_id = format!("soak-{}", NEXT_REQUEST.fetch_add(1, Ordering::Relaxed));
    let mut sub = redis_connection(redis);
    let mut pubsub = sub.as_pubsub();
    pubsub
        .subscribe("socket.io-response#/#")
        .expect("SUBSCRIBE");
    let request = Request {
        uid: Some("soak-test".into()),
        body: body(request_id.clone()),
    };
    let mut con = redis_connection(redis);
    let receivers: usize = redis::cmd("PUBLISH")
        .arg("socket.io-request#/#")
        .arg(request.encode())
        .query(&mut con)
        .expect("PUBLISH");
    assert_eq!(receivers, expected, "every process listens for requests");
    let mut answers = Vec::new();
    while answers.len() < expected {
        let msg = pubsub.get_message().expect("an answer in time");
        let payload = Bytes::from(msg.get_payload_bytes().to_vec());
        let response = Response::decode(&payload).expect("an answer decodes");
        if response.request_id() == request_id {
            answers.push(response);
        }
    }
    answers
}

/// A WebSocket client speaking raw Engine.IO frames on one task: pings are answered while it
/// reads, and it can leave in every way a client can.
struct Ws {
    ws: WebSocketStream<TcpStream>,
}

impl Ws {
    async fn handshake(addr: SocketAddr, path: &str, stream: TcpStream) -> Ws {
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{addr}{path}?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("handshake in time")
            .expect("websocket handshake");
        let mut c = Ws { ws };
        let open = c.next_text().await;
        assert!(open.starts_with('0'), "{open}");
        c
    }

    /// Opens a session and joins namespace `/`.
    async fn socketio(addr: SocketAddr) -> Ws {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Ws::socketio_over(addr, stream).await
    }

    async fn socketio_over(addr: SocketAddr, stream: TcpStream) -> Ws {
        let mut c = Ws::handshake(addr, "/socket.io/", stream).await;
        c.send("40").await;
        let reply = c.next_text().await;
        assert!(reply.starts_with("40{\"sid\""), "{reply}");
        c
    }

    async fn send(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// The next text frame that is not a ping (pings are answered).
    async fn next_text(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a frame");
            match frame {
                Message::Text(t) if t.as_str() == "2" => self.send("3").await,
                Message::Text(t) => return t.to_string(),
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Emits `event` with ack id `id`; returns the ack's first argument.
    async fn call(&mut self, id: u64, event: &str, arg: Value) -> Value {
        self.send(&format!("42{id}{}", json!([event, arg]))).await;
        let want = format!("43{id}");
        loop {
            let text = self.next_text().await;
            if let Some(rest) = text.strip_prefix(&want) {
                let v: Value = serde_json::from_str(rest).expect("ack JSON");
                return v[0].clone();
            }
        }
    }

    /// Leaves cleanly: Socket.IO disconnect, then the WebSocket close handshake.
    async fn close(mut self) {
        let _ = self.ws.send(Message::text("41")).await;
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
        // The server answers the close; what it sends before that is read and dropped.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Leaves by resetting the connection after `bytes`, which need not be whole frames.
    async fn cut(mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let stream = self.ws.get_mut();
        let _ = stream.write_all(bytes).await;
        let _ = stream.set_zero_linger();
    }
}

fn ok() -> Value {
    json!({"ok": true})
}

/// A client frame header announcing a masked text payload of 100 bytes, then 10 of them.
const CUT_MID_FRAME: &[u8] = &[
    0x81,
    0xe4,
    1,
    2,
    3,
    4,
    b'4' ^ 1,
    b'2' ^ 2,
    b'[' ^ 3,
    b'"' ^ 4,
    0,
    0,
    0,
    0,
    0,
    0,
];

/// What the churn did, by kind.
#[derive(Debug, Default)]
struct Tally {
    ws_closed: AtomicU64,
    ws_dropped: AtomicU64,
    ws_cut_mid_frame: AtomicU64,
    ws_cut_mid_header: AtomicU64,
    polling_closed: AtomicU64,
    polling_abandoned: AtomicU64,
    polling_get_aborted: AtomicU64,
    polling_body_aborted: AtomicU64,
    heads_cut: AtomicU64,
    slow_consumers: AtomicU64,
    floods: AtomicU64,
    publishes: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn assert_every_kind_ran(&self) {
        let kinds = [
            &self.ws_closed,
            &self.ws_dropped,
            &self.ws_cut_mid_frame,
            &self.ws_cut_mid_header,
            &self.polling_closed,
            &self.polling_abandoned,
            &self.polling_get_aborted,
            &self.polling_body_aborted,
            &self.heads_cut,
            &self.slow_consumers,
            &self.floods,
            &self.publishes,
        ];
        assert!(
            kinds.iter().all(|k| k.load(Ordering::Relaxed) > 0),
            "every kind of churn ran: {self:?}"
        );
    }
}

/// Runs the churn for `length`, then waits for every client of it to finish.
fn churn(
    rt: &tokio::runtime::Runtime,
    addrs: [SocketAddr; 2],
    length: Duration,
    tally: &Arc<Tally>,
) {
    let until = Instant::now() + length;
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        tasks.push(rt.spawn(ws_churner(addrs, until, i, tally.clone())));
    }
    for i in 0..2u64 {
        tasks.push(rt.spawn(slow_consumer(addrs[i as usize], until, tally.clone())));
    }
    tasks.push(rt.spawn(flooder(addrs[0], until, tally.clone())));
    let mut threads = Vec::new();
    for i in 0..3u64 {
        let tally = tally.clone();
        threads.push(std::thread::spawn(move || {
            polling_churner(addrs, until, i, &tally)
        }));
    }
    let cut_tally = tally.clone();
    threads.push(std::thread::spawn(move || {
        head_cutter(addrs, until, &cut_tally)
    }));
    for task in tasks {
        rt.block_on(task).expect("a churn client failed");
    }
    for thread in threads {
        thread.join().expect("a churn client failed");
    }
}

fn rng(seed: u64) -> rand::rngs::SmallRng {
    rand::rngs::SmallRng::seed_from_u64(seed)
}

fn room(rng: &mut impl Rng) -> String {
    format!("r{}", rng.random_range(0..ROOMS))
}

/// A churning client's pause between two sessions: the soak shares the machine with the other
/// tests, so its clients take turns with them; how much load matters less than how long.
const PACE: Duration = Duration::from_millis(25);

/// Connect, join, publish with acks, maybe leave, and go one of four ways.
async fn ws_churner(addrs: [SocketAddr; 2], until: Instant, seed: u64, tally: Arc<Tally>) {
    let mut rng = rng(seed);
    while Instant::now() < until {
        tokio::time::sleep(PACE).await;
        let addr = addrs[rng.random_range(0..2)];
        let mut c = Ws::socketio(addr).await;
        let rooms: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| room(&mut rng))
            .collect();
        assert_eq!(c.call(1, "join", json!(rooms)).await, ok());
        for id in 2..rng.random_range(3..6) {
            let data = json!({"pad": "x".repeat(rng.random_range(0..2000))});
            let publish = json!({"to": room(&mut rng), "event": "churn", "data": data});
            assert_eq!(c.call(id, "publish", publish).await, ok());
            Tally::add(&tally.publishes);
        }
        if rng.random_bool(0.5) {
            assert_eq!(c.call(9, "leave", json!(rooms[0])).await, ok());
        }
        match rng.random_range(0..4) {
            0 => {
                c.close().await;
                Tally::add(&tally.ws_closed);
            }
            1 => {
                drop(c);
                Tally::add(&tally.ws_dropped);
            }
            2 => {
                c.cut(CUT_MID_FRAME).await;
                Tally::add(&tally.ws_cut_mid_frame);
            }
            _ => {
                c.cut(&CUT_MID_FRAME[..1]).await;
                Tally::add(&tally.ws_cut_mid_header);
            }
        }
    }
}

/// A client whose receive window is tiny joins the flooded room and stops reading, until the
/// server cuts it or it leaves.
async fn slow_consumer(addr: SocketAddr, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut c = Ws::socketio_over(addr, stream).await;
        assert_eq!(c.call(1, "join", json!("flood")).await, ok());
        // Not reading is the point; how long is the workload's shape, not a wait.
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.cut(&[]).await;
        Tally::add(&tally.slow_consumers);
    }
}

/// Publishes 4 KiB events to the flooded room, one after the other's ack: a slow consumer's
/// queue passes its 64 KiB after 16 of them.
async fn flooder(addr: SocketAddr, until: Instant, tally: Arc<Tally>) {
    let mut c = Ws::socketio(addr).await;
    let data = "f".repeat(4 * 1024);
    let mut id = 0;
    while Instant::now() < until {
        id += 1;
        let publish = json!({"to": "flood", "event": "flood", "data": data});
        assert_eq!(c.call(id, "publish", publish).await, ok());
        Tally::add(&tally.floods);
        tokio::time::sleep(PACE / 5).await;
    }
    c.close().await;
}

/// Polls until a packet `want` accepts arrives (answering pings); returns it.
fn poll_for(c: &PollingClient, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        let payload = c.recv();
        let mut found = None;
        for packet in payload.split('\x1e') {
            if packet == "2" {
                c.send("3");
            } else if want(packet) {
                found = Some(packet.to_string());
            }
        }
        if let Some(packet) = found {
            return packet;
        }
    }
    panic!("no wanted packet on {} within {SETTLE:?}", c.sid);
}

/// A polling session: connect, join, publish with an ack, and go one of four ways.
fn polling_churner(addrs: [SocketAddr; 2], until: Instant, seed: u64, tally: &Tally) {
    let mut rng = rng(1000 + seed);
    while Instant::now() < until {
        std::thread::sleep(PACE);
        let (c, _) = PollingClient::open(addrs[rng.random_range(0..2)], "/socket.io/");
        c.send("40");
        poll_for(&c, |p| p.starts_with("40{\"sid\""));
        c.send(&format!("420{}", json!(["join", [room(&mut rng)]])));
        poll_for(&c, |p| p == r#"430[{"ok":true}]"#);
        let publish = json!({"to": room(&mut rng), "event": "churn", "data": {"poll": seed}});
        c.send(&format!("421{}", json!(["publish", publish])));
        poll_for(&c, |p| p == r#"431[{"ok":true}]"#);
        Tally::add(&tally.publishes);
        match rng.random_range(0..4) {
            0 => {
                c.send("1");
                Tally::add(&tally.polling_closed);
            }
            // Silent: the server ends it after a ping interval and a ping timeout.
            1 => Tally::add(&tally.polling_abandoned),
            // A long poll the client gives up: the server ends the session.
            2 => {
                drop(c.start_get());
                Tally::add(&tally.polling_get_aborted);
            }
            _ => {
                let conn: HttpConn = c.raw_post("Content-Length: 100\r\n\r\n42[\"publ");
                drop(conn);
                Tally::add(&tally.polling_body_aborted);
            }
        }
    }
}

/// Requests cut mid-head, mid-body, and connections that send nothing.
fn head_cutter(addrs: [SocketAddr; 2], until: Instant, tally: &Tally) {
    let mut rng = rng(2000);
    while Instant::now() < until {
        let addr = addrs[rng.random_range(0..2)];
        let mut conn = HttpConn::connect(addr);
        match rng.random_range(0..3) {
            0 => conn.send(b"GET /socket.io/?EIO=4&transport=pol"),
            1 => conn.send(
                b"POST /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nContent-Length: 50\r\n\r\n40",
            ),
            _ => {}
        }
        drop(conn);
        Tally::add(&tally.heads_cut);
        std::thread::sleep(PACE);
    }
}

/// Subscribers on both processes in room `canary`; a publisher on the first process
/// publishes numbered events there until told to stop.
struct Canary {
    stop: Arc<AtomicBool>,
    publisher: tokio::task::JoinHandle<u64>,
    subscribers: Vec<tokio::task::JoinHandle<u64>>,
}

impl Canary {
    async fn start(addrs: [SocketAddr; 2]) -> Canary {
        let mut subscribers = Vec::new();
        for addr in addrs {
            let mut c = Ws::socketio(addr).await;
            assert_eq!(c.call(1, "join", json!("canary")).await, ok());
            subscribers.push(tokio::spawn(async move {
                let mut next = 0u64;
                loop {
                    let text = c.next_text().await;
                    let Some(event) = text.strip_prefix("42") else {
                        continue;
                    };
                    let v: Value = serde_json::from_str(event).expect("event JSON");
                    assert_eq!(v[0], "canary", "{text}");
                    if v[1]["last"] == true {
                        assert_eq!(v[1]["seq"], next, "the last one is the next one");
                        c.close().await;
                        return next;
                    }
                    assert_eq!(v[1]["seq"], next, "canary events arrive once, in order");
                    next += 1;
                }
            }));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let mut c = Ws::socketio(addrs[0]).await;
        let publisher = tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                let last = stopped.load(Ordering::Relaxed);
                let publish =
                    json!({"to": "canary", "event": "canary", "data": {"seq": seq, "last": last}});
                assert_eq!(c.call(seq, "publish", publish).await, ok());
                if last {
                    c.close().await;
                    return seq;
                }
                seq += 1;
                // The canary's pace; what counts is that every event arrives.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Canary {
            stop,
            publisher,
            subscribers,
        }
    }

    /// Stops the publisher; every subscriber must have had every event. Returns how many.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let published = self.publisher.await.expect("the canary publisher");
        for s in self.subscribers {
            assert_eq!(s.await.expect("a canary subscriber"), published);
        }
        published
    }
}
