//! The bridge's connections to Redis: where Redis is (one server, the master that Sentinel
//! names, or a Redis Cluster), the connections of one connected phase (publishing, the
//! subscriptions and, in streams mode, the stream's reader), and the publisher task that sends
//! PUBLISH, SPUBLISH and XADD commands.
//!
//! * One server: a multiplexed connection for commands and a pub/sub connection.
//! * Sentinel: the sentinels are asked for the master at each connection (so a reconnection
//!   after a failover finds the new one), and one sentinel's `+switch-master` announcements are
//!   watched: a switch of this master ends the connected phase at once, even when the old
//!   master is still up (demoted to a replica, where a PUBLISH would reach nobody).
//! * Redis Cluster (`--redis-mode sharded`): one `redis` cluster connection (RESP3) for
//!   everything. It routes SPUBLISH and SSUBSCRIBE by key slot, follows MOVED and ASK,
//!   reconnects to a node and resubscribes what that node serves. A node's connection lost (a
//!   master down) ends the connected phase: the bridge then rebuilds the connection, which
//!   learns the new topology (the replica promoted in its place) and subscribes everything
//!   again.

use std::pin::Pin;

use futures_util::{FutureExt, Stream, StreamExt};
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, ProtocolVersion, PushKind};

use super::streams::Resume;
use super::subscriptions::Changes;
use super::*;

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE command, at most (a long list is split).
const SUBSCRIBE_BATCH: usize = 1024;

/// Messages from Redis, ended when the connection is lost.
pub(super) type Messages = Pin<Box<dyn Stream<Item = redis::Msg>>>;

/// What the subscription connection says.
pub(super) enum Event {
    Message(redis::Msg),
    /// Redis Cluster dropped this server's subscription to a channel (`SUNSUBSCRIBE` pushed by
    /// the server when the channel's slot left the node), or confirms one it asked for.
    Unsubscribed(String),
}

/// The subscription connection's events, ended when the connection is lost.
pub(super) type Events = Pin<Box<dyn Stream<Item = Event>>>;

/// Where Redis is.
#[derive(Clone)]
pub(super) enum Target {
    /// One server (`--redis`).
    Single(redis::Client),
    /// The master named `master`, as the sentinels at `sentinels` say (`--redis-sentinel`).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        node: SentinelNodeConnectionInfo,
    },
    /// A Redis Cluster reached through these nodes (`--redis-mode sharded`).
    Cluster(Vec<String>),
}

impl Target {
    /// Where the configuration says Redis is; an error for a URL that does not parse.
    pub(super) fn of(config: &RedisConfig) -> redis::RedisResult<Self> {
        if !config.sentinels.is_empty() {
            let mut node = SentinelNodeConnectionInfo::default();
            if let Some(url) = config.urls().first() {
                let info = url.into_connection_info()?;
                node = node.set_redis_connection_info(info.redis_settings().clone());
            }
            let sentinels = config
                .sentinels
                .iter()
                .map(|s| format!("redis://{s}"))
                .collect::<Vec<_>>();
            // Checked here so that a bad address fails the start, not every attempt.
            for url in &sentinels {
                url.as_str().into_connection_info()?;
            }
            return Ok(Target::Sentinel {
                sentinels,
                master: config.master.clone().unwrap_or_default(),
                node,
            });
        }
        let urls = config.urls();
        if config.mode == RedisMode::Sharded {
            for url in &urls {
                url.into_connection_info()?;
            }
            return Ok(Target::Cluster(
                urls.iter().map(|u| (*u).to_owned()).collect(),
            ));
        }
        Ok(Target::Single(redis::Client::open(
            urls.first().copied().unwrap_or_default(),
        )?))
    }
}

/// How the publisher reaches Redis.
pub(super) enum Publisher {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Changes the room subscriptions of the connected phase.
#[derive(Clone)]
pub(super) enum Subscriber {
    /// SUBSCRIBE / UNSUBSCRIBE on the pub/sub connection.
    Sink(redis::aio::PubSubSink),
    /// SSUBSCRIBE / SUNSUBSCRIBE, each to the node of its channel's slot.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Subscriber {
    /// Sends `changes`, unsubscribing first: once the last subscription is confirmed, all of
    /// the batch is.
    pub(super) async fn change(self, changes: Changes) -> redis::RedisResult<()> {
        match self {
            Subscriber::Sink(mut sink) => {
                for chunk in changes.unsubscribe.chunks(SUBSCRIBE_BATCH) {
                    sink.unsubscribe(chunk).await?;
                }
                for chunk in changes.subscribe.chunks(SUBSCRIBE_BATCH) {
                    sink.subscribe(chunk).await?;
                }
            }
            // One channel per command (the channels of one SSUBSCRIBE must share a slot), the
            // commands of a list sent together: each goes to its slot's master.
            Subscriber::Cluster(conn) => {
                each_channel(&conn, &changes.unsubscribe, false).await?;
                each_channel(&conn, &changes.subscribe, true).await?;
            }
        }
        Ok(())
    }
}

/// SSUBSCRIBE (or SUNSUBSCRIBE) each of `channels`, all at once; done when Redis confirmed all.
async fn each_channel(
    conn: &redis::cluster_async::ClusterConnection,
    channels: &[String],
    subscribe: bool,
) -> redis::RedisResult<()> {
    let commands = channels.iter().map(|channel| {
        let mut conn = conn.clone();
        async move {
            if subscribe {
                conn.ssubscribe(channel).await
            } else {
                conn.sunsubscribe(channel).await
            }
        }
    });
    futures_util::future::try_join_all(commands).await?;
    Ok(())
}

/// The connections of one connected phase: the publisher's, the subscriptions (their
/// messages, and the handle that changes them), in streams mode the stream's reader and where
/// it starts, and behind Sentinel the watch on `+switch-master`.
pub(super) struct Links {
    pub(super) publisher: Publisher,
    pub(super) subscriber: Subscriber,
    pub(super) events: Events,
    pub(super) reader: Option<(redis::aio::MultiplexedConnection, Resume)>,
    pub(super) switched: Option<Messages>,
}

/// Streams mode: what a fresh read connection needs to resume.
pub(super) struct ReadPlan {
    pub(super) key: String,
    pub(super) uid: String,
    pub(super) last_read: Option<String>,
    pub(super) last_added: Option<String>,
    pub(super) unconfirmed: usize,
}

fn io_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

/// Connects and subscribes to `subscriptions` (is pattern, name); in streams mode also opens
/// the read connection and finds where to resume.
pub(super) async fn connect(
    target: Target,
    subscriptions: Vec<(bool, String)>,
    plan: Option<ReadPlan>,
) -> redis::RedisResult<Links> {
    let connecting = match target {
        // Its own timeouts: for the connection, each command, and the subscriptions.
        Target::Single(client) => return connect_single(client, subscriptions, plan, None).await,
        Target::Sentinel {
            sentinels,
            master,
            node,
        } => async move {
            let mut sentinel = SentinelClient::build(
                sentinels,
                master.clone(),
                Some(node),
                SentinelServerType::Master,
            )?;
            let client = sentinel.async_get_client().await?;
            let watch = sentinel.async_get_sentinel_client().await?;
            connect_single(client, subscriptions, plan, Some((watch, master))).await
        }
        .boxed_local(),
        Target::Cluster(nodes) => connect_cluster(nodes, subscriptions).boxed_local(),
    };
    tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 4, connecting)
        .await
        .map_err(|_| io_error("connecting and subscribing timed out"))?
}

async fn connect_single(
    client: redis::Client,
    subscriptions: Vec<(bool, String)>,
    plan: Option<ReadPlan>,
    sentinel: Option<(redis::Client, String)>,
) -> redis::RedisResult<Links> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let reader = match plan {
        Some(plan) => {
            let read_config = config
                .clone()
                .set_response_timeout(Some(streams::read_timeout()));
            let mut read_conn = client
                .get_multiplexed_async_connection_with_config(&read_config)
                .await?;
            let state = (&plan.last_read, &plan.last_added, plan.unconfirmed);
            let resume = tokio::time::timeout(
                REDIS_RESPONSE_TIMEOUT * 2,
                streams::resume(&mut read_conn, &plan.key, &plan.uid, state),
            )
            .await
            .map_err(|_| io_error("resuming timed out"))??;
            Some((read_conn, resume))
        }
        None => None,
    };
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        // Patterns one by one (one per namespace at most), channels in batches.
        let (patterns, channels): (Vec<_>, Vec<_>) = subscriptions.into_iter().partition(|s| s.0);
        for (_, pattern) in &patterns {
            pubsub.psubscribe(pattern).await?;
        }
        let channels: Vec<String> = channels.into_iter().map(|(_, name)| name).collect();
        for chunk in channels.chunks(SUBSCRIBE_BATCH) {
            pubsub.subscribe(chunk).await?;
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, subscribe)
        .await
        .map_err(|_| io_error("subscribing timed out"))??;
    let switched = match sentinel {
        Some((watch, master)) => {
            let mut watch = watch.get_async_pubsub().await?;
            watch.subscribe("+switch-master").await?;
            // `<master name> <old ip> <old port> <new ip> <new port>`
            let prefix = format!("{master} ");
            let ours = watch.into_on_message().filter(move |msg| {
                let ours = msg
                    .get_payload::<String>()
                    .is_ok_and(|p| p.starts_with(&prefix));
                std::future::ready(ours)
            });
            Some(Box::pin(ours) as Messages)
        }
        None => None,
    };
    let (sink, messages) = pubsub.split();
    Ok(Links {
        publisher: Publisher::Single(conn),
        subscriber: Subscriber::Sink(sink),
        events: Box::pin(messages.map(Event::Message)),
        reader,
        switched,
    })
}

async fn connect_cluster(
    nodes: Vec<String>,
    subscriptions: Vec<(bool, String)>,
) -> redis::RedisResult<Links> {
    let (push_tx, mut pushes) = mpsc::unbounded_channel();
    let client = ClusterClientBuilder::new(nodes)
        .use_protocol(ProtocolVersion::RESP3)
        .push_sender(push_tx)
        .connection_timeout(REDIS_RESPONSE_TIMEOUT)
        .response_timeout(REDIS_RESPONSE_TIMEOUT)
        .retries(2)
        .build()?;
    let mut conn = client.get_async_connection().await?;
    // One channel per command: the channels of one SSUBSCRIBE must share a slot.
    for (_, name) in &subscriptions {
        conn.ssubscribe(name).await?;
    }
    // Subscription confirmations are skipped; a node's disconnection ends the stream.
    let events = futures_util::stream::poll_fn(move |cx| loop {
        match pushes.poll_recv(cx) {
            std::task::Poll::Ready(Some(push)) => match push.kind {
                PushKind::Disconnection => return std::task::Poll::Ready(None),
                PushKind::SMessage | PushKind::Message => {
                    if let Some(msg) = redis::Msg::from_push_info(push) {
                        return std::task::Poll::Ready(Some(Event::Message(msg)));
                    }
                }
                PushKind::SUnsubscribe => {
                    if let Some(Ok(channel)) =
                        push.data.first().map(redis::from_redis_value_ref::<String>)
                    {
                        return std::task::Poll::Ready(Some(Event::Unsubscribed(channel)));
                    }
                }
                _ => {}
            },
            other => return other.map(|_| None),
        }
    });
    Ok(Links {
        publisher: Publisher::Cluster(conn.clone()),
        subscriber: Subscriber::Cluster(conn),
        events: Box::pin(events),
        reader: None,
        switched: None,
    })
}

/// A command for the publisher task.
pub(super) enum Outgoing {
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
    /// Streams mode: an entry to add to the stream.
    Add(StreamEntry),
    /// Streams mode with recovery: `SET key value PX px`.
    SetSession {
        key: String,
        value: String,
        px: u64,
    },
    /// Streams mode with recovery: `MULTI GET DEL EXEC` of a session for restore `restore`.
    TakeSession {
        restore: u64,
        key: String,
    },
}

/// What the publisher tells the bridge.
pub(super) enum Feedback {
    /// Request `request_id` reached `servers` subscribers of its channel (this one included),
    /// or was not published (`None`).
    Servers {
        request_id: String,
        servers: Option<usize>,
    },
    /// Streams mode: Redis added a pipeline's entries, the last with this id.
    Added(String),
    /// Streams mode with recovery: the session of restore `restore`, taken from Redis.
    Taken { restore: u64, value: Option<String> },
    /// The connection failed; the publisher has stopped. In streams mode, `unconfirmed` are the
    /// entries of the failed pipeline (Redis may have added some), `unsent` those it never sent.
    Lost {
        error: redis::RedisError,
        unconfirmed: Vec<StreamEntry>,
        unsent: Vec<StreamEntry>,
    },
}

/// Sends queued commands to Redis in order, until the queue closes or Redis fails: pipelined
/// to one server, or to the nodes of a Redis Cluster. `stream` is the key and `MAXLEN ~` of
/// streams mode's XADDs.
pub(super) async fn publish_loop(
    mut publisher: Publisher,
    mut queue: mpsc::Receiver<Outgoing>,
    feedback: mpsc::Sender<Feedback>,
    metrics: Arc<Metrics>,
    stream: (String, u64),
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        // What each reply that is not ignored answers.
        let requests: Vec<Expect> = batch
            .iter()
            .filter_map(|out| match out {
                Outgoing::Publish { .. } | Outgoing::SetSession { .. } => None,
                Outgoing::Request { request_id, .. } => Some(Expect::Servers(request_id.clone())),
                Outgoing::Add(_) => Some(Expect::Added),
                Outgoing::TakeSession { restore, .. } => Some(Expect::Taken(*restore)),
            })
            .collect();
        let sent = batch.len() as u64;
        let result = match &mut publisher {
            Publisher::Single(conn) => send_pipeline(conn, &batch, &stream).await,
            Publisher::Cluster(conn) => send_cluster(conn, &batch).await,
        };
        match result {
            Ok(replies) => {
                batch.clear();
                metrics.bridge().add_published(sent);
                let mut added = None;
                for (expect, reply) in requests.into_iter().zip(replies) {
                    let answer = match expect {
                        Expect::Servers(request_id) => Feedback::Servers {
                            request_id,
                            servers: numsub(&reply),
                        },
                        Expect::Added => {
                            added = redis::from_redis_value::<String>(reply).ok();
                            continue;
                        }
                        Expect::Taken(restore) => Feedback::Taken {
                            restore,
                            value: taken(reply),
                        },
                    };
                    let _ = feedback.send(answer).await;
                }
                if let Some(id) = added {
                    let _ = feedback.send(Feedback::Added(id)).await;
                }
            }
            Err(error) => {
                // Pub/Sub messages are gone (counted); stream entries go back to the bridge.
                let entries = |batch: &mut Vec<Outgoing>| -> Vec<StreamEntry> {
                    batch
                        .drain(..)
                        .filter_map(|out| match out {
                            Outgoing::Add(entry) => Some(entry),
                            _ => {
                                metrics.bridge().drop_one();
                                None
                            }
                        })
                        .collect()
                };
                let unconfirmed = entries(&mut batch);
                let asked = requests.into_iter().filter_map(|e| match e {
                    Expect::Servers(request_id) => Some(request_id),
                    _ => None,
                });
                for request_id in asked {
                    let _ = feedback
                        .send(Feedback::Servers {
                            request_id,
                            servers: None,
                        })
                        .await;
                }
                queue.close();
                while let Ok(out) = queue.try_recv() {
                    batch.push(out);
                }
                let unsent = entries(&mut batch);
                let lost = Feedback::Lost {
                    error,
                    unconfirmed,
                    unsent,
                };
                let _ = feedback.send(lost).await;
                return;
            }
        }
    }
}

/// What a reply the publisher does not ignore answers.
enum Expect {
    /// A request's PUBSUB NUMSUB.
    Servers(String),
    /// An XADD: the entry's id.
    Added,
    /// The EXEC of a session's GET and DEL.
    Taken(u64),
}

/// The session an `EXEC` of `GET` and `DEL` returned, if there was one.
fn taken(reply: redis::Value) -> Option<String> {
    match reply {
        redis::Value::Array(mut replies) if !replies.is_empty() => {
            redis::from_redis_value::<Option<String>>(replies.swap_remove(0))
                .ok()
                .flatten()
        }
        _ => None,
    }
}

/// One pipeline to one server; the replies not ignored (NUMSUB, XADD), in order.
async fn send_pipeline(
    conn: &mut redis::aio::MultiplexedConnection,
    batch: &[Outgoing],
    (key, maxlen): &(String, u64),
) -> redis::RedisResult<Vec<redis::Value>> {
    let mut pipe = redis::pipe();
    for out in batch {
        match out {
            Outgoing::Publish { channel, payload } => {
                pipe.cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload.as_slice())
                    .ignore();
            }
            Outgoing::Request {
                channel, payload, ..
            } => {
                // Node counts the servers the same way (docs/PROTOCOL.md §3.4).
                pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel);
                pipe.cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload.as_slice())
                    .ignore();
            }
            Outgoing::SetSession { key, value, px } => {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(*px)
                    .ignore();
            }
            Outgoing::TakeSession { key, .. } => {
                // As the streams adapter takes it: read and delete at once.
                pipe.cmd("MULTI").ignore();
                pipe.cmd("GET").arg(key).ignore();
                pipe.cmd("DEL").arg(key).ignore();
                pipe.cmd("EXEC");
            }
            Outgoing::Add(entry) => {
                let cmd = pipe.cmd("XADD").arg(key).arg("MAXLEN").arg("~");
                let cmd = cmd.arg(*maxlen).arg("*").arg("uid").arg(&entry.uid);
                let cmd = cmd.arg("nsp").arg(&entry.nsp).arg("type").arg(&entry.kind);
                if let Some(data) = &entry.data {
                    cmd.arg("data").arg(data);
                }
            }
        }
    }
    pipe.query_async(conn).await
}

/// SPUBLISH each message to the node that serves its channel's slot (sent together, in
/// order); the requests' subscriber counts (`PUBSUB SHARDNUMSUB`, as Node's sharded adapter
/// counts), in order. Streams mode's entries never come here.
async fn send_cluster(
    conn: &mut redis::cluster_async::ClusterConnection,
    batch: &[Outgoing],
) -> redis::RedisResult<Vec<redis::Value>> {
    let mut counts = Vec::new();
    let mut sends = Vec::with_capacity(batch.len());
    for out in batch {
        let (channel, payload) = match out {
            Outgoing::Publish { channel, payload } => (channel, payload),
            Outgoing::Request {
                channel, payload, ..
            } => {
                let mut count = redis::cmd("PUBSUB");
                count.arg("SHARDNUMSUB").arg(channel);
                counts.push(count.query_async::<redis::Value>(conn).await?);
                (channel, payload)
            }
            Outgoing::Add(_) | Outgoing::SetSession { .. } | Outgoing::TakeSession { .. } => {
                continue
            }
        };
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(channel).arg(payload.as_slice());
        sends.push(cmd);
    }
    let replies = futures_util::future::join_all(sends.iter().map(|cmd| {
        let mut conn = conn.clone();
        async move { cmd.query_async::<redis::Value>(&mut conn).await }
    }))
    .await;
    for reply in replies {
        reply?;
    }
    Ok(counts)
}

/// The subscriber count in a `PUBSUB NUMSUB <channel>` (or `SHARDNUMSUB`) reply:
/// `[channel, count]`, or a map of one entry in RESP3.
fn numsub(reply: &redis::Value) -> Option<usize> {
    let count = match reply {
        redis::Value::Array(items) => items.get(1)?,
        redis::Value::Map(entries) => &entries.first()?.1,
        _ => return None,
    };
    match count {
        redis::Value::Int(n) => usize::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_reads_the_count() {
        let channel = redis::Value::BulkString(b"socket.io-request#/#".to_vec());
        let reply = redis::Value::Array(vec![channel.clone(), redis::Value::Int(3)]);
        assert_eq!(numsub(&reply), Some(3));
        let map = redis::Value::Map(vec![(channel, redis::Value::Int(2))]);
        assert_eq!(numsub(&map), Some(2));
        assert_eq!(numsub(&redis::Value::Nil), None);
    }

    #[test]
    fn a_taken_session_is_the_first_reply_of_the_exec() {
        let exec = |first| redis::Value::Array(vec![first, redis::Value::Int(1)]);
        let value = redis::Value::BulkString(b"hKNzaWQ=".to_vec());
        assert_eq!(taken(exec(value)), Some("hKNzaWQ=".to_owned()));
        assert_eq!(taken(exec(redis::Value::Nil)), None, "no such session");
        assert_eq!(
            taken(redis::Value::Nil),
            None,
            "a transaction that did not run"
        );
        assert_eq!(taken(redis::Value::Array(Vec::new())), None);
    }
}
