//! Room membership of one namespace on one shard: room -> members and member -> rooms. Pure
//! data, no sockets: the broadcast code asks it who should receive a packet.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::rc::Rc;

use rustc_hash::FxBuildHasher;

/// Members are server-made random ids, so a fast non-keyed hash is safe for them; room names
/// come from clients and keep the default keyed hash (no collision flooding).
type Members<K> = HashSet<K, FxBuildHasher>;

/// Room membership. `K` is the member key (a socket id).
#[derive(Debug)]
pub struct RoomIndex<K> {
    rooms: HashMap<Rc<str>, Members<K>>,
    /// Each member's rooms; a short list, so a Vec beats a set.
    members: HashMap<K, Vec<Rc<str>>, FxBuildHasher>,
}

impl<K> Default for RoomIndex<K> {
    fn default() -> Self {
        RoomIndex {
            rooms: HashMap::new(),
            members: HashMap::default(),
        }
    }
}

impl<K: Copy + Eq + Hash> RoomIndex<K> {
    /// Adds `member` to `room`; returns false if it was already there.
    pub fn join(&mut self, member: K, room: &str) -> bool {
        // Members share one allocation of the room name.
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Rc::from(room),
        };
        if !self.rooms.entry(name.clone()).or_default().insert(member) {
            return false;
        }
        self.members.entry(member).or_default().push(name);
        true
    }

    /// Removes `member` from `room`; returns false if it was not there.
    pub fn leave(&mut self, member: K, room: &str) -> bool {
        let Some(set) = self.rooms.get_mut(room) else {
            return false;
        };
        if !set.remove(&member) {
            return false;
        }
        if set.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(list) = self.members.get_mut(&member) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                self.members.remove(&member);
            }
        }
        true
    }

    /// Removes `member` from every room (on disconnect).
    pub fn leave_all(&mut self, member: K) {
        for room in self.members.remove(&member).unwrap_or_default() {
            if let Some(set) = self.rooms.get_mut(&room) {
                set.remove(&member);
                if set.is_empty() {
                    self.rooms.remove(&room);
                }
            }
        }
    }

    /// The rooms `member` is in.
    pub fn rooms_of(&self, member: K) -> &[Rc<str>] {
        self.members.get(&member).map_or(&[], Vec::as_slice)
    }

    /// Whether `member` is in `room`.
    pub fn contains(&self, room: &str, member: K) -> bool {
        self.rooms.get(room).is_some_and(|s| s.contains(&member))
    }

    /// Whether any member is in `room`.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Every room with at least one member.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|r| &**r)
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Calls `f` once for every member selected by a broadcast to `rooms` (all of `everyone`
    /// when `rooms` is empty) that is in none of the `except` rooms.
    pub fn select(
        &self,
        rooms: &[impl AsRef<str>],
        except: &[impl AsRef<str>],
        everyone: impl Iterator<Item = K>,
        mut f: impl FnMut(K),
    ) {
        // Resolve the except rooms once, not once per member.
        let except: Vec<&Members<K>> = except
            .iter()
            .filter_map(|r| self.rooms.get(r.as_ref()))
            .collect();
        let excluded = |m: &K| except.iter().any(|set| set.contains(m));
        match rooms {
            [] => everyone.filter(|m| !excluded(m)).for_each(f),
            [room] => {
                if let Some(set) = self.rooms.get(room.as_ref()) {
                    set.iter().copied().filter(|m| !excluded(m)).for_each(f);
                }
            }
            _ => {
                // A member of several target rooms receives the packet once.
                let mut seen = Members::default();
                for room in rooms {
                    if let Some(set) = self.rooms.get(room.as_ref()) {
                        for m in set {
                            if seen.insert(*m) && !excluded(m) {
                                f(*m);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(idx: &RoomIndex<u32>, rooms: &[&str], except: &[&str], all: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        idx.select(rooms, except, all.iter().copied(), |m| out.push(m));
        out.sort_unstable();
        out
    }

    #[test]
    fn join_leave_and_membership() {
        let mut idx = RoomIndex::default();
        assert!(idx.join(1, "a"));
        assert!(!idx.join(1, "a"));
        assert!(idx.join(1, "b"));
        assert!(idx.join(2, "a"));
        assert_eq!(idx.rooms_of(1).len(), 2);
        assert!(idx.contains("a", 2));
        assert!(idx.leave(1, "a"));
        assert!(!idx.leave(1, "a"));
        assert!(!idx.contains("a", 1));
        assert!(idx.has_room("a"));
        assert!(idx.leave(2, "a"));
        assert!(!idx.has_room("a"), "empty rooms are removed");
        assert_eq!(idx.room_count(), 1);
    }

    #[test]
    fn leave_all_releases_everything() {
        let mut idx = RoomIndex::default();
        for round in 0..200_000u32 {
            for r in ["x", "y", "z"] {
                idx.join(round, r);
            }
            idx.join(round, &format!("own-{round}"));
            idx.leave_all(round);
        }
        assert_eq!(idx.room_count(), 0);
        assert!(idx.members.is_empty());
        assert!(idx.rooms_of(3).is_empty());
    }

    #[test]
    fn select_by_rooms_and_except() {
        let mut idx = RoomIndex::default();
        for (m, rooms) in [
            (1, &["a", "b"][..]),
            (2, &["a"]),
            (3, &["b", "c"]),
            (4, &["c"]),
        ] {
            for r in rooms {
                idx.join(m, r);
            }
        }
        let all = [1, 2, 3, 4, 5];
        assert_eq!(selected(&idx, &[], &[], &all), vec![1, 2, 3, 4, 5]);
        assert_eq!(selected(&idx, &["a"], &[], &all), vec![1, 2]);
        assert_eq!(
            selected(&idx, &["a", "b"], &[], &all),
            vec![1, 2, 3],
            "no duplicates"
        );
        assert_eq!(selected(&idx, &["a", "b"], &["c"], &all), vec![1, 2]);
        assert_eq!(selected(&idx, &[], &["a", "c"], &all), vec![5]);
        assert_eq!(selected(&idx, &["nope"], &[], &all), Vec::<u32>::new());
        assert_eq!(selected(&idx, &["a"], &["a"], &all), Vec::<u32>::new());
    }
}
