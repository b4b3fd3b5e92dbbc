//! The in-process bus: one bounded inbox per shard, wired once at startup, and, when the Redis
//! bridge runs, one bounded queue from the shards to the bridge. Typed: shards and the bridge
//! exchange [`ShardMsg`] and [`ToBridge`], whose Socket.IO content ([`cluster`]) both
//! `socketio/` and `redis_bridge/` build on.
//!
//! A shard's messages to the others leave at the end of its loop's turn ([`outbox`]): what it
//! queued for one shard within the turn travels as one parcel ([`inbox`]) and wakes that shard
//! once; the receiver takes its inbox in batches.
//!
//! Overflow policy: a full inbox refuses the message at once (its place is reserved when it is
//! queued); the sender counts it in its shard's `bus_overflows` metric and logs it. Sending never blocks a shard. The same
//! holds for the bridge queue (counted in the bridge's `dropped`), and for the bridge sending
//! into a full shard inbox (also the bridge's `dropped`): the bridge never waits on a shard.
//! Every message carries its origin (a shard index, or the bridge); receivers act locally and
//! never re-forward.
//!
//! Beside the queues, the bus holds the [`interest`] table: which shards hold members of which
//! rooms, so that a broadcast goes only where it has members.

pub(crate) mod cluster;
pub(crate) mod inbox;
pub(crate) mod interest;
mod message;
pub(crate) mod outbox;
mod port;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::defaults;
use crate::metrics::Metrics;
use inbox::{Inbox, InboxTx, Parcel};
use interest::Interest;

pub(crate) use message::{Handoff, ShardMsg, ToBridge};
pub(crate) use port::Port;

/// The senders to every shard's inbox, and to the bridge. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Bus {
    inboxes: Arc<[InboxTx]>,
    bridge: Option<mpsc::Sender<ToBridge>>,
    metrics: Arc<Metrics>,
    /// The bridge subscribes per room: shards report the rooms they gain and lose.
    room_interest: bool,
    /// Which shards hold members of which rooms (`interest`).
    interest: Arc<Interest>,
}

/// Why a bus message was not delivered: the target inbox was full (counted and logged), or the
/// target shard has stopped. The message is handed back.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) ShardMsg);

impl Bus {
    /// A bus for `shards` shards and the receiving end of each inbox, in shard order.
    pub(crate) fn new(shards: usize, capacity: usize, metrics: Arc<Metrics>) -> (Bus, Vec<Inbox>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| inbox::inbox(capacity)).unzip();
        (
            Bus {
                inboxes: senders.into(),
                bridge: None,
                metrics,
                room_interest: false,
                interest: Arc::new(Interest::new(shards, defaults::INTEREST_SLOTS)),
            },
            receivers,
        )
    }

    /// The server's counters.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The interest table: where a broadcast to a room has members.
    pub(crate) fn interest(&self) -> &Arc<Interest> {
        &self.interest
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
        match bridge.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.metrics.bridge().drop_one();
                if dropped.is_power_of_two() {
                    tracing::warn!(from, dropped, "Redis bridge queue full: message dropped");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends `msg` from the bridge to shard `to`, without waiting. A full inbox drops it
    /// (counted in the bridge's `dropped`, logged).
    pub(crate) fn send_from_bridge(&self, to: usize, msg: ShardMsg) -> bool {
        let inbox = &self.inboxes[to];
        if !inbox.reserve() {
            let dropped = self.metrics.bridge().drop_one();
            if dropped.is_power_of_two() {
                tracing::warn!(to, dropped, "shard inbox full: message from Redis dropped");
            }
            return false;
        }
        inbox.post(Parcel::one(msg)).is_ok()
    }

    /// Sends `msg` from shard `from` to shard `to` now, without waiting (shards send through
    /// their [`outbox::Outbox`], which this is the immediate form of). A full inbox refuses it
    /// (counted in `from`'s `bus_overflows`, logged) and hands it back.
    pub(crate) fn send(&self, from: usize, to: usize, msg: ShardMsg) -> Result<(), Refused> {
        if !self.reserve(from, to) {
            return Err(Refused(msg));
        }
        self.inboxes[to]
            .post(Parcel::one(msg))
            .map_err(|parcel| Refused(parcel.first))
    }

    /// Reserves a place for one message from shard `from` in shard `to`'s inbox; false when it
    /// is full (counted in `from`'s `bus_overflows`, logged) or `to` stopped.
    fn reserve(&self, from: usize, to: usize) -> bool {
        let inbox = &self.inboxes[to];
        if inbox.reserve() {
            return true;
        }
        if !inbox.is_closed() {
            let overflows = self.metrics.shards()[from].bus_overflow();
            if overflows.is_power_of_two() {
                tracing::warn!(from, to, overflows, "bus inbox full: message dropped");
            }
        }
        false
    }

    /// Sends a parcel of reserved messages from shard `from` to shard `to`; a stopped shard's
    /// are dropped (the server is shutting down).
    fn post(&self, from: usize, to: usize, parcel: Parcel) {
        if self.inboxes[to].post(parcel).is_err() {
            tracing::debug!(from, to, "bus messages for a stopped shard dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster::{Command, Origin, SioMsg};
    use super::*;

    /// A small Socket.IO message named by `n` (its namespace), for the bus's tests.
    pub(super) fn command(n: u32) -> ShardMsg {
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

    pub(super) fn nsp_of(msg: &ShardMsg) -> &str {
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
        let mut got = Vec::new();
        let taken = inboxes[1].try_recv(&mut got).expect("queued messages");
        assert_eq!(taken.messages, 2);
        assert_eq!(got.iter().map(nsp_of).collect::<Vec<_>>(), ["1", "2"]);
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
        let mut got = Vec::new();
        inboxes[1].try_recv(&mut got).expect("queued");
        assert_eq!(got.iter().map(nsp_of).collect::<Vec<_>>(), ["3"]);
    }
}
