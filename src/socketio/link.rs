//! The link of one Socket.IO endpoint on one shard to the rest of the cluster: the other
//! shards over the bus, and the other machines through the Redis bridge; and this shard's
//! marks in the interest table, which say where a broadcast to a room has members.

use crate::bus::cluster::{BridgeMsg, Origin, SioMsg};
use crate::bus::interest::ShardSet;
use crate::bus::{Bus, Port, ShardMsg, ToBridge};
use crate::engineio::Sid;
use crate::metrics::{Metrics, ShardMetrics};

/// The shard owning the socket whose id is `room`, if `room` is named like a socket id (every
/// socket is in the room of its own id; those rooms are found by name, not in the table).
pub(crate) fn owner(room: &str) -> Option<usize> {
    Sid::parse(room).map(|sid| sid.shard())
}

/// Where this endpoint's bus messages go, and where they come from.
pub(crate) struct ClusterLink {
    bus: Bus,
    /// This shard's index.
    shard: usize,
    /// This endpoint's index: the other shards deliver our messages to the same endpoint.
    endpoint: usize,
    /// Whether the Redis bridge serves this endpoint.
    bridged: bool,
    /// This shard's outbox and marks in the interest table (shared by its endpoints).
    port: Port,
}

impl ClusterLink {
    /// The link of endpoint `endpoint` on shard `shard`; `bridged` when the Redis bridge
    /// serves this endpoint; `port`: the shard's outbox and marks in the interest table.
    pub(crate) fn new(bus: Bus, shard: usize, endpoint: usize, bridged: bool, port: Port) -> Self {
        ClusterLink {
            bus,
            shard,
            endpoint,
            bridged,
            port,
        }
    }

    /// This shard's index.
    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    /// The server's counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        self.bus.metrics()
    }

    /// This shard's counters.
    pub(crate) fn shard_metrics(&self) -> &ShardMetrics {
        &self.metrics().shards()[self.shard]
    }

    /// The other shards of this process.
    pub(crate) fn other_shards(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.bus.shards()).filter(move |&s| s != self.shard)
    }

    /// The other shards a broadcast to `rooms` of `nsp` must reach: every other shard for the
    /// whole namespace (no rooms), else those with a member in one of the rooms.
    pub(crate) fn broadcast_targets(&self, nsp: &str, rooms: &[String]) -> ShardSet {
        let mut set = self
            .port
            .interest
            .table()
            .route(self.endpoint, nsp, rooms, owner);
        set.remove(self.shard);
        set
    }

    /// Room `room` of `nsp` got its first member on this shard (`true`) or lost its last
    /// (`false`): this shard's mark in the interest table follows.
    pub(crate) fn room_changed(&self, nsp: &str, room: &str, exists: bool) {
        if !self.port.interest.tracks(room, owner) {
            return;
        }
        let slot = self.port.interest.table().slot(self.endpoint, nsp, room);
        if exists {
            self.port.interest.gained(slot);
        } else {
            self.port.interest.lost(slot);
        }
    }

    /// Sends `msg` to this endpoint on shard `to`, at the end of this turn with the other
    /// messages of the turn for that shard; false when it was refused (counted and logged by
    /// the bus).
    pub(crate) fn send(&self, to: usize, msg: SioMsg) -> bool {
        let msg = ShardMsg::SocketIo {
            from: Origin::Shard(self.shard),
            endpoint: self.endpoint,
            msg,
        };
        self.port.outbox.send(to, msg).is_ok()
    }

    /// Whether the Redis bridge serves this endpoint.
    pub(crate) fn has_bridge(&self) -> bool {
        self.bridged && self.bus.has_bridge()
    }

    /// Whether the bridge wants to hear of the rooms this shard gains and loses.
    pub(crate) fn reports_room_interest(&self) -> bool {
        self.has_bridge() && self.bus.reports_room_interest()
    }

    /// Queues `msg` for the Redis bridge; false when it was not queued (no bridge, or its
    /// queue is full: counted and logged).
    pub(crate) fn send_to_bridge(&self, msg: BridgeMsg) -> bool {
        self.has_bridge()
            && self.bus.send_to_bridge(ToBridge {
                from: self.shard,
                msg,
            })
    }
}
