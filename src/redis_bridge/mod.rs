//! The Redis bridge: one thread per process that connects this machine's shards to the other
//! machines of a cluster through Redis, speaking Node's `@socket.io/redis-adapter` (classic) wire
//! format, so shardio, Node socket.io servers and `@socket.io/redis-emitter` backends share
//! rooms (docs/PROTOCOL.md §3).
//!
//! # Wiring
//!
//! * Shards -> bridge: one bounded queue (`Bus::to_bridge`) of `BridgeMsg`s: broadcasts to
//!   publish (unencoded), questions for the cluster, commands, and the shards' replies to the
//!   bridge. A full queue drops (counted in `dropped`).
//! * Bridge -> shards: `SioMsg`s through each shard's bus inbox (`Bus::from_bridge`,
//!   `try_send`, a full inbox drops and counts). The bridge stands on the bus's message types
//!   (`bus::cluster`) and knows nothing of `socketio/`.
//! * Bridge -> Redis: a publisher task with its own bounded queue pipelines PUBLISH commands
//!   (and PUBSUB NUMSUB for requests, XADD in streams mode) on one multiplexed connection, or
//!   SPUBLISHes them through a Redis Cluster connection; a full queue drops.
//! * Redis -> bridge: one pub/sub connection with Node's channel set per namespace, or, with
//!   `--redis-subscribe rooms` and the sharded mode's dynamic subscriptions, the namespace
//!   channel and one channel per room this machine holds, changed in batches as the shards
//!   report rooms gained and lost (`rooms`); in streams mode also a reader of the stream on a
//!   connection of its own.
//!
//! `--redis-mode` picks the wire: `classic` (Node's `@socket.io/redis-adapter`), `streams`
//! (`@socket.io/redis-streams-adapter` 0.3, §4) or `sharded` (Node's `createShardedAdapter` on
//! a Redis Cluster, §3.7). The bridge's logic speaks the classic adapter's values; `wire` puts
//! them on the mode's channels or stream. Redis is one server, the master Sentinel names
//! (`--redis-sentinel`, classic and streams), or a Redis Cluster (sharded).
//!
//! Nothing here ever waits on a shard, and no shard ever waits on Redis. When Redis is away, the
//! bridge keeps draining its queue (publishes are dropped and counted, but in streams mode wait
//! for Redis in a bounded backlog; questions are answered as incomplete at once), retries with a doubling backoff (250 ms up to `--redis-reconnect-max`),
//! and resubscribes everything on return. A probe published every `--redis-probe-interval` to
//! the bridge's own response channel must come back before the next one, or the connections are
//! rebuilt: that catches a subscription that silently stopped delivering.
//!
//! # Layout
//!
//! * this file: the thread, its connections (subscribe, publish loop, probe, reconnect) and the
//!   main loop that takes work from Redis, the shards and the timers;
//! * `from_redis`: other servers' broadcasts, requests and responses;
//! * `from_shards`: the shards' broadcasts to publish, questions, commands and answers;
//! * `pending`: requests in flight both ways and their deadlines;
//! * `subscriptions`: the room channels wanted and the changes to tell Redis (pure);
//! * `rooms`: the shards' room reports, and the room channels' SUBSCRIBE / UNSUBSCRIBE;
//! * `convert`: Node's JSON values to and from Socket.IO payloads;
//! * `links`: where Redis is (one server, Sentinel, Cluster), the connections to it and the
//!   publisher task;
//! * `wire`: what each `--redis-mode` sends where;
//! * `streams`: the stream of streams mode: the reader, the backlog, resuming after an outage;
//! * `sessions`: streams mode with recovery: the sessions kept in Redis, and their restores.

mod convert;
mod from_redis;
mod from_shards;
mod links;
mod pending;
mod rooms;
mod sessions;
mod streams;
mod subscriptions;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bus::cluster::{
    ack_id, format_offset, recovery_offset, Answer, BridgeMsg, Command, Origin, PublishedBroadcast,
    Query, RemoteBroadcast, Reply, ServerSideEmit, SioMsg, Tally, IN_STREAM,
};
use crate::bus::interest::ShardSet;
use crate::bus::{Bus, ShardMsg, ToBridge};
use crate::config::{RedisConfig, RedisMode};
use crate::engineio::Sid;
use crate::metrics::{BridgeMetrics, Metrics};
use crate::protocol::adapter::{
    self, BroadcastMessage, Channels, JsValue, Request, RequestBody, Response, StreamEntry,
};
use crate::protocol::socketio::{event_frames, event_frames_with_offset};
use links::{
    connect, publish_loop, Event, Feedback, Links, Outgoing, ReadPlan, Subscriber, Target,
};
use pending::{Due, Inbound, InboundAck, InboundKind, Outbound, OutboundKind, Pending};
use sessions::next_deadline;
pub(crate) use sessions::RecoveryBounds;
use streams::{ReadEvent, StreamState};
use subscriptions::RoomSubscriptions;
use wire::ReplyTo;

/// How long the shards have to answer a request from another server, at most: well inside the
/// requester's own timeout, so that it gets this server's answer, partial or not.
const SHARD_ANSWER_WAIT: Duration = Duration::from_millis(1000);

/// How long one Redis command (or pipeline) may take before the connection counts as lost.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Commands the publisher sends in one pipeline, at most.
const PUBLISH_BATCH: usize = 256;

/// How long shutdown waits for queued publishes to reach Redis.
const FLUSH_ON_STOP: Duration = Duration::from_secs(1);

/// Why the bridge could not start. The server does not start either.
#[derive(Debug, Error)]
pub enum BridgeError {
    /// The URL does not parse as a Redis URL; fix `--redis`.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// The OS refused a thread or runtime.
    #[error("cannot start the Redis bridge: {0}")]
    Start(#[from] std::io::Error),
}

/// What the bridge thread is started with.
pub(crate) struct BridgeSetup {
    pub(crate) config: RedisConfig,
    /// The endpoint whose Socket.IO app the bridge serves, and its namespaces.
    pub(crate) endpoint: usize,
    pub(crate) namespaces: Vec<String>,
    pub(crate) bus: Bus,
    pub(crate) queue: mpsc::Receiver<ToBridge>,
    pub(crate) metrics: Arc<Metrics>,
    /// With connection state recovery on. The broadcasts from other machines then carry
    /// offsets the bridge issues (their stream entry ids in streams mode, where the sessions
    /// are kept in Redis).
    pub(crate) recovery: Option<RecoveryBounds>,
}

/// The running bridge; [`BridgeHandle::stop`] ends it.
pub(crate) struct BridgeHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BridgeHandle {
    /// Stops the bridge (queued publishes get a short while to go out) and joins its thread.
    pub(crate) fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the Redis bridge thread panicked");
            }
        }
    }
}

impl Drop for BridgeHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Starts the bridge thread. It connects in the background: an unreachable Redis does not fail
/// the start, only a malformed URL does.
pub(crate) fn spawn(setup: BridgeSetup) -> Result<BridgeHandle, BridgeError> {
    let target = Target::of(&setup.config).map_err(BridgeError::Url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("redis-bridge".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, Bridge::new(setup, target).run(stop_rx));
        })?;
    Ok(BridgeHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// One namespace's channels.
struct Namespace {
    name: String,
    channels: Channels,
    /// Where responses for this bridge come, and the probe: `prefix-response#nsp#uid#`
    /// (classic), `prefix#nsp#uid#` (streams, sharded).
    own_response: String,
}

/// What a subscribed channel (or pattern) carries.
#[derive(Debug, Clone, Copy)]
enum Role {
    Broadcast,
    Request,
    Response,
    /// Streams and sharded modes: cluster messages (requests, responses, and in sharded mode
    /// broadcasts).
    Cluster,
    /// This server's own channel of the cluster-message modes: responses only.
    ClusterPrivate,
}

/// Why the connected phase ended.
enum Ended {
    Stop,
    Lost(String),
}

struct Bridge {
    config: RedisConfig,
    target: Target,
    /// This process's node id in the cluster; messages carrying it are our own.
    uid: String,
    endpoint: usize,
    namespaces: Vec<Namespace>,
    routes: HashMap<String, (usize, Role)>,
    bus: Bus,
    shards: usize,
    queue: mpsc::Receiver<ToBridge>,
    metrics: Arc<Metrics>,
    /// The publisher's queue while connected.
    out: Option<mpsc::Sender<Outgoing>>,
    pending: Pending,
    next_id: u64,
    /// The probe in flight: its request id.
    probe: Option<String>,
    /// Shard that runs the next server-side emit from another server (round robin).
    next_emit_shard: usize,
    /// The recovery offsets issued so far, when the endpoint recovers connection state.
    offsets: Option<std::cell::Cell<u64>>,
    /// The room channels, with `--redis-subscribe rooms` or sharded dynamic subscriptions.
    rooms: Option<RoomSubscriptions>,
    /// Changes subscriptions on the connected subscription connection.
    subscriber: Option<Subscriber>,
    /// The SUBSCRIBE / UNSUBSCRIBE of room channels in flight, at most one batch.
    subscribing: Option<rooms::Subscribing>,
    /// The shards' room reports waiting for Redis's confirmation.
    confirmations: rooms::Confirmations,
    /// Streams mode: the place in the stream and what waits for Redis.
    stream: Option<StreamState>,
    /// Streams mode: which server asked each request in flight.
    reply_to: ReplyTo,
    /// With recovery on.
    recovery: Option<RecoveryBounds>,
    /// Streams mode with recovery: restores in flight, sessions waiting for Redis.
    sessions: sessions::Sessions,
    /// The restores' reads of the stream, as they come back.
    range_reads: mpsc::Receiver<sessions::RangeRead>,
    /// A connection for commands of their own (a restore's reads of the stream), while
    /// connected to one server.
    commands: Option<redis::aio::MultiplexedConnection>,
}

impl Bridge {
    fn new(setup: BridgeSetup, target: Target) -> Self {
        let uid = format!(
            "shardio-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 10)
        );
        let prefix = setup.config.prefix.clone();
        let mode = setup.config.mode;
        let namespaces: Vec<Namespace> = setup
            .namespaces
            .iter()
            .map(|name| {
                let channels = Channels::new(&prefix, name);
                Namespace {
                    name: name.clone(),
                    own_response: Bridge::own_channel(mode, &channels, &uid),
                    channels,
                }
            })
            .collect();
        let per_room = setup.config.room_channels();
        let (sessions, range_reads) = sessions::Sessions::new();
        let mut bridge = Bridge {
            shards: setup.bus.shards(),
            config: setup.config,
            target,
            uid,
            endpoint: setup.endpoint,
            namespaces,
            bus: setup.bus,
            queue: setup.queue,
            metrics: setup.metrics,
            out: None,
            pending: Pending::default(),
            next_id: 0,
            probe: None,
            next_emit_shard: 0,
            offsets: setup.recovery.map(|_| std::cell::Cell::new(0)),
            recovery: setup.recovery,
            sessions,
            range_reads,
            commands: None,
            stream: (mode == RedisMode::Streams).then(StreamState::default),
            reply_to: ReplyTo::default(),
            routes: HashMap::new(),
            rooms: per_room.then(RoomSubscriptions::default),
            subscriber: None,
            subscribing: None,
            confirmations: rooms::Confirmations::default(),
        };
        bridge.routes = bridge
            .channel_roles()
            .into_iter()
            .map(|(_, name, ns, role)| (name, (ns, role)))
            .collect();
        bridge
    }

    fn stats(&self) -> &BridgeMetrics {
        self.metrics.bridge()
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        tracing::info!(
            uid = %self.uid,
            prefix = %self.config.prefix,
            namespaces = ?self.namespaces.iter().map(|n| &n.name).collect::<Vec<_>>(),
            mode = ?self.config.mode,
            "Redis bridge starting"
        );
        let mut backoff = RedisConfig::RECONNECT_MIN;
        let mut attempts: u64 = 0;
        let mut ever_connected = false;
        loop {
            // Connecting: keep serving the shards meanwhile (publishes are dropped, questions
            // answered as incomplete), so nothing waits on Redis.
            let connecting = connect(self.target.clone(), self.subscriptions(), self.read_plan());
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    _ = &mut stop => return,
                    result = &mut connecting => break result,
                    Some(work) = self.queue.recv() => self.on_shard(work),
                    () = sleep_until(next_deadline(&self.pending, &self.sessions)) => self.expire(),
                }
            };
            let links = match connected {
                Ok(links) => links,
                Err(e) => {
                    attempts += 1;
                    if attempts.is_power_of_two() {
                        tracing::warn!(attempts, retry_in = ?backoff, error = %e, "Redis unreachable; serving local clients only");
                    } else {
                        tracing::debug!(attempts, error = %e, "Redis still unreachable");
                    }
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    self.confirm_rooms_while_away();
                    loop {
                        tokio::select! {
                            _ = &mut stop => return,
                            () = &mut wait => break,
                            Some(work) = self.queue.recv() => {
                                self.on_shard(work);
                                self.confirm_rooms_while_away();
                            }
                            () = sleep_until(next_deadline(&self.pending, &self.sessions)) => self.expire(),
                        }
                    }
                    backoff = (backoff * 2).min(self.config.reconnect_max());
                    continue;
                }
            };
            if ever_connected {
                self.stats().reconnected();
                tracing::info!(
                    attempts,
                    "Redis is back: resubscribed, cross-machine delivery resumes"
                );
            } else {
                tracing::info!("Redis bridge connected and subscribed");
            }
            ever_connected = true;
            attempts = 0;
            backoff = RedisConfig::RECONNECT_MIN;
            self.stats().set_connected(true);
            let ended = self.serve(links, &mut stop).await;
            self.stats().set_connected(false);
            self.out = None;
            self.probe = None;
            self.subscriber = None;
            self.subscribing = None;
            self.room_batch_lost();
            for due in self.pending.fail_outbound() {
                self.carry_out(due);
            }
            match ended {
                Ended::Stop => return,
                Ended::Lost(why) => {
                    tracing::warn!(reason = %why, "lost Redis; serving local clients only, reconnecting");
                }
            }
        }
    }

    /// Streams mode: what a fresh read connection needs to resume.
    fn read_plan(&self) -> Option<ReadPlan> {
        let state = self.stream.as_ref()?;
        Some(ReadPlan {
            key: self.config.stream.clone(),
            uid: self.uid.clone(),
            last_read: state.last_read.clone(),
            last_added: state.last_added.clone(),
            unconfirmed: state.unconfirmed.len(),
        })
    }

    /// The connected phase: until Redis is lost or the bridge stops.
    async fn serve(&mut self, links: Links, stop: &mut oneshot::Receiver<()>) -> Ended {
        let Links {
            publisher,
            subscriber,
            events: mut stream,
            reader,
            mut switched,
        } = links;
        self.subscriber = Some(subscriber);
        if let links::Publisher::Single(conn) = &publisher {
            self.commands = Some(conn.clone());
        }
        let (out_tx, out_rx) = mpsc::channel(self.config.queue);
        let (feedback_tx, mut feedback) = mpsc::channel(self.config.queue);
        let target = (self.config.stream.clone(), self.config.stream_maxlen);
        let publisher = tokio::task::spawn_local(publish_loop(
            publisher,
            out_rx,
            feedback_tx,
            self.metrics.clone(),
            target,
        ));
        self.out = Some(out_tx);
        let (reads_tx, mut reads) = mpsc::channel(4);
        let mut read_task = None;
        if let Some((read_conn, resume)) = reader {
            // Where the reader starts is what counts as read: the newest entry on the first
            // connection (none read yet, and a later one resumes there), `0-0` for a stream
            // that came back behind.
            let before = (self.stream.as_mut())
                .and_then(|state| state.last_read.replace(resume.from.clone()));
            if before.as_ref() != Some(&resume.from) {
                self.stream_restarted(&resume.from);
            }
            self.flush_sessions();
            self.flush_backlog(&resume);
            let key = self.config.stream.clone();
            read_task = Some(tokio::task::spawn_local(streams::read_loop(
                read_conn,
                key,
                resume.from,
                reads_tx,
            )));
        } else {
            drop(reads_tx);
        }
        let mut probe = tokio::time::interval(self.config.probe_interval());
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(64);
        // Room changes reported while connecting.
        self.apply_room_changes();
        let ended = loop {
            tokio::select! {
                _ = &mut *stop => break Ended::Stop,
                event = stream.next() => match event {
                    Some(Event::Message(msg)) => self.on_redis(&msg),
                    Some(Event::Unsubscribed(channel)) => {
                        if self.wants(&channel) {
                            // The slot moved: subscribe again, on the new topology.
                            break Ended::Lost(format!("Redis dropped the subscription to {channel}"));
                        }
                    }
                    None => break Ended::Lost("a subscription connection closed".into()),
                },
                msg = next_or_never(&mut switched) => match msg {
                    Some(_) => break Ended::Lost("Sentinel switched the master".into()),
                    // The sentinel went away; the master's own connection still tells.
                    None => switched = None,
                },
                n = self.queue.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        break Ended::Stop;
                    }
                    for work in batch.drain(..) {
                        self.on_shard(work);
                    }
                    self.apply_room_changes();
                }
                result = rooms::in_flight(&mut self.subscribing) => {
                    self.subscribing = None;
                    if let Err(e) = result {
                        break Ended::Lost(format!("changing room subscriptions: {e}"));
                    }
                    self.room_batch_done();
                }
                Some(fb) = feedback.recv() => match fb {
                    Feedback::Servers { request_id, servers } => {
                        // This bridge is one of the subscribers and does not answer itself.
                        let others = servers.map(|n| n.saturating_sub(1));
                        if let Some(due) = self.pending.servers_known(&request_id, others) {
                            self.carry_out(due);
                        }
                    }
                    Feedback::Added(id) => {
                        if let Some(state) = self.stream.as_mut() {
                            state.last_added = Some(id);
                        }
                    }
                    Feedback::Taken { restore, value } => self.on_session_taken(restore, value),
                    Feedback::Lost { error, unconfirmed, unsent } => {
                        self.publisher_lost(unconfirmed, unsent);
                        break Ended::Lost(error.to_string());
                    }
                },
                Some(read) = self.range_reads.recv() => self.on_range_read(read),
                Some(event) = reads.recv() => match event {
                    ReadEvent::Entries(entries) => {
                        self.on_stream_entries(entries);
                        self.advance_restores();
                    }
                    ReadEvent::Lost(e) => break Ended::Lost(format!("reading the stream: {e}")),
                },
                _ = probe.tick() => {
                    if let Some(lost) = self.probe.take() {
                        self.stats().probe_lost();
                        tracing::warn!(probe = %lost, "probe did not come back through Redis");
                        break Ended::Lost("the subscription stopped delivering".into());
                    }
                    self.send_probe();
                }
                () = sleep_until(next_deadline(&self.pending, &self.sessions)) => self.expire(),
            }
        };
        // Let what is queued reach Redis on a clean stop; on a loss it is gone anyway.
        self.out = None;
        self.commands = None;
        self.expire_restores(true);
        if let Some(task) = read_task {
            task.abort();
        }
        if matches!(ended, Ended::Stop) {
            let _ = tokio::time::timeout(FLUSH_ON_STOP, publisher).await;
        } else if self.stream.is_some() {
            // Streams mode: the publisher, its queue closed, sends what it holds or hands it
            // back, so that no entry is lost; its connection answers or fails within its
            // response timeout.
            let abort = publisher.abort_handle();
            let _ = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT + FLUSH_ON_STOP, publisher).await;
            abort.abort();
            while let Ok(fb) = feedback.try_recv() {
                match fb {
                    Feedback::Added(id) => {
                        if let Some(state) = self.stream.as_mut() {
                            state.last_added = Some(id);
                        }
                    }
                    Feedback::Lost {
                        unconfirmed,
                        unsent,
                        ..
                    } => self.publisher_lost(unconfirmed, unsent),
                    Feedback::Servers { .. } | Feedback::Taken { .. } => {}
                }
            }
        } else {
            publisher.abort();
        }
        ended
    }

    fn send_probe(&mut self) {
        self.next_id += 1;
        let id = format!("{}-probe-{}", self.uid, self.next_id);
        let payload = self.probe_payload(id.clone());
        let channel = self.namespaces[0].own_response.clone();
        if self.publish(channel, payload) {
            self.probe = Some(id);
        }
    }

    /// Queues a publish; false when it cannot go (Redis away or the publisher's queue full:
    /// counted in `dropped`).
    fn publish(&mut self, channel: String, payload: Vec<u8>) -> bool {
        self.send_out(Outgoing::Publish { channel, payload })
    }

    fn send_out(&mut self, out: Outgoing) -> bool {
        let sent = self.out.as_ref().is_some_and(|o| o.try_send(out).is_ok());
        if !sent {
            self.count_drop();
        }
        sent
    }

    fn count_drop(&self) {
        let dropped = self.stats().drop_one();
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, "not published: Redis is away or slow");
        }
    }

    /// A fresh id for the shards (ack ids on sockets, query ids), which never collides with
    /// a shard's own ids (`bus::cluster::ack_id`).
    fn shard_id(&mut self) -> u64 {
        self.next_id += 1;
        ack_id(self.next_id, Origin::Bridge)
    }

    fn request_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.uid, self.next_id)
    }

    /// Sends `msg` to this bridge's endpoint on `shard`; a full inbox drops it (counted).
    fn to_shard(&self, shard: usize, msg: SioMsg) -> bool {
        let msg = ShardMsg::SocketIo {
            from: Origin::Bridge,
            endpoint: self.endpoint,
            msg,
        };
        self.bus.send_from_bridge(shard, msg)
    }

    /// Sends `reply` to `shard`.
    fn reply_to_shard(&self, shard: usize, reply: Reply) {
        self.to_shard(shard, SioMsg::Reply(Box::new(reply)));
    }

    /// Sends one message to every shard (built per shard: the payload is shared by `Arc` where
    /// it is large); returns how many took it.
    fn to_every_shard(&self, msg: impl Fn() -> SioMsg) -> usize {
        (0..self.shards)
            .filter(|&s| self.to_shard(s, msg()))
            .count()
    }

    /// Sends a broadcast from another machine to the shards where it has members (every shard
    /// for the whole namespace), as a shard's own broadcasts go (`bus::interest`); returns how
    /// many took it.
    fn to_interested_shards(&self, broadcast: &Arc<RemoteBroadcast>) -> usize {
        // A room named like a socket id of this process goes to that socket's shard.
        let owner = |room: &str| Sid::parse(room).map(|sid| sid.shard());
        let interest = self.bus.interest();
        // A recoverable packet (with its offset) goes to every shard, as a shard's own do: a
        // session handed from one shard to another is exact only if both saw every packet
        // (docs/ARCHITECTURE.md, "Connection state recovery").
        let targets = match broadcast.offset {
            Some(_) => ShardSet::all(self.shards),
            None => interest.route(self.endpoint, &broadcast.nsp, &broadcast.opts.rooms, owner),
        };
        targets
            .iter()
            .filter(|&s| self.to_shard(s, SioMsg::Broadcast(broadcast.clone())))
            .count()
    }

    fn expire(&mut self) {
        for due in self.pending.expire(Instant::now()) {
            self.carry_out(due);
        }
        self.expire_restores(false);
    }

    fn malformed(&self, channel: &str, error: &dyn std::fmt::Display) {
        let n = self.stats().malformed_one();
        tracing::debug!(channel, error = %error, "malformed message from Redis dropped");
        if n.is_power_of_two() {
            tracing::warn!(malformed = n, "malformed messages from Redis dropped");
        }
    }
}

/// The next item of `stream`, or never without one.
async fn next_or_never(stream: &mut Option<links::Messages>) -> Option<redis::Msg> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
