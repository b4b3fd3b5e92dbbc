//! The bridge's connections to Redis: where Redis is (one server, the master that Sentinel
//! names, or a Redis Cluster), the subscriptions, and the publisher task.
//!
//! * One server: a multiplexed connection for commands and a pub/sub connection.
//! * Sentinel: the sentinels are asked for the master at each connection (so a reconnection
//!   after a failover finds the new one), and one sentinel's `+switch-master` announcements are
//!   watched: a switch of this master ends the connected phase at once, even when the old
//!   master is still up (demoted to a replica, where a PUBLISH would reach nobody).
//! * Redis Cluster: one `redis` cluster connection (RESP3) for everything. It routes SPUBLISH
//!   and SSUBSCRIBE by key slot, follows MOVED and ASK, reconnects to a node and resubscribes
//!   what that node serves. A node's connection lost (a master down) ends the connected phase:
//!   the bridge then rebuilds the connection, which learns the new topology (the replica
//!   promoted in its place) and subscribes everything again.

use std::pin::Pin;

use futures_util::{FutureExt, Stream, StreamExt};
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, ProtocolVersion, PushKind};

use super::*;

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
        if config.mode == crate::config::RedisMode::Sharded {
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

/// A connected link: the publisher's connection, the messages, and (behind Sentinel) the
/// watch on `+switch-master`.
pub(super) struct Link {
    pub(super) publisher: Publisher,
    pub(super) events: Events,
    pub(super) switched: Option<Messages>,
}

fn io_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, what))
}

/// Connects and subscribes to `subscriptions` (is pattern, name).
pub(super) async fn connect(
    target: Target,
    subscriptions: Vec<(bool, String)>,
) -> redis::RedisResult<Link> {
    let connecting = match target {
        // Its own timeouts: for the connection, each command, and the subscriptions.
        Target::Single(client) => return connect_single(client, subscriptions, None).await,
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
            connect_single(client, subscriptions, Some((watch, master))).await
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
    sentinel: Option<(redis::Client, String)>,
) -> redis::RedisResult<Link> {
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
    Ok(Link {
        publisher: Publisher::Single(conn),
        events: Box::pin(pubsub.into_on_message().map(Event::Message)),
        switched,
    })
}

async fn connect_cluster(
    nodes: Vec<String>,
    subscriptions: Vec<(bool, String)>,
) -> redis::RedisResult<Link> {
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
    Ok(Link {
        publisher: Publisher::Cluster(conn),
        events: Box::pin(events),
        switched: None,
    })
}

/// Sends queued commands to Redis, in order, until the queue closes or Redis fails.
pub(super) async fn publish_loop(
    mut publisher: Publisher,
    mut queue: mpsc::Receiver<Outgoing>,
    feedback: mpsc::Sender<Feedback>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let published = batch
            .iter()
            .filter(|o| matches!(o, Outgoing::Publish { .. } | Outgoing::Request { .. }))
            .count() as u64;
        let requests: Vec<String> = batch
            .iter()
            .filter_map(|o| match o {
                Outgoing::Request { request_id, .. } => Some(request_id.clone()),
                _ => None,
            })
            .collect();
        let result = match &mut publisher {
            Publisher::Single(conn) => send_pipeline(conn, &batch).await,
            Publisher::Cluster(conn) => send_cluster(conn, &batch).await,
        };
        batch.clear();
        match result {
            Ok(counts) => {
                metrics.bridge().add_published(published);
                for (request_id, servers) in requests.into_iter().zip(counts) {
                    let _ = feedback
                        .send(Feedback::Servers {
                            request_id,
                            servers,
                        })
                        .await;
                }
            }
            Err(e) => {
                for _ in 0..published {
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

/// One pipeline to one server; the subscriber counts of the requests, in order.
async fn send_pipeline(
    conn: &mut redis::aio::MultiplexedConnection,
    batch: &[Outgoing],
) -> redis::RedisResult<Vec<Option<usize>>> {
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
            // Room channels are a sharded mode's; the classic bridge subscribes by pattern.
            Outgoing::Subscribe(_) | Outgoing::Unsubscribe(_) => {}
        }
    }
    let counts = pipe.query_async::<Vec<redis::Value>>(conn).await?;
    Ok(counts.iter().map(numsub).collect())
}

/// SPUBLISH each message to the node that serves its channel's slot (sent together, in
/// order), SSUBSCRIBE and SUNSUBSCRIBE room channels; the subscriber counts of the requests
/// (`PUBSUB SHARDNUMSUB`, summed over the masters, as Node's adapter does).
async fn send_cluster(
    conn: &mut redis::cluster_async::ClusterConnection,
    batch: &[Outgoing],
) -> redis::RedisResult<Vec<Option<usize>>> {
    let mut counts = Vec::new();
    let mut sends = Vec::with_capacity(batch.len());
    for out in batch {
        match out {
            Outgoing::Publish { channel, payload } => {
                let mut cmd = redis::cmd("SPUBLISH");
                cmd.arg(channel).arg(payload.as_slice());
                sends.push(cmd);
            }
            Outgoing::Request {
                channel, payload, ..
            } => {
                let mut count = redis::cmd("PUBSUB");
                count.arg("SHARDNUMSUB").arg(channel);
                counts.push(numsub(&count.query_async::<redis::Value>(conn).await?));
                let mut cmd = redis::cmd("SPUBLISH");
                cmd.arg(channel).arg(payload.as_slice());
                sends.push(cmd);
            }
            Outgoing::Subscribe(channels) => {
                for channel in channels {
                    conn.ssubscribe(channel).await?;
                }
            }
            Outgoing::Unsubscribe(channels) => {
                for channel in channels {
                    conn.sunsubscribe(channel).await?;
                }
            }
        }
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
pub(super) fn numsub(reply: &redis::Value) -> Option<usize> {
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
}
