//! The Redis bridge: one thread per process that connects this machine's shards to the other
//! machines of a cluster through Redis, speaking Node's `@socket.io/redis-adapter` (classic) wire
//! format, so shardio, Node socket.io servers and `@socket.io/redis-emitter` backends share
//! rooms (SOCKETIO.md §3).
//!
//! # Wiring
//!
//! * Shards -> bridge: one bounded queue ([`crate::bus::Bus::to_bridge`]) of
//!   [`ShardToBridge`] messages: broadcasts to publish (unencoded), questions for the cluster,
//!   commands, and the shards' replies to the bridge. A full queue drops (counted in `dropped`).
//! * Bridge -> shards: [`BusMessage`]s through each shard's bus inbox
//!   ([`crate::bus::Bus::from_bridge`], `try_send`, a full inbox drops and counts).
//! * Bridge -> Redis: a publisher task with its own bounded queue pipelines PUBLISH commands
//!   (and PUBSUB NUMSUB for requests) on one multiplexed connection; a full queue drops.
//! * Redis -> bridge: one pub/sub connection with Node's channel set per namespace.
//!
//! Nothing here ever waits on a shard, and no shard ever waits on Redis. When Redis is away, the
//! bridge keeps draining its queue (publishes are dropped and counted, questions are answered
//! as incomplete at once), retries with a doubling backoff (250 ms up to `--redis-reconnect-max`),
//! and resubscribes everything on return. A probe published every `--redis-probe-interval` to
//! the bridge's own response channel must come back before the next one, or the connections are
//! rebuilt: that catches a subscription that silently stopped delivering.

mod convert;
mod pending;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use futures_util::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bus::{Bus, ToBridge};
use crate::config::{RedisConfig, REDIS_RECONNECT_MIN};
use crate::metrics::{BridgeMetrics, Metrics};
use crate::protocol::adapter::{
    self, BroadcastMessage, Channels, JsValue, Request, RequestBody, Response,
};
use crate::socketio::cluster::Tally;
use crate::socketio::{
    event_frames, Answer, BusMessage, Command, PublishedBroadcast, Query, RemoteBroadcast,
    ShardToBridge,
};
use pending::{Due, Inbound, InboundAck, InboundKind, Outbound, OutboundKind, Pending};

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
pub struct BridgeSetup {
    pub config: RedisConfig,
    /// The endpoint whose Socket.IO app the bridge serves, and its namespaces.
    pub endpoint: usize,
    pub namespaces: Vec<String>,
    pub bus: Bus,
    pub queue: mpsc::Receiver<ToBridge>,
    pub metrics: Arc<Metrics>,
}

/// The running bridge; [`BridgeHandle::stop`] ends it.
pub struct BridgeHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BridgeHandle {
    /// Stops the bridge (queued publishes get a short while to go out) and joins its thread.
    pub fn stop(mut self) {
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
pub fn spawn(setup: BridgeSetup) -> Result<BridgeHandle, BridgeError> {
    let url = setup.config.url.clone().unwrap_or_default();
    let client = redis::Client::open(url.as_str()).map_err(BridgeError::Url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = thread::Builder::new()
        .name("redis-bridge".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, Bridge::new(setup, client).run(stop_rx));
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
    /// `prefix-response#nsp#uid#`: where responses for this bridge may come, and the probe.
    own_response: String,
}

/// What a subscribed channel (or pattern) carries.
#[derive(Debug, Clone, Copy)]
enum Role {
    Broadcast,
    Request,
    Response,
}

/// A command for the publisher task.
enum Outgoing {
    Publish {
        channel: String,
        payload: Vec<u8>,
    },
    /// A request that wants answers: PUBSUB NUMSUB first, to know how many will answer.
    Request {
        request_id: String,
        channel: String,
        payload: Vec<u8>,
    },
}

/// What the publisher tells the bridge.
enum Feedback {
    /// Request `request_id` reached `servers` subscribers of its channel (this one included),
    /// or was not published (`None`).
    Servers {
        request_id: String,
        servers: Option<usize>,
    },
    /// The connection failed; the publisher has stopped.
    Lost(redis::RedisError),
}

/// Why the connected phase ended.
enum Ended {
    Stop,
    Lost(String),
}

struct Bridge {
    config: RedisConfig,
    client: redis::Client,
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
}

impl Bridge {
    fn new(setup: BridgeSetup, client: redis::Client) -> Self {
        let uid = format!(
            "shardio-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 10)
        );
        let prefix = setup.config.prefix.clone();
        let namespaces: Vec<Namespace> = setup
            .namespaces
            .iter()
            .map(|name| {
                let channels = Channels::new(&prefix, name);
                Namespace {
                    name: name.clone(),
                    own_response: channels.specific_response(&uid),
                    channels,
                }
            })
            .collect();
        let mut routes = HashMap::new();
        for (i, ns) in namespaces.iter().enumerate() {
            routes.insert(ns.channels.pattern().to_owned(), (i, Role::Broadcast));
            routes.insert(ns.channels.request().to_owned(), (i, Role::Request));
            routes.insert(ns.channels.response().to_owned(), (i, Role::Response));
            routes.insert(ns.own_response.clone(), (i, Role::Response));
        }
        Bridge {
            shards: setup.bus.shards(),
            config: setup.config,
            client,
            uid,
            endpoint: setup.endpoint,
            namespaces,
            routes,
            bus: setup.bus,
            queue: setup.queue,
            metrics: setup.metrics,
            out: None,
            pending: Pending::default(),
            next_id: 0,
            probe: None,
            next_emit_shard: 0,
        }
    }

    fn stats(&self) -> &BridgeMetrics {
        self.metrics.bridge()
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        tracing::info!(
            uid = %self.uid,
            prefix = %self.config.prefix,
            namespaces = ?self.namespaces.iter().map(|n| &n.name).collect::<Vec<_>>(),
            "Redis bridge starting"
        );
        let mut backoff = REDIS_RECONNECT_MIN;
        let mut attempts: u64 = 0;
        let mut ever_connected = false;
        loop {
            // Connecting: keep serving the shards meanwhile (publishes are dropped, questions
            // answered as incomplete), so nothing waits on Redis.
            let connecting = connect(self.client.clone(), self.subscriptions());
            tokio::pin!(connecting);
            let connected = loop {
                tokio::select! {
                    _ = &mut stop => return,
                    result = &mut connecting => break result,
                    Some(work) = self.queue.recv() => self.on_shard(work),
                    () = sleep_until(self.pending.next_deadline()) => self.expire(),
                }
            };
            let (conn, stream) = match connected {
                Ok(pair) => pair,
                Err(e) => {
                    attempts += 1;
                    if attempts.is_power_of_two() {
                        tracing::warn!(attempts, retry_in = ?backoff, error = %e, "Redis unreachable; serving local clients only");
                    } else {
                        tracing::debug!(attempts, error = %e, "Redis still unreachable");
                    }
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut stop => return,
                            () = &mut wait => break,
                            Some(work) = self.queue.recv() => self.on_shard(work),
                            () = sleep_until(self.pending.next_deadline()) => self.expire(),
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
            backoff = REDIS_RECONNECT_MIN;
            self.stats().set_connected(true);
            let ended = self.serve(conn, stream, &mut stop).await;
            self.stats().set_connected(false);
            self.out = None;
            self.probe = None;
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

    /// Every channel and pattern to subscribe to, as (is pattern, name).
    fn subscriptions(&self) -> Vec<(bool, String)> {
        let mut subs = Vec::new();
        for ns in &self.namespaces {
            subs.push((true, ns.channels.pattern().to_owned()));
            subs.push((false, ns.channels.request().to_owned()));
            subs.push((false, ns.channels.response().to_owned()));
            subs.push((false, ns.own_response.clone()));
        }
        subs
    }

    /// The connected phase: until Redis is lost or the bridge stops.
    async fn serve(
        &mut self,
        conn: redis::aio::MultiplexedConnection,
        mut stream: redis::aio::PubSubStream,
        stop: &mut oneshot::Receiver<()>,
    ) -> Ended {
        let (out_tx, out_rx) = mpsc::channel(self.config.queue);
        let (feedback_tx, mut feedback) = mpsc::channel(self.config.queue);
        let publisher = tokio::task::spawn_local(publish_loop(
            conn,
            out_rx,
            feedback_tx,
            self.metrics.clone(),
        ));
        self.out = Some(out_tx);
        let mut probe = tokio::time::interval(self.config.probe_interval());
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(64);
        let ended = loop {
            tokio::select! {
                _ = &mut *stop => break Ended::Stop,
                msg = stream.next() => match msg {
                    Some(msg) => self.on_redis(&msg),
                    None => break Ended::Lost("the subscription connection closed".into()),
                },
                n = self.queue.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        break Ended::Stop;
                    }
                    for work in batch.drain(..) {
                        self.on_shard(work);
                    }
                }
                Some(fb) = feedback.recv() => match fb {
                    Feedback::Servers { request_id, servers } => {
                        // This bridge is one of the subscribers and does not answer itself.
                        let others = servers.map(|n| n.saturating_sub(1));
                        if let Some(due) = self.pending.servers_known(&request_id, others) {
                            self.carry_out(due);
                        }
                    }
                    Feedback::Lost(e) => break Ended::Lost(e.to_string()),
                },
                _ = probe.tick() => {
                    if let Some(lost) = self.probe.take() {
                        self.stats().probe_lost();
                        tracing::warn!(probe = %lost, "probe did not come back through Redis");
                        break Ended::Lost("the subscription stopped delivering".into());
                    }
                    self.send_probe();
                }
                () = sleep_until(self.pending.next_deadline()) => self.expire(),
            }
        };
        // Let what is queued reach Redis on a clean stop; on a loss it is gone anyway.
        self.out = None;
        if matches!(ended, Ended::Stop) {
            let _ = tokio::time::timeout(FLUSH_ON_STOP, publisher).await;
        } else {
            publisher.abort();
        }
        ended
    }

    fn send_probe(&mut self) {
        self.next_id += 1;
        let id = format!("{}-probe-{}", self.uid, self.next_id);
        let payload = Response::Done {
            request_id: id.clone(),
        }
        .encode();
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
            let dropped = self.stats().drop_one();
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "not published: Redis is away or slow");
            }
        }
        sent
    }

    /// A fresh id for the shards: low byte 0xFF, which no shard uses (shard ids stop at 254),
    /// so it never collides with a shard's own ack ids on a socket.
    fn shard_id(&mut self) -> u64 {
        self.next_id += 1;
        bridge_ack_id(self.next_id)
    }

    fn request_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.uid, self.next_id)
    }

    fn to_shard(&self, shard: usize, msg: BusMessage) {
        self.bus.from_bridge(shard, self.endpoint, Box::new(msg));
    }

    /// Sends one message to every shard (built per shard: the payload is shared by `Arc` where
    /// it is large); returns how many took it.
    fn to_every_shard(&self, msg: impl Fn() -> BusMessage) -> usize {
        (0..self.shards)
            .filter(|&s| self.bus.from_bridge(s, self.endpoint, Box::new(msg())))
            .count()
    }

    fn expire(&mut self) {
        for due in self.pending.expire(Instant::now()) {
            self.carry_out(due);
        }
    }

    fn malformed(&self, channel: &str, error: &dyn std::fmt::Display) {
        let n = self.stats().malformed_one();
        tracing::debug!(channel, error = %error, "malformed message from Redis dropped");
        if n.is_power_of_two() {
            tracing::warn!(malformed = n, "malformed messages from Redis dropped");
        }
    }

    // ------------------------------------------------------------------------------------
    // From Redis

    fn on_redis(&mut self, msg: &redis::Msg) {
        let key = match msg.get_pattern::<Option<String>>() {
            Ok(Some(pattern)) => pattern,
            _ => msg.get_channel_name().to_owned(),
        };
        let Some(&(ns, role)) = self.routes.get(&key) else {
            return;
        };
        let payload = convert::payload_bytes(msg);
        let channel = msg.get_channel_name();
        match role {
            Role::Broadcast => match BroadcastMessage::decode(&payload) {
                Ok(b) => self.on_broadcast(ns, b),
                Err(e) => self.malformed(channel, &e),
            },
            Role::Request => match Request::decode(&payload) {
                Ok(r) => self.on_request(ns, r),
                Err(e) => self.malformed(channel, &e),
            },
            Role::Response => match Response::decode(&payload) {
                Ok(r) => self.on_response(r),
                Err(e) => self.malformed(channel, &e),
            },
        }
    }

    fn on_broadcast(&mut self, ns: usize, msg: BroadcastMessage) {
        if msg.uid == self.uid || msg.packet.nsp != self.namespaces[ns].name {
            return;
        }
        let Some(broadcast) = self.decode_event(ns, msg.packet, msg.opts, None) else {
            return;
        };
        self.stats().received_one();
        self.to_every_shard(|| BusMessage::Broadcast(broadcast.clone()));
    }

    /// Encodes a packet from Redis once, into the frames every shard shares.
    fn decode_event(
        &self,
        ns: usize,
        packet: adapter::Packet,
        opts: adapter::BroadcastOpts,
        ack: Option<u64>,
    ) -> Option<Arc<RemoteBroadcast>> {
        // EVENT (2); BINARY_EVENT (5) would mean the same data. Other packet types are not
        // broadcast by Node's adapter.
        let split = matches!(packet.kind, 2 | 5)
            .then(|| convert::split_event(packet.data))
            .flatten();
        let Some((event, data)) = split else {
            self.malformed(&self.namespaces[ns].name, &"not an EVENT packet");
            return None;
        };
        let nsp = self.namespaces[ns].name.clone();
        let frames = event_frames(&nsp, Some(&event), ack, &data);
        Some(Arc::new(RemoteBroadcast {
            nsp,
            opts: convert::local_opts(opts),
            frames,
            ack,
        }))
    }

    fn on_request(&mut self, ns: usize, request: Request) {
        if request.uid.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        self.stats().received_one();
        let cmd = match request.body {
            RequestBody::RemoteJoin { opts, rooms } => Command::Join {
                opts: convert::local_opts(opts),
                rooms,
            },
            RequestBody::RemoteLeave { opts, rooms } => Command::Leave {
                opts: convert::local_opts(opts),
                rooms,
            },
            RequestBody::RemoteDisconnect { opts, close } => Command::Disconnect {
                opts: convert::local_opts(opts),
                close,
            },
            RequestBody::RemoteFetch { request_id, opts } => {
                let query = Query::FetchSockets(convert::local_opts(opts));
                return self.ask_shards(ns, request_id, InboundKind::FetchSockets, query);
            }
            RequestBody::AllRooms { request_id } => {
                return self.ask_shards(ns, request_id, InboundKind::AllRooms, Query::AllRooms);
            }
            RequestBody::ServerSideEmit { request_id, data } => {
                return self.on_server_side_emit(ns, request_id, data);
            }
            RequestBody::Broadcast {
                request_id,
                packet,
                opts,
            } => return self.on_broadcast_with_ack(ns, request_id, packet, opts),
            // Adapter 8 never sends these (it fetches instead); an older node that does gets
            // no answer from this server.
            RequestBody::Sockets { .. }
            | RequestBody::LegacyJoin { .. }
            | RequestBody::LegacyLeave { .. }
            | RequestBody::LegacyDisconnect { .. } => {
                return tracing::debug!(kind = ?request.body, "legacy adapter request ignored");
            }
        };
        let nsp = &self.namespaces[ns].name;
        self.to_every_shard(|| BusMessage::Command {
            nsp: nsp.clone(),
            cmd: cmd.clone(),
        });
    }

    fn ask_shards(&mut self, ns: usize, request_id: String, kind: InboundKind, query: Query) {
        if !self.pending.has_room() {
            self.stats().drop_one();
            return;
        }
        let id = self.shard_id();
        let nsp = self.namespaces[ns].name.clone();
        let asked = self.to_every_shard(|| BusMessage::Query {
            nsp: nsp.clone(),
            id,
            query: query.clone(),
        });
        let req = Inbound {
            ns,
            request_id,
            kind,
            tally: Tally::new(Answer::empty_for(&query), Some(asked)),
            deadline: Instant::now() + self.shard_wait(),
        };
        if let Some(due) = self.pending.add_inbound(id, req) {
            self.carry_out(due);
        }
    }

    fn shard_wait(&self) -> Duration {
        SHARD_ANSWER_WAIT.min(self.config.requests_timeout() / 2)
    }

    fn on_server_side_emit(&mut self, ns: usize, request_id: Option<String>, data: Vec<JsValue>) {
        let Some((event, data)) = convert::split_event(JsValue::Array(data)) else {
            self.malformed(
                &self.namespaces[ns].name,
                &"server-side emit without an event",
            );
            return;
        };
        let ack = match request_id {
            Some(request_id) if self.pending.has_room() => {
                let id = self.shard_id();
                let req = Inbound {
                    ns,
                    request_id,
                    kind: InboundKind::ServerSideEmit,
                    tally: Tally::new(Answer::Acks(Vec::new()), Some(1)),
                    // The handler may take its time, but must answer within the requester's.
                    deadline: Instant::now() + self.config.requests_timeout() * 4 / 5,
                };
                self.pending.add_inbound(id, req);
                Some(id)
            }
            _ => None,
        };
        // One server runs it once: one shard, taking turns.
        let shard = self.next_emit_shard % self.shards;
        self.next_emit_shard = self.next_emit_shard.wrapping_add(1);
        let msg = BusMessage::ServerSideEmit {
            nsp: self.namespaces[ns].name.clone(),
            event,
            data,
            ack,
        };
        self.to_shard(shard, msg);
    }

    fn on_broadcast_with_ack(
        &mut self,
        ns: usize,
        request_id: String,
        packet: adapter::Packet,
        opts: adapter::BroadcastOpts,
    ) {
        if !self.pending.has_room() {
            self.stats().drop_one();
            return;
        }
        let timeout = opts
            .flags
            .timeout
            .map_or(self.config.requests_timeout(), Duration::from_millis);
        let id = self.shard_id();
        let Some(broadcast) = self.decode_event(ns, packet, opts, Some(id)) else {
            return;
        };
        let reached = self.to_every_shard(|| BusMessage::Broadcast(broadcast.clone()));
        let now = Instant::now();
        let req = InboundAck {
            ns,
            request_id,
            counts: Tally::new(0, Some(reached)),
            counted: false,
            count_deadline: now + self.shard_wait(),
            deadline: now + timeout,
        };
        if let Some(due) = self.pending.add_inbound_ack(id, req) {
            self.carry_out(due);
        }
    }

    fn on_response(&mut self, response: Response) {
        if self.probe.as_deref() == Some(response.request_id()) {
            self.probe = None;
            return;
        }
        // Responses to other servers' requests arrive too; they match nothing here.
        if !self.pending.knows(response.request_id()) {
            return;
        }
        self.stats().received_one();
        let due = match response {
            Response::RemoteFetch {
                request_id,
                sockets,
            } => {
                let sockets = sockets.into_iter().map(convert::socket_info).collect();
                self.pending
                    .server_answered(&request_id, Answer::Sockets(sockets))
            }
            Response::AllRooms { request_id, rooms } => self
                .pending
                .server_answered(&request_id, Answer::Rooms(rooms)),
            Response::ServerSideEmit { request_id, data } => {
                let acks = Answer::Acks(vec![convert::payload_of(data)]);
                self.pending.server_answered(&request_id, acks)
            }
            Response::BroadcastClientCount {
                request_id,
                client_count,
            } => self.pending.server_counted(&request_id, client_count),
            Response::BroadcastAck { request_id, packet } => {
                if let Some((ns, origin, id)) = self.pending.outbound_ack_target(&request_id) {
                    let msg = BusMessage::Ack {
                        nsp: self.namespaces[ns].name.clone(),
                        id,
                        payload: convert::payload_of(packet),
                    };
                    self.to_shard(origin, msg);
                }
                None
            }
            // Answers to requests this bridge never sends.
            Response::Sockets { .. } | Response::Done { .. } => None,
        };
        if let Some(due) = due {
            self.carry_out(due);
        }
    }

    // ------------------------------------------------------------------------------------
    // From the shards

    fn on_shard(&mut self, work: ToBridge) {
        let origin = work.origin;
        let Ok(msg) = work.msg.downcast::<ShardToBridge>() else {
            return;
        };
        match *msg {
            ShardToBridge::Publish(b) => self.publish_broadcast(origin, b),
            ShardToBridge::Ask {
                nsp,
                id,
                query,
                timeout,
            } => self.ask_cluster(origin, &nsp, id, query, timeout),
            ShardToBridge::Tell { nsp, cmd } => self.tell_cluster(&nsp, cmd),
            ShardToBridge::Reply(reply) => self.on_shard_reply(reply),
        }
    }

    fn ns_index(&self, nsp: &str) -> Option<usize> {
        self.namespaces.iter().position(|n| n.name == nsp)
    }

    fn publish_broadcast(&mut self, origin: usize, b: PublishedBroadcast) {
        let Some(ns) = self.ns_index(&b.nsp) else {
            return;
        };
        let data = match convert::event_data(&b.event, &b.data) {
            Ok(data) => data,
            Err(e) => {
                self.stats().drop_one();
                tracing::warn!(error = %e, "broadcast not published: its payload has bad placeholders");
                return self.report_no_remote_clients(ns, origin, b.ack);
            }
        };
        let packet = adapter::Packet {
            kind: 2,
            data,
            nsp: b.nsp,
        };
        match b.ack {
            None => {
                let opts = convert::wire_opts(&b.opts, None);
                let channel = self.namespaces[ns]
                    .channels
                    .publish_channel(&opts.rooms)
                    .into_owned();
                let payload = BroadcastMessage {
                    uid: self.uid.clone(),
                    packet,
                    opts,
                }
                .encode();
                self.publish(channel, payload);
            }
            Some((id, timeout)) => {
                if self.out.is_none() || !self.pending.has_room() {
                    self.stats().drop_one();
                    return self.report_no_remote_clients(ns, origin, b.ack);
                }
                let timeout = timeout.min(self.config.requests_timeout());
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                let request_id = self.request_id();
                let body = RequestBody::Broadcast {
                    request_id: request_id.clone(),
                    packet,
                    opts: convert::wire_opts(&b.opts, Some(timeout_ms)),
                };
                let req = Outbound {
                    ns,
                    origin,
                    id,
                    kind: OutboundKind::BroadcastAck {
                        counts: Tally::new(0, None),
                        reported: false,
                    },
                    deadline: Instant::now() + timeout,
                };
                self.send_request(ns, request_id, body, req);
            }
        }
    }

    /// Tells the origin of a broadcast with acks that no other machine will count.
    fn report_no_remote_clients(&self, ns: usize, origin: usize, ack: Option<(u64, Duration)>) {
        if let Some((id, _)) = ack {
            let msg = BusMessage::AckCount {
                nsp: self.namespaces[ns].name.clone(),
                id,
                count: 0,
            };
            self.to_shard(origin, msg);
        }
    }

    /// Publishes a request that wants answers and registers it.
    fn send_request(&mut self, ns: usize, request_id: String, body: RequestBody, req: Outbound) {
        let payload = Request {
            uid: Some(self.uid.clone()),
            body,
        }
        .encode();
        self.pending.add_outbound(request_id.clone(), req);
        let out = Outgoing::Request {
            request_id: request_id.clone(),
            channel: self.namespaces[ns].channels.request().to_owned(),
            payload,
        };
        if !self.send_out(out) {
            if let Some(due) = self.pending.servers_known(&request_id, None) {
                self.carry_out(due);
            }
        }
    }

    fn ask_cluster(&mut self, origin: usize, nsp: &str, id: u64, query: Query, timeout: Duration) {
        let Some(ns) = self.ns_index(nsp) else {
            return;
        };
        let empty = Answer::empty_for(&query);
        if self.out.is_none() || !self.pending.has_room() {
            // Redis is away: say so at once instead of letting the shard wait it out.
            let msg = BusMessage::Answer {
                nsp: nsp.to_owned(),
                id,
                answer: empty,
                whole: false,
            };
            return self.to_shard(origin, msg);
        }
        let request_id = self.request_id();
        let body = match query {
            Query::FetchSockets(opts) => RequestBody::RemoteFetch {
                request_id: request_id.clone(),
                opts: convert::wire_opts(&opts, None),
            },
            Query::AllRooms => RequestBody::AllRooms {
                request_id: request_id.clone(),
            },
            Query::ServerSideEmit { event, data } => match convert::event_data(&event, &data) {
                Ok(JsValue::Array(data)) => RequestBody::ServerSideEmit {
                    request_id: Some(request_id.clone()),
                    data,
                },
                _ => {
                    let msg = BusMessage::Answer {
                        nsp: nsp.to_owned(),
                        id,
                        answer: empty,
                        whole: false,
                    };
                    return self.to_shard(origin, msg);
                }
            },
        };
        let req = Outbound {
            ns,
            origin,
            id,
            kind: OutboundKind::Ask(Tally::new(empty, None)),
            deadline: Instant::now() + timeout.min(self.config.requests_timeout()),
        };
        self.send_request(ns, request_id, body, req);
    }

    fn tell_cluster(&mut self, nsp: &str, cmd: Command) {
        let Some(ns) = self.ns_index(nsp) else {
            return;
        };
        let body = match cmd {
            Command::Join { opts, rooms } => RequestBody::RemoteJoin {
                opts: convert::wire_opts(&opts, None),
                rooms,
            },
            Command::Leave { opts, rooms } => RequestBody::RemoteLeave {
                opts: convert::wire_opts(&opts, None),
                rooms,
            },
            Command::Disconnect { opts, close } => RequestBody::RemoteDisconnect {
                opts: convert::wire_opts(&opts, None),
                close,
            },
            Command::ServerSideEmit { event, data } => match convert::event_data(&event, &data) {
                Ok(JsValue::Array(data)) => RequestBody::ServerSideEmit {
                    request_id: None,
                    data,
                },
                _ => {
                    self.stats().drop_one();
                    return;
                }
            },
        };
        let payload = Request {
            uid: Some(self.uid.clone()),
            body,
        }
        .encode();
        let channel = self.namespaces[ns].channels.request().to_owned();
        self.publish(channel, payload);
    }

    fn on_shard_reply(&mut self, reply: BusMessage) {
        let due = match reply {
            BusMessage::Answer { id, answer, .. } => self.pending.shard_answered(id, answer),
            BusMessage::AckCount { id, count, .. } => self.pending.shard_counted(id, count),
            BusMessage::Ack { id, payload, .. } => {
                if let Some((ns, request_id)) = self.pending.inbound_ack_target(id) {
                    let response = Response::BroadcastAck {
                        request_id: request_id.to_owned(),
                        packet: convert::first_arg(&payload),
                    };
                    let channel = self.namespaces[ns].channels.response().to_owned();
                    self.publish(channel, response.encode());
                }
                None
            }
            _ => None,
        };
        if let Some(due) = due {
            self.carry_out(due);
        }
    }

    fn carry_out(&mut self, due: Due) {
        match due {
            Due::Respond {
                ns,
                request_id,
                kind,
                answer,
            } => {
                let response = match (kind, answer) {
                    (InboundKind::FetchSockets, Answer::Sockets(sockets)) => {
                        Response::RemoteFetch {
                            request_id,
                            sockets: sockets.into_iter().map(convert::remote_socket).collect(),
                        }
                    }
                    (InboundKind::AllRooms, Answer::Rooms(mut rooms)) => {
                        rooms.sort_unstable();
                        rooms.dedup();
                        Response::AllRooms { request_id, rooms }
                    }
                    (_, answer) => Response::ServerSideEmit {
                        request_id,
                        data: pending::first_ack(answer)
                            .map_or(JsValue::Null, |p| convert::first_arg(&p)),
                    },
                };
                let channel = self.namespaces[ns].channels.response().to_owned();
                self.publish(channel, response.encode());
            }
            Due::ClientCount {
                ns,
                request_id,
                count,
            } => {
                let response = Response::BroadcastClientCount {
                    request_id,
                    client_count: count,
                };
                let channel = self.namespaces[ns].channels.response().to_owned();
                self.publish(channel, response.encode());
            }
            Due::Answer {
                ns,
                origin,
                id,
                answer,
                whole,
            } => {
                let msg = BusMessage::Answer {
                    nsp: self.namespaces[ns].name.clone(),
                    id,
                    answer,
                    whole,
                };
                self.to_shard(origin, msg);
            }
            Due::AckCount {
                ns,
                origin,
                id,
                count,
            } => {
                let msg = BusMessage::AckCount {
                    nsp: self.namespaces[ns].name.clone(),
                    id,
                    count: usize::try_from(count).unwrap_or(usize::MAX),
                };
                self.to_shard(origin, msg);
            }
        }
    }
}

/// The `n`th id the bridge gives the shards (ack ids on sockets, query ids): the low byte is
/// 0xFF, where a shard puts its own index (0..=254).
fn bridge_ack_id(n: u64) -> u64 {
    ((n & ((1 << 44) - 1)) << 8) | 0xFF
}

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Opens the publishing connection and the subscription connection, and subscribes.
async fn connect(
    client: redis::Client,
    subscriptions: Vec<(bool, String)>,
) -> Result<(redis::aio::MultiplexedConnection, redis::aio::PubSubStream), redis::RedisError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for (pattern, name) in &subscriptions {
            if *pattern {
                pubsub.psubscribe(name).await?;
            } else {
                pubsub.subscribe(name).await?;
            }
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, subscribe)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out")))??;
    Ok((conn, pubsub.into_on_message()))
}

/// Sends queued commands to Redis in pipelines, in order, until the queue closes or Redis fails.
async fn publish_loop(
    mut conn: redis::aio::MultiplexedConnection,
    mut queue: mpsc::Receiver<Outgoing>,
    feedback: mpsc::Sender<Feedback>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut requests = Vec::new();
        for out in &batch {
            match out {
                Outgoing::Publish { channel, payload } => {
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload.as_slice())
                        .ignore();
                }
                Outgoing::Request {
                    request_id,
                    channel,
                    payload,
                } => {
                    // Node counts the servers the same way (SOCKETIO.md §3.4).
                    pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel);
                    pipe.cmd("PUBLISH")
                        .arg(channel)
                        .arg(payload.as_slice())
                        .ignore();
                    requests.push(request_id.clone());
                }
            }
        }
        let sent = batch.len() as u64;
        batch.clear();
        match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
            Ok(counts) => {
                metrics.bridge().add_published(sent);
                for (request_id, count) in requests.into_iter().zip(counts) {
                    let servers = numsub(&count);
                    let _ = feedback
                        .send(Feedback::Servers {
                            request_id,
                            servers,
                        })
                        .await;
                }
            }
            Err(e) => {
                for _ in 0..sent {
                    metrics.bridge().drop_one();
                }
                for request_id in requests {
                    let _ = feedback
                        .send(Feedback::Servers {
                            request_id,
                            servers: None,
                        })
                        .await;
                }
                let _ = feedback.send(Feedback::Lost(e)).await;
                return;
            }
        }
    }
}

/// The subscriber count in a `PUBSUB NUMSUB <channel>` reply: `[channel, count]`.
fn numsub(reply: &redis::Value) -> Option<usize> {
    match reply {
        redis::Value::Array(items) => match items.get(1) {
            Some(redis::Value::Int(n)) => usize::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_reads_the_count() {
        let reply = redis::Value::Array(vec![
            redis::Value::BulkString(b"socket.io-request#/#".to_vec()),
            redis::Value::Int(3),
        ]);
        assert_eq!(numsub(&reply), Some(3));
        assert_eq!(numsub(&redis::Value::Nil), None);
    }

    #[test]
    fn bridge_ids_never_collide_with_shard_ack_ids() {
        let ids: std::collections::HashSet<u64> = (1..1000).map(bridge_ack_id).collect();
        assert_eq!(ids.len(), 999);
        assert!(ids.iter().all(|id| id & 0xFF == 0xFF));
        // A shard's ids carry its index (0..=254) in the low byte.
        assert!((0..255u64).all(|shard| !ids.contains(&((7 << 8) | shard))));
    }
}
