//! The room channels of the sharded adapter's dynamic modes (`--redis-subscription-mode
//! dynamic|dynamic-private`): a server subscribes to `prefix#nsp#room#` for each room with
//! members on it, because Node's sharded servers publish a broadcast to one room there.
//!
//! The set is computed from the rooms the shards hold: every `REDIS_ROOM_SYNC_MS` the bridge
//! asks them (the question an ALL_ROOMS request asks) and subscribes and unsubscribes the
//! difference, one batch per namespace. This is the one place that decides which room channels
//! this machine needs; a room's first member waits for the next sync before broadcasts from
//! other servers to that room reach it here.

use std::collections::HashSet;

use super::*;

/// The room channels subscribed (or to subscribe on connect), per namespace.
#[derive(Debug, Default)]
pub(super) struct RoomChannels {
    by_ns: HashMap<usize, HashSet<String>>,
}

/// What to change to reach a wanted set of channels.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) subscribe: Vec<String>,
    pub(super) unsubscribe: Vec<String>,
}

impl RoomChannels {
    /// Every room channel, for a new connection's subscriptions.
    pub(super) fn channels(&self) -> impl Iterator<Item = &str> {
        self.by_ns.values().flatten().map(String::as_str)
    }

    /// Whether `channel` is a room channel subscribed (or to subscribe).
    pub(super) fn contains(&self, channel: &str) -> bool {
        self.by_ns
            .values()
            .any(|channels| channels.contains(channel))
    }

    /// The change from the channels of namespace `ns` to `wanted`; not applied.
    pub(super) fn change(&self, ns: usize, wanted: &HashSet<String>) -> Change {
        let empty = HashSet::new();
        let have = self.by_ns.get(&ns).unwrap_or(&empty);
        let mut subscribe: Vec<String> = wanted.difference(have).cloned().collect();
        let mut unsubscribe: Vec<String> = have.difference(wanted).cloned().collect();
        subscribe.sort_unstable();
        unsubscribe.sort_unstable();
        Change {
            subscribe,
            unsubscribe,
        }
    }

    /// Records `wanted` as the channels of namespace `ns`.
    pub(super) fn set(&mut self, ns: usize, wanted: HashSet<String>) {
        self.by_ns.insert(ns, wanted);
    }
}

impl Bridge {
    /// Asks the shards for their rooms, when the room channels follow them and Redis is
    /// connected (a new connection subscribes to the channels recorded here).
    pub(super) fn sync_rooms(&mut self) {
        if !self.dynamic_rooms() || self.out.is_none() {
            return;
        }
        for ns in 0..self.namespaces.len() {
            self.ask_shards(ns, String::new(), InboundKind::RoomSync, Query::AllRooms);
        }
    }

    /// The shards' rooms of namespace `ns`: subscribe to the channels of new rooms, unsubscribe
    /// from those of rooms gone.
    pub(super) fn rooms_synced(&mut self, ns: usize, rooms: Vec<String>) {
        if self.out.is_none() {
            return;
        }
        let channels = &self.namespaces[ns].channels;
        let wanted: HashSet<String> = rooms
            .iter()
            .filter(|room| self.room_has_channel(room))
            .map(|room| channels.room(room))
            .collect();
        let change = self.rooms.change(ns, &wanted);
        if change == Change::default() {
            return;
        }
        // Recorded only once the publisher took the change: it is retried at the next sync.
        let sent = (change.subscribe.is_empty()
            || self.send_out(Outgoing::Subscribe(change.subscribe)))
            && (change.unsubscribe.is_empty()
                || self.send_out(Outgoing::Unsubscribe(change.unsubscribe)));
        if sent {
            self.rooms.set(ns, wanted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_change_is_the_difference_per_namespace() {
        let mut rooms = RoomChannels::default();
        let change = rooms.change(0, &set(&["a", "b"]));
        assert_eq!(change.subscribe, vec!["a", "b"]);
        assert!(change.unsubscribe.is_empty());
        rooms.set(0, set(&["a", "b"]));
        rooms.set(1, set(&["x"]));
        let change = rooms.change(0, &set(&["b", "c"]));
        assert_eq!(change.subscribe, vec!["c"]);
        assert_eq!(change.unsubscribe, vec!["a"]);
        assert_eq!(rooms.change(1, &set(&["x"])), Change::default());
        let mut all: Vec<&str> = rooms.channels().collect();
        all.sort_unstable();
        assert_eq!(all, vec!["a", "b", "x"]);
    }
}
