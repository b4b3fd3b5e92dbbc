//! `jitter`: clients in rooms receive a steady stream while, every second, a share of them
//! loses its connection abruptly (a TCP reset, or a silent stall past the server's ping timeout)
//! and reconnects after a random delay. The clients speak connection state recovery
//! themselves (the `pid` of the CONNECT reply, the offset of the last event, both sent back
//! in the next CONNECT's auth), as socket.io-client does; a client that comes back with a
//! fresh session joins its room again.
//!
//! Measured per client, from its first join to the end: unique messages received out of those
//! published to its room (the delivery rate), duplicates, and the share of reconnections that
//! came back recovered; and the latency of every delivery (recovered ones included, whose
//! latency is the time they waited).
//!
//! With `--url-b` there are two servers sharing their rooms and sessions (through Redis): every
//! client connection, the first and each reconnection, goes to one of the two at random, so
//! about half of the reconnections land on the other machine; the publishers stay on `--url`.

mod gaps;
mod rows;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::Ctx;
use crate::client::{ClientError, Conn, Opened, Target, READ_BUSY, READ_IDLE};
use crate::proc::{GeneratorUsage, ServerUsage};
use crate::sio::{self, Delivery, SioPacket};
use crate::stats::{new_histogram, ErrorTally, LatencySummary};
use gaps::{ClientGap, ConnRecord};

/// How a client loses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DropMode {
    /// A TCP reset: the server sees the loss at once.
    Rst,
    /// The client stops reading (and answering pings) for `--stall-ms`, then resets.
    Stall,
    /// Half of each.
    Mixed,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct JitterArgs {
    /// Clients receiving (10000 for the large run).
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,
    /// Rooms the clients are spread over, evenly.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Messages published to each room per second.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    /// Publisher connections (each publishes to its share of the rooms; they never drop).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Seconds of jitter.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Share of the clients that drop every second.
    #[arg(long, default_value_t = 0.05)]
    pub drop_share: f64,
    /// How they drop.
    #[arg(long, value_enum, default_value = "mixed")]
    pub drop_mode: DropMode,
    /// How long a stalled client stops reading before it resets: longer than the server's ping
    /// interval plus ping timeout, so that the server gives up on it first.
    #[arg(long, default_value_t = 12_000)]
    pub stall_ms: u64,
    /// Shortest wait before reconnecting, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub reconnect_min_ms: u64,
    /// Longest wait before reconnecting, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub reconnect_max_ms: u64,
    /// Seconds after the jitter (publishing goes on for 2 of them) for every client to come
    /// back and catch up.
    #[arg(long, default_value_t = 20)]
    pub settle: u64,
    /// Do not send `pid` and `offset` back (a client without recovery).
    #[arg(long)]
    pub no_recovery: bool,
    /// A second server sharing rooms and sessions with `--url` (through Redis): every client
    /// connection, the first and each reconnection, goes to `--url` or to this one at random
    /// (recovery across machines); the publishers stay on `--url`.
    #[arg(long)]
    pub url_b: Option<String>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct JitterReport {
    pub command: String,
    pub clients: usize,
    pub rooms: usize,
    pub rate_per_room: u64,
    pub duration_s: u64,
    pub drop_mode: DropMode,
    pub drops: u64,
    pub reconnects: u64,
    pub recovered: u64,
    pub recovered_share: f64,
    /// Reconnections that had no offset to send back (their session had received nothing):
    /// they sent their pid alone, as socket.io-client does (Node then starts them afresh).
    pub reconnects_without_offset: u64,
    /// With `--url-b`: reconnections that went to the other server than the client's last
    /// connection, and how many of them came back recovered.
    pub reconnects_moved: u64,
    pub recovered_moved: u64,
    pub expected: u64,
    pub delivered_unique: u64,
    pub delivery_rate: f64,
    pub duplicates: u64,
    /// Clients that never joined (their first connection failed).
    pub never_joined: u64,
    pub latency: LatencySummary,
    pub errors: ErrorTally,
    pub server: Option<ServerUsage>,
    pub generator: Option<GeneratorUsage>,
    /// The first clients that missed messages: what they missed and their connections.
    pub gaps: Vec<ClientGap>,
}

/// What the tasks share.
struct Shared {
    epoch: Instant,
    /// Messages published to each room so far (the next sequence number).
    published: Vec<AtomicU64>,
    drops: AtomicU64,
    /// Clients that have the last message of their room (after publishing stopped).
    caught_up: AtomicUsize,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// What one client saw.
#[derive(Default)]
struct ClientTally {
    /// The first sequence number it counts (the room's count when its first join was acked).
    start: Option<u64>,
    seen: Vec<u64>,
    unique: u64,
    duplicates: u64,
    reconnects: u64,
    recovered: u64,
    /// Reconnections without an offset to send (nothing received since the session began).
    without_offset: u64,
    /// Reconnections to the other server than the last connection's, and those recovered.
    moved: u64,
    recovered_moved: u64,
    errors: ErrorTally,
    /// Every connection attempt, for the report's account of clients that missed messages.
    history: Vec<ConnRecord>,
}

impl ClientTally {
    /// Records sequence `seq`; false when it was seen before.
    fn record(&mut self, seq: u64) -> bool {
        if let Some(conn) = self.history.last_mut() {
            conn.saw(seq);
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return false;
        }
        self.seen[word] |= 1 << bit;
        if self.start.is_some_and(|s| seq >= s) {
            self.unique += 1;
        }
        true
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// A client's recovery state between connections.
#[derive(Default)]
struct Resume {
    pid: Option<String>,
    sid: Option<String>,
    offset: Option<String>,
}

const JOIN_ACK: u64 = 1;

/// Runs the scenario; `url_b` is the parsed `--url-b` (the clients' second server).
pub(crate) async fn run(
    ctx: &Ctx,
    args: &JitterArgs,
    url_b: Option<Target>,
) -> anyhow::Result<JitterReport> {
    anyhow::ensure!(
        args.rooms > 0 && args.publishers > 0,
        "rooms and publishers > 0"
    );
    anyhow::ensure!(args.reconnect_min_ms <= args.reconnect_max_ms, "min <= max");
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        published: (0..args.rooms).map(|_| AtomicU64::new(0)).collect(),
        drops: AtomicU64::new(0),
        caught_up: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (final_tx, final_rx) = watch::channel::<Option<Arc<Vec<u64>>>>(None);
    let mut clients = JoinSet::new();
    let mut commands = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (tx, rx) = mpsc::unbounded_channel();
        commands.push(tx);
        let client = Client {
            index: i,
            ctx: ClientCtx::of(ctx, url_b.clone()),
            args: args.clone(),
            room: i % args.rooms,
            shared: shared.clone(),
            commands: rx,
            stop: stop_rx.clone(),
            last: final_rx.clone(),
            rng: rand::rngs::SmallRng::seed_from_u64(i as u64),
        };
        clients.spawn(client.run());
    }
    // Publishers start once most clients have had their first join (a fixed pause is enough:
    // a client counts only what is published after its own join).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (
        ctx.probe.sample(),
        crate::proc::own_cpu_seconds(),
        Instant::now(),
    );
    let mut publishers = JoinSet::new();
    let (pub_stop_tx, pub_stop_rx) = watch::channel(false);
    for p in 0..args.publishers {
        let rooms: Vec<usize> = (p..args.rooms).step_by(args.publishers).collect();
        let conn = Conn::open(&ctx.target, &ctx.sources, READ_IDLE, ctx.handshake_timeout)
            .await
            .map_err(|e| anyhow::anyhow!("publisher {p}: {e}"))?;
        publishers.spawn(publish(
            conn,
            rooms,
            args.rate,
            shared.clone(),
            pub_stop_rx.clone(),
        ));
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0xD20);
    let per_second = (args.clients as f64 * args.drop_share).round() as usize;
    for second in 0..args.duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for k in 0..per_second {
            let victim = rng.random_range(0..args.clients);
            let stall = match args.drop_mode {
                DropMode::Rst => false,
                DropMode::Stall => true,
                DropMode::Mixed => (second as usize + k) % 2 == 1,
            };
            let _ = commands[victim].send(stall);
        }
    }
    // Publishing goes on a little, then stops; the clients get until the settle time ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = pub_stop_tx.send(true);
    // When each message of each room was published (for the gaps' account).
    let mut published_ms: Vec<Vec<u64>> = vec![Vec::new(); args.rooms];
    while let Some(done) = publishers.join_next().await {
        for (room, times) in done.unwrap_or_default() {
            published_ms[room] = times;
        }
    }
    let last: Vec<u64> = shared
        .published
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .collect();
    let _ = final_tx.send(Some(Arc::new(last.clone())));
    let deadline = Instant::now() + Duration::from_secs(args.settle.saturating_sub(2));
    while shared.caught_up.load(Ordering::Relaxed) < args.clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = ServerUsage::between(&ctx.probe, before.0, ctx.probe.sample());
    let wall = before.2.elapsed().as_secs_f64();
    let generator = GeneratorUsage::since(before.1, wall, ctx.threads);
    let _ = stop_tx.send(true);
    let mut report = JitterReport {
        command: ctx.command.clone(),
        clients: args.clients,
        rooms: args.rooms,
        rate_per_room: args.rate,
        duration_s: args.duration,
        drop_mode: args.drop_mode,
        drops: shared.drops.load(Ordering::Relaxed),
        reconnects: 0,
        recovered: 0,
        recovered_share: 0.0,
        reconnects_without_offset: 0,
        reconnects_moved: 0,
        recovered_moved: 0,
        expected: 0,
        delivered_unique: 0,
        delivery_rate: 0.0,
        duplicates: 0,
        never_joined: 0,
        latency: LatencySummary::of(&new_histogram()),
        errors: ErrorTally::default(),
        server,
        generator,
        gaps: Vec::new(),
    };
    let mut latency = new_histogram();
    while let Some(done) = clients.join_next().await {
        let Ok((index, room, tally, hist)) = done else {
            continue;
        };
        let _ = latency.add(&hist);
        report.reconnects += tally.reconnects;
        report.recovered += tally.recovered;
        report.reconnects_without_offset += tally.without_offset;
        report.reconnects_moved += tally.moved;
        report.recovered_moved += tally.recovered_moved;
        report.duplicates += tally.duplicates;
        report.errors.merge(&tally.errors);
        match tally.start {
            Some(start) => {
                report.expected += last[room].saturating_sub(start);
                report.delivered_unique += tally.unique;
                if tally.unique < last[room].saturating_sub(start)
                    && report.gaps.len() < gaps::MAX_CLIENTS
                {
                    let (missing, missing_seqs) =
                        gaps::missing(|s| tally.has(s), start, last[room]);
                    let when = &published_ms[room];
                    let missing_published_ms = missing_seqs
                        .iter()
                        .map(|&s| when.get(s as usize).copied())
                        .collect();
                    report.gaps.push(ClientGap {
                        client: index,
                        room,
                        from_seq: start,
                        last: last[room],
                        missing,
                        missing_seqs,
                        missing_published_ms,
                        connections: tally.history,
                    });
                }
            }
            None => report.never_joined += 1,
        }
    }
    report.latency = LatencySummary::of(&latency);
    report.recovered_share = ratio(report.recovered, report.reconnects);
    report.delivery_rate = ratio(report.delivered_unique, report.expected);
    Ok(report)
}

/// Resolves once `stop` says true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Publishes `rate` messages a second to each of `rooms` until `stop`, answering pings.
/// Returns, for each of its rooms, when each message was published (ms since the run began).
async fn publish(
    mut conn: Conn,
    rooms: Vec<usize>,
    rate: u64,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Vec<(usize, Vec<u64>)> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut ack = 0u64;
    let mut sent: Vec<(usize, Vec<u64>)> = rooms.iter().map(|&r| (r, Vec::new())).collect();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (room, times) in &mut sent {
                    let room = *room;
                    let seq = shared.published[room].load(Ordering::Relaxed);
                    let d = Delivery { publisher: room as u32, seq, sent_us: shared.now_us() };
                    ack += 1;
                    let name = format!("r{room}");
                    conn.queue_sio(|out| sio::publish_packet(out, ack, &name, "bench", d, ""));
                    shared.published[room].store(seq + 1, Ordering::Relaxed);
                    times.push(d.sent_us / 1000);
                }
            }
            r = conn.read_some() => {
                if r.is_err() || conn.drain(|_| {}).is_err() {
                    break;
                }
            }
            _ = stopped(&mut stop) => break,
        }
        if conn.has_pending() && conn.flush().await.is_err() {
            break;
        }
    }
    sent
}

/// What a client needs of the context.
struct ClientCtx {
    /// `--url`, and `--url-b` when given: each connection goes to one of them at random.
    targets: Vec<Target>,
    sources: Arc<crate::client::Sources>,
    timeout: Duration,
}

impl ClientCtx {
    fn of(ctx: &Ctx, url_b: Option<Target>) -> ClientCtx {
        ClientCtx {
            targets: std::iter::once(ctx.target.clone()).chain(url_b).collect(),
            sources: ctx.sources.clone(),
            timeout: ctx.handshake_timeout,
        }
    }
}

struct Client {
    index: usize,
    ctx: ClientCtx,
    args: JitterArgs,
    room: usize,
    shared: Arc<Shared>,
    /// Drop now: `true` for a stall, `false` for a reset.
    commands: mpsc::UnboundedReceiver<bool>,
    stop: watch::Receiver<bool>,
    /// The rooms' final counts, once publishing stopped.
    last: watch::Receiver<Option<Arc<Vec<u64>>>>,
    rng: rand::rngs::SmallRng,
}

/// How a connection ended.
enum End {
    Stop,
    /// Told to drop: `true` after a stall, `false` by a reset at once.
    Dropped(bool),
    Failed(ClientError),
}

impl Client {
    async fn run(mut self) -> (usize, usize, ClientTally, Histogram<u64>) {
        let mut tally = ClientTally::default();
        let mut latency = new_histogram();
        let mut resume = Resume::default();
        let mut caught_up = false;
        let mut first = true;
        // The server of the last connection that opened (an index in `targets`).
        let mut last_server: Option<usize> = None;
        while !*self.stop.borrow() {
            // One server: no draw, so that the reconnection delays stay those of one server.
            let server = match self.ctx.targets.len() {
                1 => 0,
                n => self.rng.random_range(0..n),
            };
            let moved = !first && last_server.is_some_and(|l| l != server);
            if !first {
                tally.reconnects += 1;
                if resume.offset.is_none() {
                    tally.without_offset += 1;
                }
                if moved {
                    tally.moved += 1;
                }
            }
            // As socket.io-client: the pid, with the offset when an event brought one.
            let auth = match (&resume.pid, &resume.offset) {
                _ if self.args.no_recovery => None,
                (Some(pid), Some(offset)) => {
                    Some(format!(r#"{{"pid":"{pid}","offset":"{offset}"}}"#))
                }
                (Some(pid), None) => Some(format!(r#"{{"pid":"{pid}"}}"#)),
                (None, _) => None,
            };
            let at_ms = self.shared.now_us() / 1000;
            tally
                .history
                .push(ConnRecord::new(at_ms, server, auth.clone()));
            let opened = Conn::open_recovering(
                &self.ctx.targets[server],
                &self.ctx.sources,
                READ_BUSY,
                self.ctx.timeout,
                auth.as_deref(),
            )
            .await;
            let Opened {
                conn,
                connect,
                events,
            } = match opened {
                Ok(o) => o,
                Err(e) => {
                    tally.errors.add(e.kind());
                    if let Some(conn) = tally.history.last_mut() {
                        conn.failed = Some(e.kind());
                    }
                    first = false;
                    self.pause().await;
                    continue;
                }
            };
            if let Some(conn) = tally.history.last_mut() {
                conn.opened_ms = Some(self.shared.now_us() / 1000);
            }
            let pid = sio::json_str(&connect, "pid").map(str::to_owned);
            let sid = sio::json_str(&connect, "sid").map(str::to_owned);
            let recovered = !first && pid.is_some() && pid == resume.pid && sid == resume.sid;
            if recovered {
                tally.recovered += 1;
                if let Some(conn) = tally.history.last_mut() {
                    conn.recovered = true;
                }
                if moved {
                    tally.recovered_moved += 1;
                }
            }
            last_server = Some(server);
            resume.pid = pid;
            resume.sid = sid;
            first = false;
            while self.commands.try_recv().is_ok() {}
            for event in &events {
                self.on_event(event, &mut tally, &mut latency, &mut resume);
            }
            let end = self
                .connected(
                    conn,
                    recovered,
                    &mut tally,
                    &mut latency,
                    &mut resume,
                    &mut caught_up,
                )
                .await;
            let ended_ms = self.shared.now_us() / 1000;
            if let Some(conn) = tally.history.last_mut() {
                conn.ended_ms = Some(ended_ms);
                conn.end = match &end {
                    End::Stop => "stop",
                    End::Dropped(true) => "stall",
                    End::Dropped(false) => "rst",
                    End::Failed(e) => e.kind(),
                };
            }
            match end {
                End::Stop => break,
                End::Dropped(_) => self.pause().await,
                End::Failed(e) => {
                    tally.errors.add(e.kind());
                    self.pause().await;
                }
            }
        }
        (self.index, self.room, tally, latency)
    }

    /// Waits the reconnection delay.
    async fn pause(&mut self) {
        let ms = self
            .rng
            .random_range(self.args.reconnect_min_ms..=self.args.reconnect_max_ms);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn on_event(
        &self,
        event: &[u8],
        tally: &mut ClientTally,
        latency: &mut Histogram<u64>,
        resume: &mut Resume,
    ) {
        if resume.pid.is_some() {
            if let Some(offset) = sio::trailing_offset(event) {
                resume.offset = Some(offset.to_owned());
            }
        }
        if let Some(d) = sio::parse_delivery(event) {
            if d.publisher as usize == self.room && tally.record(d.seq) {
                let now = self.shared.now_us();
                latency.saturating_record(now.saturating_sub(d.sent_us).max(1));
            }
        }
    }

    /// Serves one connection until told to drop, to stop, or until it fails.
    async fn connected(
        &mut self,
        mut conn: Conn,
        recovered: bool,
        tally: &mut ClientTally,
        latency: &mut Histogram<u64>,
        resume: &mut Resume,
        caught_up: &mut bool,
    ) -> End {
        if !recovered {
            let room = format!("r{}", self.room);
            conn.queue_sio(|out| sio::join_packet(out, JOIN_ACK, &room));
            if let Err(e) = conn.flush().await {
                return End::Failed(e);
            }
        }
        loop {
            tokio::select! {
                r = conn.read_some() => {
                    if let Err(e) = r {
                        return End::Failed(e);
                    }
                }
                Some(stall) = self.commands.recv() => {
                    self.shared.drops.fetch_add(1, Ordering::Relaxed);
                    if stall {
                        // Silent: nothing read, no pong; the server's ping timeout ends it.
                        tokio::time::sleep(Duration::from_millis(self.args.stall_ms)).await;
                    }
                    conn.reset();
                    return End::Dropped(stall);
                }
                _ = stopped(&mut self.stop) => return End::Stop,
                _ = self.last.changed() => {}
            }
            let mut acked = false;
            let drained = conn.drain(|p| match sio::parse_sio(p) {
                SioPacket::Event(e) => self.on_event(e, tally, latency, resume),
                SioPacket::Ack { id: JOIN_ACK, .. } => acked = true,
                _ => {}
            });
            if let Err(e) = drained {
                return End::Failed(e);
            }
            if acked && tally.start.is_none() {
                tally.start = Some(self.shared.published[self.room].load(Ordering::Relaxed));
            }
            if conn.has_pending() {
                if let Err(e) = conn.flush().await {
                    return End::Failed(e);
                }
            }
            if !*caught_up {
                let last = self.last.borrow().as_ref().map(|l| l[self.room]);
                if let Some(last) = last {
                    if last == 0 || tally.has(last - 1) {
                        *caught_up = true;
                        self.shared.caught_up.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
