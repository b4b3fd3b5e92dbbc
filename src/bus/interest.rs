//! Interest routing: which shards hold members of which rooms, so that a broadcast to a room
//! travels only to the shards where it has members.
//!
//! The map is a filter shared by every shard and the bridge: a fixed table of slots, a room's
//! slot a hash of (endpoint, namespace, room), and in each slot one bit per shard: "this shard
//! has at least one member in a room of this slot". A shard sets its bit when one of its rooms
//! in the slot gets its first local member, and clears it when the last such room loses its
//! last local member ([`LocalInterest`] keeps the per-slot count of its rooms); nothing
//! changes while members come and go in a room that stays non-empty, and a broadcast only
//! reads. Two rooms in one slot share its bits: a broadcast may then reach a shard with no
//! member (which delivers to nobody, as every shard did before this filter), never miss one.
//!
//! Each bit has one writer, its shard, which changes it with an atomic OR / AND-NOT at once, in
//! the join or leave that caused it: no bus message, no lock, no batching needed. Ordering: a
//! socket's join returns after its shard set the bit (SeqCst), and everything the shard does
//! next (answering the client's ack among it) comes after; a broadcast started anywhere after
//! that (on another shard, by a client who saw the ack, or by the bridge) reads the bit and
//! includes the shard. The broadcast itself then travels on the bus and is delivered to the
//! members the shard has when it arrives.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

/// Words of a [`ShardSet`]: 256 bits cover every shard index ([`crate::config::MAX_SHARDS`]).
const SET_WORDS: usize = 4;

/// A set of shard indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ShardSet([u64; SET_WORDS]);

impl ShardSet {
    /// Every shard of `shards`.
    pub(crate) fn all(shards: usize) -> Self {
        let mut set = ShardSet::default();
        (0..shards).for_each(|s| set.insert(s));
        set
    }

    pub(crate) fn insert(&mut self, shard: usize) {
        if let Some(word) = self.0.get_mut(shard / 64) {
            *word |= 1 << (shard % 64);
        }
    }

    pub(crate) fn remove(&mut self, shard: usize) {
        if let Some(word) = self.0.get_mut(shard / 64) {
            *word &= !(1 << (shard % 64));
        }
    }

    pub(crate) fn contains(&self, shard: usize) -> bool {
        self.0
            .get(shard / 64)
            .is_some_and(|word| word & (1 << (shard % 64)) != 0)
    }

    /// The shards in the set, in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..SET_WORDS * 64).filter(|&s| self.contains(s))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The slot of a room in an [`Interest`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot(usize);

/// The shared filter: per slot, one bit per shard. See the module's documentation.
#[derive(Debug)]
pub(crate) struct Interest {
    words: Box<[AtomicU64]>,
    /// Words per slot: one bit per shard.
    stride: usize,
    /// Slots - 1 (a power of two).
    mask: usize,
    shards: usize,
}

impl Interest {
    /// A table of `slots` slots (rounded up to a power of two) for `shards` shards, all clear.
    pub(crate) fn new(shards: usize, slots: usize) -> Self {
        let slots = slots.max(1).next_power_of_two();
        let stride = shards.div_ceil(64).max(1);
        Interest {
            words: (0..slots * stride).map(|_| AtomicU64::new(0)).collect(),
            stride,
            mask: slots - 1,
            shards,
        }
    }

    /// The slot of `room` in namespace `nsp` of endpoint `endpoint`. The hash has no secret
    /// key (every thread must agree on it): rooms a client names to collide only cost
    /// broadcasts to shards that deliver to nobody.
    pub(crate) fn slot(&self, endpoint: usize, nsp: &str, room: &str) -> Slot {
        let mut h = FxHasher::default();
        endpoint.hash(&mut h);
        nsp.hash(&mut h);
        room.hash(&mut h);
        let h = h.finish();
        // Fold the high half in: the low bits of the hash alone mix less.
        Slot(((h >> 32) ^ h) as usize & self.mask)
    }

    fn word(&self, slot: Slot, shard: usize) -> (&AtomicU64, u64) {
        (
            &self.words[slot.0 * self.stride + shard / 64],
            1 << (shard % 64),
        )
    }

    fn set(&self, slot: Slot, shard: usize) {
        let (word, bit) = self.word(slot, shard);
        word.fetch_or(bit, Ordering::SeqCst);
    }

    fn clear(&self, slot: Slot, shard: usize) {
        let (word, bit) = self.word(slot, shard);
        word.fetch_and(!bit, Ordering::SeqCst);
    }

    /// Adds the shards marked in `slot` to `set`.
    pub(crate) fn add_to(&self, slot: Slot, set: &mut ShardSet) {
        let base = slot.0 * self.stride;
        for (i, word) in self.words[base..base + self.stride].iter().enumerate() {
            set.0[i] |= word.load(Ordering::SeqCst);
        }
    }

    /// The shards a broadcast to `rooms` of `nsp` on `endpoint` must reach: every shard when
    /// `rooms` is empty (the whole namespace, except-only broadcasts included); else the shards
    /// marked for any of the rooms, and the owner of a room named like one of this process's
    /// socket ids (`owner`: sockets' own rooms are not in the table, see
    /// [`LocalInterest::tracks`]).
    pub(crate) fn route(
        &self,
        endpoint: usize,
        nsp: &str,
        rooms: &[String],
        owner: impl Fn(&str) -> Option<usize>,
    ) -> ShardSet {
        if rooms.is_empty() {
            return ShardSet::all(self.shards);
        }
        let mut set = ShardSet::default();
        for room in rooms {
            self.add_to(self.slot(endpoint, nsp, room), &mut set);
            if let Some(shard) = owner(room).filter(|&s| s < self.shards) {
                set.insert(shard);
            }
        }
        set
    }
}

/// One shard's side of the table: how many of its non-empty rooms fall in each slot, so that it
/// sets its bit on a slot's first room and clears it after the last. Owned by the shard's
/// thread, shared by its endpoints (their rooms share the table).
#[derive(Debug)]
pub(crate) struct LocalInterest {
    table: Arc<Interest>,
    shard: usize,
    rooms: RefCell<FxHashMap<Slot, u32>>,
}

impl LocalInterest {
    pub(crate) fn new(table: Arc<Interest>, shard: usize) -> Self {
        LocalInterest {
            table,
            shard,
            rooms: RefCell::default(),
        }
    }

    /// The shared table.
    pub(crate) fn table(&self) -> &Interest {
        &self.table
    }

    /// Whether a room named `room` goes in the table: all but the rooms named like this shard's
    /// socket ids (each socket's own room), which [`Interest::route`] finds by their name
    /// (`owner`). Thousands of sockets' own rooms would otherwise fill every slot.
    pub(crate) fn tracks(&self, room: &str, owner: impl Fn(&str) -> Option<usize>) -> bool {
        owner(room) != Some(self.shard)
    }

    /// A room in `slot` got its first member on this shard.
    pub(crate) fn gained(&self, slot: Slot) {
        let mut rooms = self.rooms.borrow_mut();
        let n = rooms.entry(slot).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.table.set(slot, self.shard);
        }
    }

    /// A room in `slot` lost its last member on this shard.
    pub(crate) fn lost(&self, slot: Slot) {
        let mut rooms = self.rooms.borrow_mut();
        let Some(n) = rooms.get_mut(&slot) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            rooms.remove(&slot);
            self.table.clear(slot, self.shard);
        }
    }

    /// Slots where this shard has rooms (for tests and the soak's checks).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.rooms.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_owner(_: &str) -> Option<usize> {
        None
    }

    fn rooms(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_room_routes_to_the_shards_with_members_only() {
        let table = Arc::new(Interest::new(4, 1 << 12));
        let shard1 = LocalInterest::new(table.clone(), 1);
        let shard3 = LocalInterest::new(table.clone(), 3);
        let a = table.slot(0, "/", "a");
        shard1.gained(a);
        shard3.gained(a);
        let set = table.route(0, "/", &rooms(&["a"]), no_owner);
        assert_eq!(set.iter().collect::<Vec<_>>(), [1, 3]);
        shard3.lost(a);
        let set = table.route(0, "/", &rooms(&["a"]), no_owner);
        assert_eq!(set.iter().collect::<Vec<_>>(), [1]);
        shard1.lost(a);
        assert_eq!(table.route(0, "/", &rooms(&["a"]), no_owner).len(), 0);
        assert_eq!(shard1.slots() + shard3.slots(), 0, "nothing left behind");
    }

    #[test]
    fn a_slot_stays_marked_while_any_of_its_rooms_has_members() {
        // One slot: every room shares it.
        let table = Arc::new(Interest::new(2, 1));
        let shard = LocalInterest::new(table.clone(), 1);
        let (a, b) = (table.slot(0, "/", "a"), table.slot(0, "/", "b"));
        assert_eq!(a, b);
        shard.gained(a);
        shard.gained(b);
        shard.lost(a);
        assert!(table.route(0, "/", &rooms(&["b"]), no_owner).contains(1));
        shard.lost(b);
        assert!(!table.route(0, "/", &rooms(&["b"]), no_owner).contains(1));
        // A loss the shard never gained (a bug) does not wrap the count.
        shard.lost(b);
        assert_eq!(shard.slots(), 0);
    }

    #[test]
    fn namespace_wide_broadcasts_go_everywhere_and_own_rooms_to_their_owner() {
        let table = Interest::new(3, 64);
        assert_eq!(table.route(0, "/", &[], no_owner), ShardSet::all(3));
        let owner = |room: &str| (room == "sock").then_some(2);
        let set = table.route(0, "/", &rooms(&["sock", "x"]), owner);
        assert_eq!(set.iter().collect::<Vec<_>>(), [2]);
        // An owner beyond the shards (another machine's socket id) adds nobody.
        let far = |_: &str| Some(9);
        assert_eq!(table.route(0, "/", &rooms(&["y"]), far).len(), 0);
    }

    #[test]
    fn endpoints_and_namespaces_do_not_share_a_room() {
        let table = Arc::new(Interest::new(2, 1 << 16));
        let shard = LocalInterest::new(table.clone(), 1);
        shard.gained(table.slot(0, "/chat", "a"));
        assert!(table
            .route(0, "/chat", &rooms(&["a"]), no_owner)
            .contains(1));
        assert!(!table.route(0, "/", &rooms(&["a"]), no_owner).contains(1));
        assert!(!table
            .route(1, "/chat", &rooms(&["a"]), no_owner)
            .contains(1));
    }

    #[test]
    fn more_than_64_shards_use_more_words_per_slot() {
        let table = Arc::new(Interest::new(200, 16));
        let s = table.slot(0, "/", "a");
        for shard in [0, 63, 64, 130, 199] {
            LocalInterest::new(table.clone(), shard).gained(s);
        }
        let set = table.route(0, "/", &rooms(&["a"]), no_owner);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63, 64, 130, 199]);
        assert_eq!(ShardSet::all(200).len(), 200);
    }
}
