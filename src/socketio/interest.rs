//! The rooms a shard holds, told to the Redis bridge when it subscribes per room
//! (`--redis-subscribe rooms`). A room that gains its first or loses its last member on this
//! shard is noted; the notes of a namespace go to the bridge as one `BridgeMsg::Rooms` once the
//! shard's current turn is over (every task that was ready has run), so a burst of joins costs
//! one message, never one per join. Each note is the room's state (held or not), so the last
//! note of a room wins and nothing depends on order. A report the bridge's full queue refuses
//! is kept (newer notes win) and sent again shortly: a room's subscription is never lost.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::link::ClusterLink;
use super::NsShard;
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
        let rooms: Vec<(Rc<str>, bool)> = {
            let mut notes = notes.borrow_mut();
            if notes.rooms.is_empty() {
                notes.scheduled = false;
                return;
            }
            notes.rooms.drain().collect()
        };
        let msg = BridgeMsg::Rooms(Box::new(RoomChanges {
            nsp: nsp.clone(),
            rooms: rooms.iter().map(|(r, h)| (r.to_string(), *h)).collect(),
        }));
        if link.send_to_bridge(msg) {
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
    /// Adds socket `id` to `room`; false if it was already there.
    pub(super) fn join_room(&self, id: Sid, session: &Rc<Session>, room: &str) -> bool {
        let mut rooms = self.rooms.borrow_mut();
        let first = self.reports.on && !rooms.has_room(room);
        let joined = rooms.join(id, session, room);
        drop(rooms);
        if joined && first {
            self.reports
                .note(&self.name, &self.link, Rc::from(room), true);
        }
        joined
    }

    /// Removes socket `id` from `room`; false if it was not there.
    pub(super) fn leave_room(&self, id: Sid, room: &str) -> bool {
        let mut rooms = self.rooms.borrow_mut();
        let left = rooms.leave(id, room);
        let last = left && self.reports.on && !rooms.has_room(room);
        drop(rooms);
        if last {
            self.reports
                .note(&self.name, &self.link, Rc::from(room), false);
        }
        left
    }

    /// Removes socket `id` from every room (it left the namespace).
    pub(super) fn leave_all_rooms(&self, id: Sid) {
        let mut rooms = self.rooms.borrow_mut();
        if !self.reports.on {
            rooms.leave_all(id);
            return;
        }
        let before: Vec<Rc<str>> = rooms.rooms_of(id).to_vec();
        rooms.leave_all(id);
        let emptied: Vec<Rc<str>> = before.into_iter().filter(|r| !rooms.has_room(r)).collect();
        drop(rooms);
        for room in emptied {
            self.reports.note(&self.name, &self.link, room, false);
        }
    }
}
