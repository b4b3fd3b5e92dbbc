//! The link of one Socket.IO endpoint on one shard to the rest of the cluster: the other
//! shards over the bus, and the other machines through the Redis bridge.

use crate::bus::cluster::{BridgeMsg, Origin, SioMsg};
use crate::bus::{Bus, ShardMsg, ToBridge};
use crate::metrics::{Metrics, ShardMetrics};

/// Where this endpoint's bus messages go, and where they come from.
pub(crate) struct ClusterLink {
    bus: Bus,
    /// This shard's index.
    shard: usize,
    /// This endpoint's index: the other shards deliver our messages to the same endpoint.
    endpoint: usize,
    /// Whether the Redis bridge serves this endpoint.
    bridged: bool,
}

impl ClusterLink {
    /// The link of endpoint `endpoint` on shard `shard`; `bridged` when the Redis bridge
    /// serves this endpoint.
    pub(crate) fn new(bus: Bus, shard: usize, endpoint: usize, bridged: bool) -> Self {
        ClusterLink {
            bus,
            shard,
            endpoint,
            bridged,
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

    /// Sends `msg` to this endpoint on shard `to`; false when it was refused (counted and
    /// logged by the bus).
    pub(crate) fn send(&self, to: usize, msg: SioMsg) -> bool {
        let msg = ShardMsg::SocketIo {
            from: Origin::Shard(self.shard),
            endpoint: self.endpoint,
            msg,
        };
        self.bus.send(self.shard, to, msg).is_ok()
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
