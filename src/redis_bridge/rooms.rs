//! Per-room subscriptions: `--redis-subscribe rooms` (classic: SUBSCRIBE) and the sharded
//! adapter's dynamic subscription modes (`--redis-mode sharded --redis-subscription-mode
//! dynamic|dynamic-private`: SSUBSCRIBE). The shards' reports of rooms gained and lost, the
//! channel set they make (`subscriptions`), and its changes sent to Redis on the subscription
//! connection, one batch in flight at a time. Changes reported meanwhile wait, and go as the
//! next batch when the one in flight is confirmed.
//!
//! Each report is answered (`Reply::RoomsSubscribed`, its number) once Redis has confirmed
//! what it needed: the batch that took its changes, or at once when it changed nothing Redis
//! does not already have. While Redis is away, at once: the next connection subscribes the
//! whole set before it receives anything.

use futures_util::future::LocalBoxFuture;
use std::collections::HashMap;

use super::*;
use crate::bus::cluster::RoomChanges;

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

/// The shards' room reports not yet answered, as (namespace, shard) -> the last report's number.
#[derive(Default)]
pub(super) struct Confirmations {
    /// Not yet taken into a batch.
    waiting: HashMap<(usize, usize), u64>,
    /// Taken into the batch in flight.
    in_flight: Vec<((usize, usize), u64)>,
}

impl Confirmations {
    fn wait(&mut self, key: (usize, usize), seq: u64) {
        let last = self.waiting.entry(key).or_default();
        *last = (*last).max(seq);
    }
}

impl Bridge {
    /// Every channel and pattern to subscribe to on a fresh connection, as (is pattern, name):
    /// the fixed ones, and with per-room subscriptions every room channel wanted now.
    pub(super) fn subscriptions(&mut self) -> Vec<(bool, String)> {
        let mut subs: Vec<(bool, String)> = self
            .channel_roles()
            .into_iter()
            .map(|(pattern, name, _, _)| (pattern, name))
            .collect();
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
        let role = if self.sharded() {
            Role::Cluster
        } else {
            Role::Broadcast
        };
        Some((ns, role))
    }

    /// Whether this bridge wants to stay subscribed to `channel`: a fixed channel, or a room
    /// channel it has not given up.
    pub(super) fn wants(&self, channel: &str) -> bool {
        self.routes.contains_key(channel)
            || self
                .rooms
                .as_ref()
                .is_some_and(|rooms| rooms.namespace_of(channel).is_some())
    }

    /// A shard's rooms gained and lost.
    pub(super) fn on_rooms(&mut self, shard: usize, changes: RoomChanges) {
        let Some(ns) = self.ns_index(&changes.nsp) else {
            return;
        };
        if self.rooms.is_none() {
            return;
        }
        // Node's `dynamic` sharded adapter gives socket ids no channel.
        let updates: Vec<(String, bool)> = changes
            .rooms
            .iter()
            .filter(|(room, _)| self.room_has_channel(room))
            .map(|(room, held)| (self.namespaces[ns].channels.room(room), *held))
            .collect();
        let Some(subs) = &mut self.rooms else {
            return;
        };
        for (channel, held) in updates {
            subs.update(&channel, ns, shard, held);
        }
        self.confirmations.wait((ns, shard), changes.seq);
    }

    /// Tells each shard which of its reports Redis has confirmed.
    fn confirm_rooms(&self, reports: impl IntoIterator<Item = ((usize, usize), u64)>) {
        for ((ns, shard), seq) in reports {
            let nsp = self.namespaces[ns].name.clone();
            self.reply_to_shard(shard, Reply::RoomsSubscribed { nsp, seq });
        }
    }

    /// The batch in flight was confirmed: so are the reports it took; then the next batch.
    pub(super) fn room_batch_done(&mut self) {
        let done = std::mem::take(&mut self.confirmations.in_flight);
        self.confirm_rooms(done);
        self.apply_room_changes();
    }

    /// The connection was lost with a batch in flight: its reports wait for the next
    /// connection.
    pub(super) fn room_batch_lost(&mut self) {
        for (key, seq) in std::mem::take(&mut self.confirmations.in_flight) {
            self.confirmations.wait(key, seq);
        }
    }

    /// Between connection attempts: every report so far is answered, since the next
    /// connection subscribes the whole set before it receives anything.
    pub(super) fn confirm_rooms_while_away(&mut self) {
        self.room_batch_lost();
        let waiting = std::mem::take(&mut self.confirmations.waiting);
        self.confirm_rooms(waiting);
    }

    /// Sends the room channels' changes to Redis, unless a batch is in flight (then they go
    /// when it is confirmed) or Redis is away (then they go with the next connection).
    pub(super) fn apply_room_changes(&mut self) {
        if self.subscribing.is_some() {
            return;
        }
        let (Some(subs), Some(subscriber)) = (&mut self.rooms, &self.subscriber) else {
            return;
        };
        let changes = subs.take_changes();
        let subscriber = subscriber.clone();
        let subscribed = subs.subscribed();
        let reports: Vec<_> = self.confirmations.waiting.drain().collect();
        if changes.is_empty() {
            // Redis already has what these reports need.
            return self.confirm_rooms(reports);
        }
        self.confirmations.in_flight = reports;
        self.metrics.bridge().set_room_channels(subscribed);
        self.subscribing = Some(Box::pin(async move {
            let send = subscriber.change(changes);
            tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, send)
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out")))?
        }));
    }
}
