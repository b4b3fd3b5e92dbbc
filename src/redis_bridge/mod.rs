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
//!   (and PUBSUB NUMSUB for requests) on one multiplexed connection; a full queue drops.
//! * Redis -> bridge: one pub/sub connection with Node's channel set per namespace.
//!
//! Nothing here ever waits on a shard, and no shard ever waits on Redis. When Redis is away, the
//! bridge keeps draining its queue (publishes are dropped and counted, questions are answered
//! as incomplete at once), retries with a doubling backoff (250 ms up to `--redis-reconnect-max`),
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
//! * `convert`: Node's JSON values to and from Socket.IO payloads.

mod convert;
mod from_redis;
mod from_shards;
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

use crate::bus::cluster::{
    ack_id, format_offset, recovery_offset, Answer, BridgeMsg, Command, Origin, PublishedBroadcast,
    Query, RemoteBroadcast, Reply, ServerSideEmit, SioMsg, Tally,
};
use crate::bus::{Bus, ShardMsg, ToBridge};
use crate::config::RedisConfig;
use crate::metrics::{BridgeMetrics, Metrics};
use crate::protocol::adapter::{
    self, BroadcastMessage, Channels, JsValue, Request, RequestBody, Response,
};
use crate::protocol::socketio::{event_frames, event_frames_with_offset};
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
pub(crate) struct BridgeSetup {
    pub(crate) config: RedisConfig,
    /// The endpoint whose Socket.IO app the bridge serves, and its namespaces.
    pub(crate) endpoint: usize,
    pub(crate) namespaces: Vec<String>,
    pub(crate) bus: Bus,
    pub(crate) queue: mpsc::Receiver<ToBridge>,
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the endpoint recovers connection state: the broadcasts from other machines then
    /// carry offsets the bridge issues.
    pub(crate) recovery: bool,
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
    /// The recovery offsets issued so far, when the endpoint recovers connection state.
    offsets: Option<std::cell::Cell<u64>>,
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
            offsets: setup.recovery.then(|| std::cell::Cell::new(0)),
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
        let mut backoff = RedisConfig::RECONNECT_MIN;
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
            backoff = RedisConfig::RECONNECT_MIN;
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
                    // Node counts the servers the same way (docs/PROTOCOL.md §3.4).
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
}
