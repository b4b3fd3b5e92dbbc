//! The connections of one connected phase: opening them (publishing, subscription and, in
//! streams mode, the stream's reader), and the publisher task that pipelines commands to Redis.

use super::streams::Resume;
use super::*;

/// The connections of one connected phase.
pub(super) struct Links {
    pub(super) conn: redis::aio::MultiplexedConnection,
    /// Changes the subscriptions of `messages` (room channels come and go).
    pub(super) sink: redis::aio::PubSubSink,
    pub(super) messages: redis::aio::PubSubStream,
    /// Streams mode: the read connection and where it starts.
    pub(super) reader: Option<(redis::aio::MultiplexedConnection, Resume)>,
}

/// Streams mode: what a fresh read connection needs to resume.
pub(super) struct ReadPlan {
    pub(super) key: String,
    pub(super) uid: String,
    pub(super) last_read: Option<String>,
    pub(super) last_added: Option<String>,
    pub(super) unconfirmed: usize,
}

/// Opens the publishing connection and the subscription connection, and subscribes; in
/// streams mode also the read connection, and finds where to resume.
pub(super) async fn connect(
    client: redis::Client,
    subscriptions: Vec<(bool, String)>,
    plan: Option<ReadPlan>,
) -> Result<Links, redis::RedisError> {
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
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "resuming timed out")))??;
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
        for chunk in channels.chunks(rooms::SUBSCRIBE_BATCH) {
            pubsub.subscribe(chunk).await?;
        }
        Ok::<_, redis::RedisError>(pubsub)
    };
    let pubsub = tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, subscribe)
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out")))??;
    let (sink, messages) = pubsub.split();
    Ok(Links {
        conn,
        sink,
        messages,
        reader,
    })
}

/// Sends queued commands to Redis in pipelines, in order, until the queue closes or Redis fails.
/// `stream` is the key and `MAXLEN ~` of streams mode's XADDs.
pub(super) async fn publish_loop(
    mut conn: redis::aio::MultiplexedConnection,
    mut queue: mpsc::Receiver<Outgoing>,
    feedback: mpsc::Sender<Feedback>,
    metrics: Arc<Metrics>,
    stream: (String, u64),
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        // What each reply that is not ignored answers: a request's NUMSUB, or an XADD.
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
                    requests.push(Some(request_id.clone()));
                }
                Outgoing::Add(entry) => {
                    let (key, maxlen) = &stream;
                    let cmd = pipe.cmd("XADD").arg(key).arg("MAXLEN").arg("~");
                    let cmd = cmd.arg(*maxlen).arg("*").arg("uid").arg(&entry.uid);
                    let cmd = cmd.arg("nsp").arg(&entry.nsp).arg("type").arg(&entry.kind);
                    if let Some(data) = &entry.data {
                        cmd.arg("data").arg(data);
                    }
                    requests.push(None);
                }
            }
        }
        let sent = batch.len() as u64;
        match pipe.query_async::<Vec<redis::Value>>(&mut conn).await {
            Ok(replies) => {
                batch.clear();
                metrics.bridge().add_published(sent);
                let mut added = None;
                for (request_id, reply) in requests.into_iter().zip(replies) {
                    match request_id {
                        Some(request_id) => {
                            let servers = numsub(&reply);
                            let _ = feedback
                                .send(Feedback::Servers {
                                    request_id,
                                    servers,
                                })
                                .await;
                        }
                        None => added = redis::from_redis_value::<String>(reply).ok(),
                    }
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
                for request_id in requests.into_iter().flatten() {
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
