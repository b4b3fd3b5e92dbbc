//! The room channels this machine needs (`--redis-subscribe rooms`, or the sharded mode's
//! dynamic subscriptions), and the changes to send Redis. Pure: no Redis, no runtime.
//!
//! Each shard tells the bridge, in batches, which rooms gained their first or lost their last
//! member on that shard (`BridgeMsg::Rooms`). Here each room channel keeps the set of shards
//! holding a member: the machine wants the channel while that set is not empty. What Redis was
//! last told is kept beside it, so [`RoomSubscriptions::take_changes`] returns only the
//! channels whose wish changed since, each once, however often it flipped in between: one
//! SUBSCRIBE and one UNSUBSCRIBE per batch, never one per join. After a reconnection,
//! [`RoomSubscriptions::resubscribe_all`] gives the whole set again.
//!
//! Nothing here knows the command: with `--redis-subscribe rooms` the bridge sends SUBSCRIBE /
//! UNSUBSCRIBE, in the sharded mode's dynamic subscriptions SSUBSCRIBE / SUNSUBSCRIBE, from the
//! same changes (`links::Subscriber`).

use std::collections::HashMap;

/// A set of shard indexes (at most [`crate::config::MAX_SHARDS`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Shards([u64; 4]);

impl Shards {
    fn set(&mut self, shard: usize, held: bool) {
        let (word, bit) = (shard / 64 % 4, shard % 64);
        if held {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
    }

    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

#[derive(Debug)]
struct Entry {
    /// The namespace (the bridge's index) the channel belongs to.
    ns: usize,
    shards: Shards,
    /// Redis was told to subscribe (and not since to unsubscribe).
    subscribed: bool,
    /// Listed in `dirty`.
    dirty: bool,
}

/// The room channels wanted, and those Redis was told of.
#[derive(Debug, Default)]
pub(crate) struct RoomSubscriptions {
    channels: HashMap<String, Entry>,
    /// Channels whose wish may differ from what Redis was told.
    dirty: Vec<String>,
    /// Channels Redis was told to subscribe.
    subscribed: usize,
}

/// What to tell Redis: channels to subscribe to and to unsubscribe from.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) subscribe: Vec<String>,
    pub(crate) unsubscribe: Vec<String>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

impl RoomSubscriptions {
    /// Shard `shard` holds (`held`) or no longer holds a member of the room whose channel is
    /// `channel`, in namespace `ns`. Repeating a report changes nothing.
    pub(crate) fn update(&mut self, channel: &str, ns: usize, shard: usize, held: bool) {
        let entry = match self.channels.get_mut(channel) {
            Some(entry) => entry,
            None if !held => return,
            None => self.channels.entry(channel.to_owned()).or_insert(Entry {
                ns,
                shards: Shards::default(),
                subscribed: false,
                dirty: false,
            }),
        };
        entry.shards.set(shard, held);
        if !entry.dirty && entry.shards.is_empty() == entry.subscribed {
            entry.dirty = true;
            self.dirty.push(channel.to_owned());
        }
    }

    /// The changes since the last call (or the last [`Self::resubscribe_all`]), counted as
    /// told: the caller sends them, or reconnects and resubscribes everything.
    pub(crate) fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        for channel in self.dirty.drain(..) {
            let Some(entry) = self.channels.get_mut(&channel) else {
                continue;
            };
            entry.dirty = false;
            let wanted = !entry.shards.is_empty();
            if wanted == entry.subscribed {
                // Flipped and back within the batch: nothing to tell.
            } else if wanted {
                entry.subscribed = true;
                self.subscribed += 1;
                changes.subscribe.push(channel);
                continue;
            } else {
                entry.subscribed = false;
                self.subscribed -= 1;
                changes.unsubscribe.push(channel.clone());
            }
            if !wanted {
                self.channels.remove(&channel);
            }
        }
        changes
    }

    /// Every channel wanted now, for a fresh subscription connection: all count as told, and
    /// nothing is left to change.
    pub(crate) fn resubscribe_all(&mut self) -> Vec<String> {
        self.dirty.clear();
        self.channels.retain(|_, e| !e.shards.is_empty());
        for entry in self.channels.values_mut() {
            entry.subscribed = true;
            entry.dirty = false;
        }
        self.subscribed = self.channels.len();
        self.channels.keys().cloned().collect()
    }

    /// The namespace of a channel this machine wants or was subscribed to.
    pub(crate) fn namespace_of(&self, channel: &str) -> Option<usize> {
        self.channels.get(channel).map(|e| e.ns)
    }

    /// How many room channels Redis was told to subscribe.
    pub(crate) fn subscribed(&self) -> usize {
        self.subscribed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_channel_is_wanted_while_any_shard_holds_a_member() {
        let mut subs = RoomSubscriptions::default();
        subs.update("p#/#a#", 0, 0, true);
        subs.update("p#/#a#", 0, 3, true);
        subs.update("p#/#b#", 0, 200, true);
        let first = subs.take_changes();
        assert_eq!(sorted(first.subscribe), ["p#/#a#", "p#/#b#"]);
        assert!(first.unsubscribe.is_empty());
        assert_eq!(subs.subscribed(), 2);
        // One of two shards lets go: still wanted.
        subs.update("p#/#a#", 0, 0, false);
        assert!(subs.take_changes().is_empty());
        subs.update("p#/#a#", 0, 3, false);
        let gone = subs.take_changes();
        assert_eq!(gone.unsubscribe, ["p#/#a#"]);
        assert_eq!(
            subs.namespace_of("p#/#a#"),
            None,
            "forgotten once unsubscribed"
        );
        assert_eq!(subs.namespace_of("p#/#b#"), Some(0));
        assert_eq!(subs.subscribed(), 1);
    }

    #[test]
    fn a_batch_tells_redis_the_net_change_once() {
        let mut subs = RoomSubscriptions::default();
        // Gained and lost within one batch: Redis hears nothing.
        subs.update("c#", 1, 0, true);
        subs.update("c#", 1, 0, false);
        subs.update("c#", 1, 0, true);
        subs.update("c#", 1, 0, false);
        assert!(subs.take_changes().is_empty());
        // Subscribed, then lost and regained within a batch: nothing either.
        subs.update("c#", 1, 0, true);
        assert_eq!(subs.take_changes().subscribe, ["c#"]);
        subs.update("c#", 1, 0, false);
        subs.update("c#", 1, 0, true);
        assert!(subs.take_changes().is_empty());
        assert_eq!(subs.subscribed(), 1);
    }

    #[test]
    fn repeated_or_unknown_reports_change_nothing() {
        let mut subs = RoomSubscriptions::default();
        subs.update("x#", 0, 1, false);
        assert!(subs.take_changes().is_empty());
        subs.update("x#", 0, 1, true);
        subs.update("x#", 0, 1, true);
        assert_eq!(subs.take_changes().subscribe, ["x#"]);
        subs.update("x#", 0, 1, true);
        assert!(subs.take_changes().is_empty());
    }

    #[test]
    fn a_reconnection_resubscribes_what_is_wanted_now() {
        let mut subs = RoomSubscriptions::default();
        subs.update("a#", 0, 0, true);
        subs.update("b#", 0, 1, true);
        let _ = subs.take_changes();
        // While Redis is away: b is lost, c gained; nothing was told.
        subs.update("b#", 0, 1, false);
        subs.update("c#", 0, 0, true);
        assert_eq!(sorted(subs.resubscribe_all()), ["a#", "c#"]);
        assert!(
            subs.take_changes().is_empty(),
            "the fresh connection has all"
        );
        assert_eq!(subs.subscribed(), 2);
        assert_eq!(subs.namespace_of("b#"), None);
    }

    #[test]
    fn shard_sets_hold_every_shard_index() {
        let mut shards = Shards::default();
        for s in [0, 63, 64, 127, 128, 254] {
            shards.set(s, true);
        }
        for s in [0, 63, 64, 127, 128] {
            shards.set(s, false);
            assert!(!shards.is_empty());
        }
        shards.set(254, false);
        assert!(shards.is_empty());
    }
}
