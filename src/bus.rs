//! The in-process bus between shards: one bounded inbox per shard, wired once at startup, and,
//! when the Redis bridge runs, one bounded queue from the shards to the bridge.
//!
//! Overflow policy: a full inbox refuses the message at once (`try_send`); the sender counts it
//! in its shard's `bus_overflows` metric and logs it. Sending never blocks a shard. The same
//! holds for the bridge queue (counted in the bridge's `dropped`), and for the bridge sending
//! into a full shard inbox (also the bridge's `dropped`): the bridge never waits on a shard.
//! Every message carries its origin (a shard, or the bridge by its own variant); receivers act
//! locally and never re-forward.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::protocol::http::RequestHead;

pub use crate::config::DEFAULT_BUS_CAPACITY;

/// One message to a shard.
pub enum BusMsg {
    /// For the application of endpoint `endpoint` on the receiving shard; its type is the
    /// application's own business (Socket.IO broadcasts, ack counts, ...).
    App {
        origin: usize,
        endpoint: usize,
        msg: Box<dyn Any + Send>,
    },
    /// An HTTP request for a session the receiving shard owns, with its connection and the
    /// bytes already read past the head.
    Handoff(Box<Handoff>),
    /// From the Redis bridge, for the application of endpoint `endpoint` (its type is the
    /// application's business, as for `App`).
    FromBridge {
        endpoint: usize,
        msg: Box<dyn Any + Send>,
    },
}

/// One message from a shard's application to the Redis bridge.
pub struct ToBridge {
    pub origin: usize,
    pub endpoint: usize,
    pub msg: Box<dyn Any + Send>,
}

/// A connection handed to the shard that owns the session it asks for.
pub struct Handoff {
    pub endpoint: usize,
    pub stream: std::net::TcpStream,
    pub head: RequestHead,
    pub leftover: Vec<u8>,
    pub address: SocketAddr,
}

/// The senders to every shard's inbox. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inboxes: Arc<[mpsc::Sender<BusMsg>]>,
    bridge: Option<mpsc::Sender<ToBridge>>,
    metrics: Arc<Metrics>,
}

/// Why a bus message was not delivered: the target inbox was full (counted and logged), or the
/// target shard has stopped. The message is handed back.
pub struct Refused(pub BusMsg);

impl Bus {
    /// A bus for `shards` shards and the receiving end of each inbox, in shard order.
    pub fn new(
        shards: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Bus, Vec<mpsc::Receiver<BusMsg>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shards).map(|_| mpsc::channel(capacity)).unzip();
        (
            Bus {
                inboxes: senders.into(),
                bridge: None,
                metrics,
            },
            receivers,
        )
    }

    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Adds the bounded queue to the Redis bridge; call before the bus is cloned to the shards.
    /// Returns the bridge's end.
    pub fn attach_bridge(&mut self, capacity: usize) -> mpsc::Receiver<ToBridge> {
        let (tx, rx) = mpsc::channel(capacity);
        self.bridge = Some(tx);
        rx
    }

    /// Whether a Redis bridge is attached.
    pub fn has_bridge(&self) -> bool {
        self.bridge.is_some()
    }

    /// Queues `msg` for the bridge without waiting. False when there is no bridge, it stopped,
    /// or its queue is full (counted in the bridge's `dropped` and logged): the message is lost
    /// and the caller must not wait for an answer.
    pub fn to_bridge(&self, origin: usize, endpoint: usize, msg: Box<dyn Any + Send>) -> bool {
        let Some(bridge) = &self.bridge else {
            return false;
        };
        let msg = ToBridge {
            origin,
            endpoint,
            msg,
        };
        match bridge.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.metrics.bridge().drop_one();
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        from = origin,
                        dropped,
                        "Redis bridge queue full: message dropped"
                    );
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends `msg` from the bridge to the app of `endpoint` on shard `to`, without waiting.
    /// A full inbox drops it (counted in the bridge's `dropped`, logged).
    pub fn from_bridge(&self, to: usize, endpoint: usize, msg: Box<dyn Any + Send>) -> bool {
        match self.inboxes[to].try_send(BusMsg::FromBridge { endpoint, msg }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.metrics.bridge().drop_one();
                if dropped.is_power_of_two() {
                    tracing::warn!(to, dropped, "shard inbox full: message from Redis dropped");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends `msg` from shard `from` to shard `to` without waiting.
    pub fn send(&self, from: usize, to: usize, msg: BusMsg) -> Result<(), Refused> {
        match self.inboxes[to].try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let overflows = self.metrics.shards()[from].bus_overflow();
                if overflows.is_power_of_two() {
                    tracing::warn!(from, to, overflows, "bus inbox full: message dropped");
                }
                Err(Refused(msg))
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => Err(Refused(msg)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_msg(n: u32) -> BusMsg {
        BusMsg::App {
            origin: 0,
            endpoint: 0,
            msg: Box::new(n),
        }
    }

    #[test]
    fn a_full_inbox_refuses_counts_and_never_blocks() {
        let metrics = Arc::new(Metrics::new(2));
        let (bus, mut inboxes) = Bus::new(2, 2, metrics.clone());
        assert!(bus.send(0, 1, app_msg(1)).is_ok());
        assert!(bus.send(0, 1, app_msg(2)).is_ok());
        let Err(Refused(BusMsg::App { msg, .. })) = bus.send(0, 1, app_msg(3)) else {
            panic!("the third message must be refused");
        };
        assert_eq!(
            msg.downcast_ref::<u32>(),
            Some(&3),
            "the refused message is handed back"
        );
        assert_eq!(metrics.shards()[0].bus_overflows(), 1);
        assert_eq!(metrics.shards()[1].bus_overflows(), 0);
        // Draining makes room again; order is kept.
        let inbox = &mut inboxes[1];
        for want in [1u32, 2] {
            match inbox.try_recv() {
                Ok(BusMsg::App { msg, .. }) => assert_eq!(msg.downcast_ref::<u32>(), Some(&want)),
                _ => panic!("expected message {want}"),
            }
        }
        assert!(bus.send(0, 1, app_msg(4)).is_ok());
    }

    #[test]
    fn the_bridge_queue_drops_when_full_and_never_blocks() {
        let metrics = Arc::new(Metrics::new(2));
        let (mut bus, mut inboxes) = Bus::new(2, 1, metrics.clone());
        assert!(!bus.to_bridge(0, 0, Box::new(1u32)), "no bridge attached");
        let mut queue = bus.attach_bridge(1);
        assert!(bus.to_bridge(0, 0, Box::new(1u32)));
        assert!(!bus.to_bridge(1, 0, Box::new(2u32)));
        assert_eq!(metrics.bridge().dropped(), 1);
        let got = queue.try_recv().expect("the first message is queued");
        assert_eq!((got.origin, got.msg.downcast_ref::<u32>()), (0, Some(&1)));
        // Bridge to shard: a full inbox drops too.
        assert!(bus.from_bridge(1, 0, Box::new(3u32)));
        assert!(!bus.from_bridge(1, 0, Box::new(4u32)));
        assert_eq!(metrics.bridge().dropped(), 2);
        assert!(matches!(
            inboxes[1].try_recv(),
            Ok(BusMsg::FromBridge { endpoint: 0, .. })
        ));
    }
}
