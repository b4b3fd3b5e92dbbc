//! A shard's outgoing bus messages, gathered per target shard while the shard's loop turns and
//! sent when the turn ends: every message one shard queues for another within a turn (the
//! broadcasts of a burst of publishes, a batch of API emits, the replies to them) travels as
//! one parcel, one push on the target's channel and at most one wake-up of its thread.
//!
//! A message's place in the target inbox is reserved when it is queued, so a full inbox still
//! refuses it at once (counted, logged, handed back), as [`Bus::send`] does. The turn's end is
//! the outbox task ([`Outbox::run`]): woken by the turn's first message, it runs after the tasks
//! already ready on the shard (the other reads, the inbox), then sends everything queued.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::sync::Notify;

use super::inbox::Parcel;
use super::{Bus, Refused, ShardMsg};

/// Messages per target whose room a queue keeps between turns.
const KEPT: usize = 64;

/// One shard's messages to the others, waiting for the end of the turn.
pub(crate) struct Outbox {
    bus: Bus,
    shard: usize,
    /// Per target shard, in order.
    pending: RefCell<Vec<Vec<ShardMsg>>>,
    /// Something is queued and the task has been told.
    due: Cell<bool>,
    wake: Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("shard", &self.shard)
            .field("due", &self.due.get())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of shard `shard`.
    pub(crate) fn new(bus: Bus, shard: usize) -> Self {
        let pending = (0..bus.shards()).map(|_| Vec::new()).collect();
        Outbox {
            bus,
            shard,
            pending: RefCell::new(pending),
            due: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// Queues `msg` for shard `to`, to leave at the end of this turn. A full inbox (or a stopped
    /// shard) refuses it now: counted in this shard's `bus_overflows`, logged, handed back.
    pub(crate) fn send(&self, to: usize, msg: ShardMsg) -> Result<(), Refused> {
        if !self.bus.reserve(self.shard, to) {
            return Err(Refused(msg));
        }
        self.pending.borrow_mut()[to].push(msg);
        if !self.due.replace(true) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Sends what was queued: one parcel per target shard.
    pub(crate) fn flush(&self) {
        self.due.set(false);
        let mut pending = self.pending.borrow_mut();
        for (to, msgs) in pending.iter_mut().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            // The vector keeps its capacity for the next turn (up to a point: a burst's is
            // given back); the rest moves out.
            let rest = msgs.split_off(1);
            if let Some(first) = msgs.pop() {
                self.bus.post(self.shard, to, Parcel { first, rest });
            }
            msgs.shrink_to(KEPT);
        }
    }

    /// The end of every turn: sends what the turn queued. Runs for the shard's life.
    pub(crate) async fn run(self: Rc<Self>) {
        loop {
            self.wake.notified().await;
            self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bus::tests::{command, nsp_of};
    use crate::metrics::Metrics;

    fn nsps(msgs: &[ShardMsg]) -> Vec<&str> {
        msgs.iter().map(nsp_of).collect()
    }

    #[test]
    fn a_turns_messages_travel_as_one_parcel_per_target_in_order() {
        let metrics = Arc::new(Metrics::new(3));
        let (bus, mut inboxes) = Bus::new(3, 8, metrics.clone());
        let outbox = Outbox::new(bus, 0);
        for n in 0..5 {
            outbox.send(1, command(n)).expect("room in the inbox");
        }
        outbox.send(2, command(9)).expect("room in the inbox");
        let mut got = Vec::new();
        assert!(
            inboxes[1].try_recv(&mut got).is_none(),
            "nothing leaves before the turn ends"
        );
        outbox.flush();
        let taken = inboxes[1].try_recv(&mut got).expect("a parcel");
        assert_eq!((taken.messages, taken.parcels), (5, 1));
        assert_eq!(nsps(&got), ["0", "1", "2", "3", "4"]);
        got.clear();
        let taken = inboxes[2].try_recv(&mut got).expect("a parcel");
        assert_eq!((taken.messages, taken.parcels), (1, 1));
        outbox.flush();
        assert!(
            inboxes[1].try_recv(&mut got).is_none(),
            "an empty turn sends nothing"
        );
    }

    #[test]
    fn places_are_reserved_when_queued_and_freed_when_taken() {
        let metrics = Arc::new(Metrics::new(2));
        let (bus, mut inboxes) = Bus::new(2, 3, metrics.clone());
        let outbox = Outbox::new(bus, 0);
        for n in 0..3 {
            outbox.send(1, command(n)).expect("room in the inbox");
        }
        let Err(Refused(refused)) = outbox.send(1, command(3)) else {
            panic!("the fourth message must be refused while three wait");
        };
        assert_eq!(nsps(&[refused]), ["3"]);
        assert_eq!(metrics.shards()[0].bus_overflows(), 1);
        outbox.flush();
        let mut got = Vec::new();
        inboxes[1].try_recv(&mut got).expect("the parcel");
        outbox
            .send(1, command(4))
            .expect("taking the parcel made room");
    }

    #[test]
    fn a_stopped_shard_refuses_and_frees_nothing_twice() {
        let metrics = Arc::new(Metrics::new(2));
        let (bus, mut inboxes) = Bus::new(2, 2, metrics.clone());
        let outbox = Outbox::new(bus, 0);
        outbox.send(1, command(0)).expect("room in the inbox");
        drop(inboxes.pop());
        outbox.flush(); // the parcel is dropped with the inbox gone
        assert!(
            outbox.send(1, command(1)).is_err(),
            "a stopped shard refuses"
        );
    }
}
