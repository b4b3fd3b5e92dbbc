//! `fanout` and `cross`: S subscribers spread over R rooms, P publishers publishing to the
//! rooms in turn; deliveries per second, end-to-end latency and counted losses.
//!
//! Each publisher numbers its publishes per room from 0, so every (subscriber, publisher)
//! stream must arrive as 0, 1, 2, ... Expected deliveries follow from room membership: a
//! subscriber of room r must receive everything any publisher sent to r. Publishers keep at most
//! `--window` publishes unacknowledged, so "flat out" (`--rate 0`) is as fast as the server acks
//! and its backlog stays bounded. After `--duration` the publishers stop and the subscribers get
//! up to `--drain` seconds to receive what is still on its way before losses are counted.
//! `cross` is the same with the subscribers on another server (`--sub-url`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep_until;

use super::api::ApiPublisher;
use super::Ctx;
use crate::client::{ClientError, Conn, Sources, Target, READ_BUSY};
use crate::proc::{own_cpu_seconds, GeneratorUsage, ServerUsage};
use crate::report::per_second;
use crate::sio::{self, Delivery, SioPacket};
use crate::stats::{new_histogram, ErrorTally, LatencySummary, SeqTracker, SharedHistogram};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutArgs {
    /// Subscriber connections; subscriber i joins room i mod R.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Publisher connections (they join no room).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Publishes per second per publisher; 0 = flat out (as fast as the window of acks allows).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most seconds to wait after publishing for deliveries still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Most unacknowledged publishes per publisher.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Extra bytes of padding in each payload.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// Event name the subscribers receive.
    #[arg(long, default_value = "bench")]
    pub event: String,
}

/// How the publishers publish.
#[derive(Debug, Clone)]
pub(crate) enum Via {
    /// As Socket.IO clients: the gateway's `publish` event.
    SocketIo,
    /// As a backend: `POST /api/v1/emit` with this key, `batch` emits per request.
    Api { key: String, batch: usize },
}

/// Which server each connection goes to. `fanout`: all to `--url`; `cross`: subscribers to
/// `--sub-url`; `cluster-sim`: room r's members on `copies` consecutive servers from r mod M,
/// publisher p on server p mod M.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub subs: Vec<Target>,
    pub pubs: Vec<Target>,
    /// Servers holding members of each room (the rest hold none of it).
    pub copies: usize,
}

impl Placement {
    /// Every connection to `target`, or subscribers to `sub`.
    pub(crate) fn two(target: &Target, sub: Option<&Target>) -> Self {
        Placement {
            subs: vec![sub.unwrap_or(target).clone()],
            pubs: vec![target.clone()],
            copies: 1,
        }
    }

    /// Subscriber `i` of room `room` (the `i / rooms`-th member of its room).
    fn subscriber(&self, i: usize, room: usize, rooms: usize) -> &Target {
        let copy = (i / rooms) % self.copies.max(1);
        &self.subs[(room + copy) % self.subs.len()]
    }

    fn publisher(&self, p: usize) -> &Target {
        &self.pubs[p % self.pubs.len()]
    }

    fn hosts(targets: &[Target]) -> String {
        let hosts: Vec<&str> = targets.iter().map(|t| t.host.as_str()).collect();
        hosts.join(",")
    }
}

/// What the subscribers share with the coordinator while the run goes on.
pub(super) struct Shared {
    epoch: Instant,
    /// Deliveries parsed so far (duplicates included), to end the drain early.
    received: AtomicU64,
    /// Microseconds since the epoch of the latest delivery.
    last_delivery_us: AtomicU64,
    latency: SharedHistogram,
}

impl Shared {
    pub(super) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

struct SubOutcome {
    /// The room joined; `None` if the subscriber never joined (it expects nothing).
    room: Option<usize>,
    tracker: SeqTracker,
    /// Packets that were not benchmark deliveries.
    unparsed: u64,
    /// Why the connection ended before the stop, if it did.
    ended: Option<&'static str>,
}

pub(super) struct PubOutcome {
    pub(super) index: usize,
    /// Publishes sent to each room (acked or not).
    pub(super) sent: Vec<u64>,
    pub(super) acked_ok: u64,
    pub(super) acked_error: u64,
    pub(super) unacked: u64,
    pub(super) ack_latency: Histogram<u64>,
    pub(super) ended: Option<&'static str>,
}

impl PubOutcome {
    /// Publisher `index`'s outcome before it publishes anything to its `rooms` rooms.
    pub(super) fn new(index: usize, rooms: usize) -> PubOutcome {
        PubOutcome {
            index,
            sent: vec![0; rooms],
            acked_ok: 0,
            acked_error: 0,
            unacked: 0,
            ack_latency: new_histogram(),
            ended: None,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Losses {
    /// Deliveries that room membership says must arrive.
    pub expected: u64,
    /// Distinct deliveries that arrived (each (subscriber, publisher, seq) once).
    pub received: u64,
    /// expected - received, over the (subscriber, publisher) pairs that got less than expected.
    pub lost: u64,
    /// (subscriber, publisher) pairs that lost at least one delivery.
    pub pairs_with_loss: u64,
    /// Times a stream skipped sequence numbers, and how many it skipped (some may have come
    /// later, see `reordered`; tail losses after a stream's last delivery are only in `lost`).
    pub gap_events: u64,
    pub gap_missing: u64,
    /// Deliveries that arrived after a later sequence number of the same publisher: delivered,
    /// but out of the publisher's order.
    pub reordered: u64,
    /// Deliveries of a (subscriber, publisher, seq) already received.
    pub duplicates: u64,
    /// Deliveries beyond what was sent to the subscriber's room (wrong room, or phantom).
    pub unexpected: u64,
    /// Packets that were not benchmark deliveries, and deliveries from unknown publishers.
    pub unparsed: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct FanoutReport {
    pub scenario: &'static str,
    pub command: String,
    pub url: String,
    pub sub_url: String,
    pub subscribers: usize,
    pub rooms: usize,
    pub publishers: usize,
    pub rate_per_publisher: f64,
    pub window: usize,
    pub payload_padding: usize,
    pub duration_s: f64,
    pub subscribers_joined: usize,
    pub publishers_connected: usize,
    pub setup_failures: ErrorTally,
    /// Connections the server ended during the run.
    pub disconnects: ErrorTally,
    pub publishes_sent: u64,
    pub publishes_acked: u64,
    pub publish_errors: u64,
    pub publishes_unacked: u64,
    pub publishes_per_s: f64,
    pub deliveries_per_s: f64,
    /// Seconds from the first publish to the last delivery.
    pub delivery_span_s: f64,
    pub drain_s: f64,
    pub latency: LatencySummary,
    pub publish_ack_latency: LatencySummary,
    pub losses: Losses,
    pub server: Option<ServerUsage>,
    pub deliveries_per_server_cpu_s: Option<f64>,
    /// The generator's own CPU over the same phase (publishing and drain).
    pub generator: Option<GeneratorUsage>,
}

pub(crate) async fn run(
    ctx: &Ctx,
    args: &FanoutArgs,
    place: &Placement,
    via: &Via,
) -> anyhow::Result<FanoutReport> {
    anyhow::ensure!(args.rooms > 0, "--rooms must be at least 1");
    anyhow::ensure!(args.window > 0, "--window must be at least 1");
    anyhow::ensure!(args.rate >= 0.0, "--rate must be 0 (flat out) or positive");
    let args = Arc::new(args.clone());
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        received: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
        latency: SharedHistogram::new(64),
    });
    let permits = Arc::new(Semaphore::new(ctx.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (go_tx, go_rx) = watch::channel::<Option<Instant>>(None);
    let mut setup_failures = ErrorTally::default();

    // Subscribers: connect, join, report ready, then read until stopped.
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<usize, &'static str>>(1024);
    let mut subs = JoinSet::new();
    for i in 0..args.subscribers {
        let job = SubscriberJob {
            index: i,
            room: i % args.rooms,
            target: place.subscriber(i, i % args.rooms, args.rooms).clone(),
            sources: ctx.sources.clone(),
            timeout: ctx.handshake_timeout,
            publishers: args.publishers,
            shared: shared.clone(),
        };
        let (permits, ready_tx, stop_rx) = (permits.clone(), ready_tx.clone(), stop_rx.clone());
        subs.spawn(job.run(permits, ready_tx, stop_rx));
    }
    drop(ready_tx);
    let mut joined = 0;
    let mut members = vec![0u64; args.rooms];
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(room) => {
                joined += 1;
                members[room] += 1;
            }
            Err(kind) => setup_failures.add(kind),
        }
    }

    // Publishers: connect, report ready, wait for the common start.
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<(), &'static str>>(1024);
    let mut pubs = JoinSet::new();
    for p in 0..args.publishers {
        let (permits, ready_tx, go_rx) = (permits.clone(), ready_tx.clone(), go_rx.clone());
        let (target, args, shared) = (place.publisher(p).clone(), args.clone(), shared.clone());
        let timeout = ctx.handshake_timeout;
        match via {
            Via::SocketIo => {
                let sources = ctx.sources.clone();
                let job = PublisherJob {
                    index: p,
                    target,
                    sources,
                    timeout,
                    args,
                    shared,
                };
                pubs.spawn(job.run(permits, ready_tx, go_rx));
            }
            Via::Api { key, batch } => {
                let (key, batch) = (key.clone(), *batch);
                let job = ApiPublisher {
                    index: p,
                    target,
                    timeout,
                    args,
                    shared,
                    key,
                    batch,
                };
                pubs.spawn(job.run(permits, ready_tx, go_rx));
            }
        }
    }
    drop(ready_tx);
    let mut pubs_connected = 0;
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(()) => pubs_connected += 1,
            Err(kind) => setup_failures.add(kind),
        }
    }

    let cpu_before = ctx.probe.sample();
    let own_before = own_cpu_seconds();
    let start = Instant::now();
    let start_us = shared.now_us();
    let _ = go_tx.send(Some(start));
    let mut pub_outcomes = Vec::new();
    while let Some(r) = pubs.join_next().await {
        if let Ok(o) = r {
            pub_outcomes.push(o);
        }
    }
    pub_outcomes.sort_by_key(|o| o.index);
    // What each publisher sent to each room, indexed by publisher (absent ones sent nothing).
    let mut sent_by = vec![vec![0u64; args.rooms]; args.publishers];
    for o in &pub_outcomes {
        sent_by[o.index].clone_from(&o.sent);
    }
    let sent: Vec<u64> = (0..args.rooms)
        .map(|r| sent_by.iter().map(|s| s[r]).sum())
        .collect();
    // The drain ends early once as many deliveries arrived as membership says must; a
    // subscriber the server dropped keeps it waiting the whole drain, which is right: its
    // losses are then counted below.
    let expected_total: u64 = (0..args.rooms).map(|r| members[r] * sent[r]).sum();
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    while shared.received.load(Ordering::Relaxed) < expected_total
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = (start.elapsed().as_secs_f64() - args.duration).max(0.0);
    let cpu_after = ctx.probe.sample();
    let generator = GeneratorUsage::since(own_before, start.elapsed().as_secs_f64(), ctx.threads);
    let _ = stop_tx.send(true);
    let mut sub_outcomes = Vec::new();
    while let Some(r) = subs.join_next().await {
        if let Ok(o) = r {
            sub_outcomes.push(o);
        }
    }

    // Count losses exactly, per (subscriber, publisher).
    let mut losses = Losses::default();
    let mut disconnects = ErrorTally::default();
    for s in &sub_outcomes {
        if let Some(kind) = s.ended {
            disconnects.add(kind);
        }
        losses.gap_events += s.tracker.gap_events;
        losses.gap_missing += s.tracker.gap_missing;
        losses.duplicates += s.tracker.duplicates;
        losses.reordered += s.tracker.reordered;
        losses.unparsed += s.unparsed + s.tracker.unknown_publisher;
        for (p, sent_to) in sent_by.iter().enumerate() {
            let got = s.tracker.unique_from(p);
            let want = s.room.map_or(0, |r| sent_to[r]);
            losses.expected += want;
            losses.received += got.min(want);
            if got < want {
                losses.lost += want - got;
                losses.pairs_with_loss += 1;
            } else {
                losses.unexpected += got - want;
            }
        }
    }
    let mut ack_latency = new_histogram();
    let (mut acked, mut ack_errors, mut unacked) = (0, 0, 0);
    for o in &pub_outcomes {
        let _ = ack_latency.add(&o.ack_latency);
        acked += o.acked_ok;
        ack_errors += o.acked_error;
        unacked += o.unacked;
        if let Some(kind) = o.ended {
            disconnects.add(kind);
        }
    }
    let publishes_sent: u64 = sent.iter().sum();
    let last_us = shared.last_delivery_us.load(Ordering::Relaxed);
    let span = (last_us.saturating_sub(start_us) as f64 / 1e6).max(args.duration);
    let server = ServerUsage::between(&ctx.probe, cpu_before, cpu_after);
    let deliveries = losses.received as f64;
    Ok(FanoutReport {
        scenario: match via {
            Via::Api { .. } => "api",
            Via::SocketIo if place.subs.len() > 1 => "cluster-sim",
            Via::SocketIo if place.subs[0].addr == ctx.target.addr => "fanout",
            Via::SocketIo => "cross",
        },
        command: ctx.command.clone(),
        url: Placement::hosts(&place.pubs),
        sub_url: Placement::hosts(&place.subs),
        subscribers: args.subscribers,
        rooms: args.rooms,
        publishers: args.publishers,
        rate_per_publisher: args.rate,
        window: args.window,
        payload_padding: args.payload,
        duration_s: args.duration,
        subscribers_joined: joined,
        publishers_connected: pubs_connected,
        setup_failures,
        disconnects,
        publishes_sent,
        publishes_acked: acked,
        publish_errors: ack_errors,
        publishes_unacked: unacked,
        publishes_per_s: per_second(publishes_sent as f64, args.duration),
        deliveries_per_s: per_second(deliveries, span),
        delivery_span_s: span,
        drain_s,
        latency: LatencySummary::of(&shared.latency.merged()),
        publish_ack_latency: LatencySummary::of(&ack_latency),
        deliveries_per_server_cpu_s: server
            .as_ref()
            .map(|s| per_second(deliveries, s.cpu_seconds)),
        server,
        losses,
        generator,
    })
}

pub(super) fn room_name(r: usize) -> String {
    format!("r{r}")
}

struct SubscriberJob {
    index: usize,
    room: usize,
    target: Target,
    sources: Arc<Sources>,
    timeout: Duration,
    publishers: usize,
    shared: Arc<Shared>,
}

impl SubscriberJob {
    async fn run(
        self,
        permits: Arc<Semaphore>,
        ready: mpsc::Sender<Result<usize, &'static str>>,
        mut stop: watch::Receiver<bool>,
    ) -> SubOutcome {
        let mut out = SubOutcome {
            room: None,
            tracker: SeqTracker::new(self.publishers),
            unparsed: 0,
            ended: None,
        };
        let setup = async {
            let _permit = permits.acquire().await.map_err(|_| "cancelled")?;
            let mut conn = Conn::open(&self.target, &self.sources, READ_BUSY, self.timeout)
                .await
                .map_err(|e| e.kind())?;
            let room = room_name(self.room);
            let ok = tokio::time::timeout(
                self.timeout,
                conn.request(1, |p| sio::join_packet(p, 1, &room)),
            )
            .await
            .map_err(|_| "join_timeout")?
            .map_err(|e| e.kind())?;
            if ok {
                Ok(conn)
            } else {
                Err("join_refused")
            }
        };
        let mut conn = match setup.await {
            Ok(c) => c,
            Err(kind) => {
                let _ = ready.send(Err(kind)).await;
                return out;
            }
        };
        out.room = Some(self.room);
        let _ = ready.send(Ok(self.room)).await;
        drop(ready);
        let mut latencies = Vec::with_capacity(256);
        loop {
            tokio::select! {
                r = conn.read_some() => if let Err(e) = r {
                    out.ended = Some(e.kind());
                    return out;
                },
                _ = stop.wait_for(|s| *s) => return out,
            }
            let now = self.shared.now_us();
            let (tracker, unparsed) = (&mut out.tracker, &mut out.unparsed);
            let drained = conn.drain(|p| {
                let delivery = match sio::parse_sio(p) {
                    SioPacket::Event(e) => sio::parse_delivery(e),
                    _ => None,
                };
                match delivery {
                    Some(d) => {
                        tracker.record(d.publisher, d.seq);
                        latencies.push(now.saturating_sub(d.sent_us));
                    }
                    None => *unparsed += 1,
                }
            });
            if let Err(e) = drained {
                out.ended = Some(e.kind());
                return out;
            }
            if conn.has_pending() {
                if let Err(e) = conn.flush().await {
                    out.ended = Some(e.kind());
                    return out;
                }
            }
            if !latencies.is_empty() {
                self.shared.latency.record_batch(self.index, &latencies);
                self.shared
                    .received
                    .fetch_add(latencies.len() as u64, Ordering::Relaxed);
                self.shared
                    .last_delivery_us
                    .fetch_max(now, Ordering::Relaxed);
                latencies.clear();
            }
        }
    }
}

struct PublisherJob {
    index: usize,
    target: Target,
    sources: Arc<Sources>,
    timeout: Duration,
    args: Arc<FanoutArgs>,
    shared: Arc<Shared>,
}

impl PublisherJob {
    async fn run(
        self,
        permits: Arc<Semaphore>,
        ready: mpsc::Sender<Result<(), &'static str>>,
        mut go: watch::Receiver<Option<Instant>>,
    ) -> PubOutcome {
        let rooms = self.args.rooms;
        let mut out = PubOutcome::new(self.index, rooms);
        let opened = {
            let _permit = permits.acquire().await;
            Conn::open(&self.target, &self.sources, READ_BUSY, self.timeout).await
        };
        let mut conn = match opened {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e.kind())).await;
                return out;
            }
        };
        let _ = ready.send(Ok(())).await;
        drop(ready);
        let start = match go.wait_for(|g| g.is_some()).await {
            Ok(g) => g.unwrap_or_else(Instant::now),
            Err(_) => return out,
        };
        if let Err(e) = self.publish(&mut conn, start, &mut out).await {
            out.ended = Some(e.kind());
        }
        out
    }

    async fn publish(
        &self,
        conn: &mut Conn,
        start: Instant,
        out: &mut PubOutcome,
    ) -> Result<(), ClientError> {
        let args = &*self.args;
        let end = start + Duration::from_secs_f64(args.duration.max(0.0));
        let padding = sio::padding(args.payload);
        let window = args.window;
        // Ack id -> encode time of each unacknowledged publish. A map, not a ring indexed by
        // id: servers that run handlers concurrently (socketioxide) ack out of order.
        let mut in_flight: HashMap<u64, u64> = HashMap::with_capacity(window);
        let mut next_id = 1u64;
        let mut sent_total = 0u64;
        // Start each publisher on a different room so the rooms are loaded evenly.
        let mut room = self.index % args.rooms;
        let room_names: Vec<String> = (0..args.rooms).map(room_name).collect();
        let publisher = self.index as u32;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let free = window - in_flight.len();
            let due = if args.rate > 0.0 {
                let owed = ((now - start).as_secs_f64() * args.rate) as u64 + 1;
                owed.saturating_sub(sent_total).min(free as u64) as usize
            } else {
                free
            };
            for _ in 0..due {
                let d = Delivery {
                    publisher,
                    seq: out.sent[room],
                    sent_us: self.shared.now_us(),
                };
                let id = next_id;
                next_id += 1;
                conn.queue_sio(|p| {
                    sio::publish_packet(p, id, &room_names[room], &args.event, d, &padding)
                });
                in_flight.insert(id, d.sent_us);
                out.sent[room] += 1;
                sent_total += 1;
                room = (room + 1) % args.rooms;
            }
            if conn.has_pending() {
                conn.flush().await?;
            }
            // Sleep until an ack frees the window, the next publish is due, or the end.
            let wake = if args.rate > 0.0 && in_flight.len() < window {
                (start + Duration::from_secs_f64(sent_total as f64 / args.rate)).min(end)
            } else {
                end
            };
            tokio::select! {
                r = conn.read_some() => {
                    r?;
                    self.take_acks(conn, &mut in_flight, out)?;
                }
                _ = sleep_until(wake.into()) => {}
            }
        }
        // Wait for the outstanding acks, at most the drain time.
        let deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
        while !in_flight.is_empty() {
            match tokio::time::timeout_at(deadline.into(), conn.read_some()).await {
                Ok(r) => r?,
                Err(_) => break,
            }
            self.take_acks(conn, &mut in_flight, out)?;
        }
        out.unacked = in_flight.len() as u64;
        Ok(())
    }

    fn take_acks(
        &self,
        conn: &mut Conn,
        in_flight: &mut HashMap<u64, u64>,
        out: &mut PubOutcome,
    ) -> Result<(), ClientError> {
        let now = self.shared.now_us();
        conn.drain(|p| {
            if let SioPacket::Ack { id, body } = sio::parse_sio(p) {
                if let Some(sent_us) = in_flight.remove(&id) {
                    out.ack_latency
                        .saturating_record(now.saturating_sub(sent_us).max(1));
                    if sio::ack_is_ok(body) {
                        out.acked_ok += 1;
                    } else {
                        out.acked_error += 1;
                    }
                }
            }
        })
    }
}
