//! The in-process bus: one bounded inbox per shard, wired once at startup, and, when the Redis
//! bridge runs, one bounded queue from the shards to the bridge. Typed: shards and the bridge
//! exchange [`ShardMsg`] and [`ToBridge`], whose Socket.IO content ([`cluster`]) both
//! `socketio/` and `redis_bridge/` build on.
//!
//! Overflow policy: a full inbox refuses the message at once (`try_send`); the sender counts it
//! in its shard's `bus_overflows` metric and logs it. Sending never blocks a shard. The same
//! holds for the bridge queue (counted in the bridge's `dropped`), and for the bridge sending
//! into a full shard inbox (also the bridge's `dropped`): the bridge never waits on a shard.
//! Every message carries its origin (a shard index, or the bridge); receivers act locally and
//! never re-forward.

pub(crate) mod cluster;
mod message;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metrics::Metrics;

pub(crate) use message::{Handoff, ShardMsg, ToBridge};

/// The senders to every shard's inbox, and to the bridge. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Bus {
    inboxes: Arc<[mpsc::Sender<ShardMsg>]>,
    bridge: Option<mpsc::Sender<ToBridge>>,
    metrics: Arc<Metrics>,
    /// The bridge subscribes per room: shards report the rooms they gain and lose.
    room_interest: bool,
}

/// Why a bus message was not delivered: the target inbox was full (counted and logged), or the
/// target shard has stopped. The message is handed back.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) ShardMsg);

impl Bus {
    /// A bus for `shards` shards and the receiving end of each inbox, in shard order.
    pub(crate) fn new(
        shards: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Bus, Vec<mpsc::Receiver<ShardMsg>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::channel(capacity)).unzip();
        (
            Bus {
                inboxes: senders.into(),
                bridge: None,
                metrics,
                room_interest: false,
            },
            receivers,
        )
    }

    /// The server's counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many shards the bus connects.
    pub(crate) fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Adds the bounded queue to the Redis bridge; call before the bus is cloned to the shards.
    /// Returns the bridge's end.
    pub(crate) fn attach_bridge(&mut self, capacity: usize) -> mpsc::Receiver<ToBridge> {
        let (tx, rx) = mpsc::channel(capacity);
        self.bridge = Some(tx);
        rx
    }

    /// Asks the shards to report to the bridge each room that gains its first or loses its
    /// last member on the shard (`BridgeMsg::Rooms`); call before the bus is cloned to the
    /// shards.
    pub(crate) fn report_room_interest(&mut self) {
        self.room_interest = true;
    }

    /// Whether the shards report their rooms to the bridge.
    pub(crate) fn reports_room_interest(&self) -> bool {
        self.room_interest && self.bridge.is_some()
    }

    /// Whether a Redis bridge is attached.
    pub(crate) fn has_bridge(&self) -> bool {
        self.bridge.is_some()
    }

    /// Queues `msg` for the bridge without waiting. False when there is no bridge, it stopped,
    /// or its queue is full (counted in the bridge's `dropped` and logged): the message is lost
    /// and the caller must not wait for an answer.
    pub(crate) fn send_to_bridge(&self, msg: ToBridge) -> bool {
        let Some(bridge) = &self.bridge else {
            return false;
        };
        let from = msg.from;
        let full =
            |dropped| tracing::warn!(from, dropped, "Redis bridge queue full: message dropped");
        try_send(bridge, msg, || self.metrics.bridge().drop_one(), full).is_ok()
    }

    /// Sends `msg` from the bridge to shard `to`, without waiting. A full inbox drops it
    /// (counted in the bridge's `dropped`, logged).
    pub(crate) fn send_from_bridge(&self, to: usize, msg: ShardMsg) -> bool {
        let full =
            |dropped| tracing::warn!(to, dropped, "shard inbox full: message from Redis dropped");
        try_send(
            &self.inboxes[to],
            msg,
            || self.metrics.bridge().drop_one(),
            full,
        )
        .is_ok()
    }

    /// Sends `msg` from shard `from` to shard `to` without waiting. A full inbox refuses it
    /// (counted in `from`'s `bus_overflows`, logged) and hands it back.
    pub(crate) fn send(&self, from: usize, to: usize, msg: ShardMsg) -> Result<(), Refused> {
        let overflow = || self.metrics.shards()[from].bus_overflow();
        let full =
            |overflows| tracing::warn!(from, to, overflows, "bus inbox full: message dropped");
        try_send(&self.inboxes[to], msg, overflow, full).map_err(|e| Refused(e.into_inner()))
    }
}

/// `try_send`, with the overflow policy: a full queue is counted (`count` returns the total so
/// far) and logged (`warn`, at every power of two, so a flood does not flood the log).
fn try_send<M>(
    queue: &mpsc::Sender<M>,
    msg: M,
    count: impl FnOnce() -> u64,
    warn: impl FnOnce(u64),
) -> Result<(), mpsc::error::TrySendError<M>> {
    let result = queue.try_send(msg);
    if let Err(mpsc::error::TrySendError::Full(_)) = &result {
        let total = count();
        if total.is_power_of_two() {
            warn(total);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::cluster::{Command, Origin, SioMsg};
    use super::*;

    fn command(n: u32) -> ShardMsg {
        ShardMsg::SocketIo {
            from: Origin::Shard(0),
            endpoint: 0,
            msg: SioMsg::Command {
                nsp: n.to_string(),
                cmd: Box::new(Command::Disconnect {
                    opts: Default::default(),
                    close: false,
                }),
            },
        }
    }

    fn nsp_of(msg: &ShardMsg) -> &str {
        match msg {
            ShardMsg::SocketIo { msg, .. } => msg.nsp(),
            ShardMsg::Handoff(_) => panic!("a Socket.IO message was sent"),
        }
    }

    #[test]
    fn a_full_inbox_refuses_counts_and_never_blocks() {
        let metrics = Arc::new(Metrics::new(2));
        let (bus, mut inboxes) = Bus::new(2, 2, metrics.clone());
        assert!(bus.send(0, 1, command(1)).is_ok());
        assert!(bus.send(0, 1, command(2)).is_ok());
        let Err(Refused(refused)) = bus.send(0, 1, command(3)) else {
            panic!("the third message must be refused");
        };
        assert_eq!(nsp_of(&refused), "3", "the refused message is handed back");
        assert_eq!(metrics.shards()[0].bus_overflows(), 1);
        assert_eq!(metrics.shards()[1].bus_overflows(), 0);
        // Draining makes room again; order is kept.
        let inbox = &mut inboxes[1];
        for want in ["1", "2"] {
            let got = inbox.try_recv().expect("a queued message");
            assert_eq!(nsp_of(&got), want);
        }
        assert!(bus.send(0, 1, command(4)).is_ok());
    }

    #[test]
    fn the_bridge_queue_drops_when_full_and_never_blocks() {
        let metrics = Arc::new(Metrics::new(2));
        let (mut bus, mut inboxes) = Bus::new(2, 1, metrics.clone());
        let reply = |from, count| ToBridge {
            from,
            msg: super::cluster::BridgeMsg::Reply(Box::new(super::cluster::Reply::AckCount {
                nsp: "/".into(),
                id: 1,
                count,
            })),
        };
        assert!(!bus.send_to_bridge(reply(0, 1)), "no bridge attached");
        let mut queue = bus.attach_bridge(1);
        assert!(bus.send_to_bridge(reply(0, 1)));
        assert!(!bus.send_to_bridge(reply(1, 2)));
        assert_eq!(metrics.bridge().dropped(), 1);
        let got = queue.try_recv().expect("the first message is queued");
        let ToBridge {
            from: 0,
            msg: super::cluster::BridgeMsg::Reply(reply),
        } = got
        else {
            panic!("shard 0's reply is queued");
        };
        assert!(matches!(
            *reply,
            super::cluster::Reply::AckCount { count: 1, .. }
        ));
        // Bridge to shard: a full inbox drops too.
        assert!(bus.send_from_bridge(1, command(3)));
        assert!(!bus.send_from_bridge(1, command(4)));
        assert_eq!(metrics.bridge().dropped(), 2);
        assert_eq!(nsp_of(&inboxes[1].try_recv().expect("queued")), "3");
    }
}
