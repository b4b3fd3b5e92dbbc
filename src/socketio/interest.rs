//! Every join and leave of a socket, and what a room appearing on or vanishing from this shard
//! changes elsewhere: this shard's mark in the bus's interest table (`bus::interest`, which
//! routes broadcasts to the shards with members), and the Redis bridge's room channels when it
//! subscribes per room (`--redis-subscribe rooms`). A room that gains its first or loses its last member on this
//! shard is noted; the notes of a namespace go to the bridge as one `BridgeMsg::Rooms` once the
//! shard's current turn is over (every task that was ready has run), so a burst of joins costs
//! one message, never one per join. Each note is the room's state (held or not), so the last
//! note of a room wins and nothing depends on order. A report the bridge's full queue refuses
//! is kept (newer notes win) and sent again shortly: a room's subscription is never lost.
//!
//! Reports are numbered; the bridge answers each with `Reply::RoomsSubscribed` once Redis has
//! confirmed what it needed, and [`NsShard::rooms_subscribed`] waits for the answer to the
//! last report that holds the joins made so far (the gateway acknowledges a join then).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::link::ClusterLink;
use super::{room, NsShard};
use crate::bus::cluster::{BridgeMsg, RoomChanges};
use crate::engineio::{Session, Sid};

/// How long a report the bridge's queue refused waits before it is sent again.
const RETRY: Duration = Duration::from_millis(10);

/// The notes of one namespace on one shard, waiting for the end of the turn.
#[derive(Default)]
struct Notes {
    rooms: HashMap<Rc<str>, bool>,
    /// A task will send them.
    scheduled: bool,
    /// The number of the last report sent, and of the last one the bridge confirmed.
    sent: u64,
    subscribed: u64,
    /// Who waits for the confirmation of a report, by its number.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
}

/// The room reports of one namespace on one shard; off unless the bridge asked for them.
pub(crate) struct RoomReports {
    on: bool,
    notes: Rc<RefCell<Notes>>,
}

impl RoomReports {
    pub(crate) fn new(link: &ClusterLink) -> Self {
        RoomReports {
            on: link.reports_room_interest(),
            notes: Rc::default(),
        }
    }

    /// Waits until the bridge has confirmed every note made so far: the report in the making
    /// when there are notes not yet sent, else the last one sent. `None` when there is nothing
    /// to wait for.
    fn wait(&self) -> Option<oneshot::Receiver<()>> {
        if !self.on {
            return None;
        }
        let mut notes = self.notes.borrow_mut();
        let report = notes.sent + u64::from(!notes.rooms.is_empty());
        if report <= notes.subscribed {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        notes.waiters.push((report, tx));
        Some(rx)
    }

    /// The bridge has confirmed the reports up to `seq`.
    pub(super) fn subscribed(&self, seq: u64) {
        let mut notes = self.notes.borrow_mut();
        notes.subscribed = notes.subscribed.max(seq);
        let done = notes.subscribed;
        let (ready, waiting) = std::mem::take(&mut notes.waiters)
            .into_iter()
            .partition(|(report, _)| *report <= done);
        notes.waiters = waiting;
        drop(notes);
        for (_, waiter) in ready {
            let _ = waiter.send(());
        }
    }

    /// Notes that this shard now holds (`held`) or no longer holds a member of `room`, and
    /// makes sure a task sends the notes at the end of the turn.
    fn note(&self, nsp: &str, link: &Rc<ClusterLink>, room: Rc<str>, held: bool) {
        let mut notes = self.notes.borrow_mut();
        notes.rooms.insert(room, held);
        if !notes.scheduled {
            notes.scheduled = true;
            tokio::task::spawn_local(send(nsp.to_owned(), link.clone(), self.notes.clone()));
        }
    }
}

/// Sends the notes once the turn is over, and again until the bridge's queue takes them.
async fn send(nsp: String, link: Rc<ClusterLink>, notes: Rc<RefCell<Notes>>) {
    tokio::task::yield_now().await;
    loop {
        let (rooms, seq): (Vec<(Rc<str>, bool)>, u64) = {
            let mut notes = notes.borrow_mut();
            if notes.rooms.is_empty() {
                notes.scheduled = false;
                return;
            }
            (notes.rooms.drain().collect(), notes.sent + 1)
        };
        let msg = BridgeMsg::Rooms(Box::new(RoomChanges {
            nsp: nsp.clone(),
            rooms: rooms.iter().map(|(r, h)| (r.to_string(), *h)).collect(),
            seq,
        }));
        if link.send_to_bridge(msg) {
            notes.borrow_mut().sent = seq;
            continue;
        }
        {
            let mut notes = notes.borrow_mut();
            for (room, held) in rooms {
                notes.rooms.entry(room).or_insert(held);
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Room membership changes, through which every join and leave of a socket goes so that the
/// bridge hears of rooms gained and lost.
impl NsShard {
    /// Completes once the bridge has subscribed the rooms of every join made on this shard so
    /// far (at once when it does not subscribe per room); never fails, and a confirmation
    /// that never comes (a shard inbox overflowed) leaves it pending: callers bound the wait.
    pub(super) fn rooms_subscribed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let wait = self.reports.wait();
        async move {
            if let Some(confirmed) = wait {
                let _ = confirmed.await;
            }
        }
    }

    /// Adds socket `id` to `room`; false if it was already there.
    pub(super) fn join_room(&self, id: Sid, session: &Rc<Session>, room: &str) -> bool {
        let change = self.rooms.borrow_mut().join(id, session, room);
        self.room_changed(room, change, true);
        change.changed()
    }

    /// Removes socket `id` from `room`; false if it was not there.
    pub(super) fn leave_room(&self, id: Sid, room: &str) -> bool {
        let change = self.rooms.borrow_mut().leave(id, room);
        self.room_changed(room, change, false);
        change.changed()
    }

    /// Removes socket `id` from every room (it left the namespace).
    pub(super) fn leave_all_rooms(&self, id: Sid) {
        let mut emptied = Vec::new();
        self.rooms
            .borrow_mut()
            .leave_all(id, |room| emptied.push(Rc::<str>::from(room)));
        for room in emptied {
            self.room_changed(&room, room::Change::Room, false);
        }
    }

    /// A join (`joined`) or a leave of `room` made `change`: when the room appeared on or
    /// vanished from this shard, this shard's mark in the interest table follows, and the
    /// bridge hears of it when it subscribes per room.
    fn room_changed(&self, room: &str, change: room::Change, joined: bool) {
        if change != room::Change::Room {
            return;
        }
        self.link.room_changed(&self.name, room, joined);
        if self.reports.on {
            self.reports
                .note(&self.name, &self.link, Rc::from(room), joined);
        }
    }
}
