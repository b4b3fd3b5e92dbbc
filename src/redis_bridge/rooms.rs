//! Per-room subscriptions (`--redis-subscribe rooms`): the shards' reports of rooms gained and
//! lost, the channel set they make (`subscriptions`), and its changes sent to Redis on the
//! subscription connection, one batch in flight at a time. Changes reported meanwhile wait,
//! and go as the next batch when the one in flight is confirmed.

use futures_util::future::LocalBoxFuture;

use super::*;
use crate::bus::cluster::RoomChanges;

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE command, at most (a long list is split).
pub(super) const SUBSCRIBE_BATCH: usize = 1024;

/// A batch of SUBSCRIBE / UNSUBSCRIBE commands, until Redis confirmed them all.
pub(super) type Subscribing = LocalBoxFuture<'static, Result<(), redis::RedisError>>;

/// Completes with the batch in flight; never without one.
pub(super) async fn in_flight(
    subscribing: &mut Option<Subscribing>,
) -> Result<(), redis::RedisError> {
    match subscribing {
        Some(batch) => batch.await,
        None => std::future::pending().await,
    }
}

impl Bridge {
    /// Every channel and pattern to subscribe to on a fresh connection, as (is pattern, name):
    /// with per-room subscriptions, the namespace channel and every room channel wanted now.
    pub(super) fn subscriptions(&mut self) -> Vec<(bool, String)> {
        let per_room = self.rooms.is_some();
        let mut subs = Vec::new();
        for ns in &self.namespaces {
            if per_room {
                subs.push((false, ns.channels.broadcast().to_owned()));
            } else {
                subs.push((true, ns.channels.pattern().to_owned()));
            }
            subs.push((false, ns.channels.request().to_owned()));
            subs.push((false, ns.channels.response().to_owned()));
            subs.push((false, ns.own_response.clone()));
        }
        if let Some(rooms) = &mut self.rooms {
            subs.extend(rooms.resubscribe_all().into_iter().map(|c| (false, c)));
            self.metrics.bridge().set_room_channels(rooms.subscribed());
        }
        subs
    }

    /// What a message received on `key` (its pattern, or else its channel) is: a fixed
    /// channel's role, or a broadcast on a room channel of this machine.
    pub(super) fn route(&self, key: &str) -> Option<(usize, Role)> {
        if let Some(&route) = self.routes.get(key) {
            return Some(route);
        }
        // A room channel just unsubscribed is forgotten: what still comes on it has no
        // member here.
        let ns = self.rooms.as_ref()?.namespace_of(key)?;
        Some((ns, Role::Broadcast))
    }

    /// A shard's rooms gained and lost.
    pub(super) fn on_rooms(&mut self, shard: usize, changes: RoomChanges) {
        let Some(ns) = self.ns_index(&changes.nsp) else {
            return;
        };
        let Some(subs) = &mut self.rooms else {
            return;
        };
        let channels = &self.namespaces[ns].channels;
        for (room, held) in &changes.rooms {
            subs.update(&channels.room(room), ns, shard, *held);
        }
    }

    /// Sends the room channels' changes to Redis, unless a batch is in flight (then they go
    /// when it is confirmed) or Redis is away (then they go with the next connection).
    pub(super) fn apply_room_changes(&mut self) {
        if self.subscribing.is_some() {
            return;
        }
        let (Some(subs), Some(sink)) = (&mut self.rooms, &self.sink) else {
            return;
        };
        let changes = subs.take_changes();
        if changes.is_empty() {
            return;
        }
        self.metrics.bridge().set_room_channels(subs.subscribed());
        let mut sink = sink.clone();
        self.subscribing = Some(Box::pin(async move {
            let send = async {
                // Unsubscribing first: once a batch's last SUBSCRIBE is confirmed, all of it is.
                for chunk in changes.unsubscribe.chunks(SUBSCRIBE_BATCH) {
                    sink.unsubscribe(chunk).await?;
                }
                for chunk in changes.subscribe.chunks(SUBSCRIBE_BATCH) {
                    sink.subscribe(chunk).await?;
                }
                Ok(())
            };
            tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, send)
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
        }));
    }
}
