//! The in-process bus between shards: one bounded inbox per shard, wired once at startup.
//!
//! Overflow policy: a full inbox refuses the message at once (`try_send`); the sender counts it
//! in its shard's `bus_overflows` metric and logs it. Sending never blocks a shard.
//! Every message carries its origin shard; receivers act locally and never re-forward.

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
                metrics,
            },
            receivers,
        )
    }

    pub fn shards(&self) -> usize {
        self.inboxes.len()
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
}
