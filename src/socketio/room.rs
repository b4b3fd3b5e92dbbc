//! Room membership of one namespace on one shard: room -> members and member -> rooms. Pure
//! data, no sockets: the broadcast code asks it who should receive a packet.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::rc::Rc;

use rustc_hash::FxBuildHasher;

/// Members are server-made random ids, so a fast non-keyed hash is safe for them; room names
/// come from clients and keep the default keyed hash (no collision flooding). Each member
/// carries a value (how to reach it), so a broadcast needs no second lookup per member.
type Members<K, V> = HashMap<K, V, FxBuildHasher>;

/// Room membership. `K` is the member key (a socket id), `V` what a broadcast needs to reach
/// the member (stored once per room the member is in).
#[derive(Debug)]
pub struct RoomIndex<K, V> {
    rooms: HashMap<Rc<str>, Members<K, V>>,
    /// Each member's rooms; a short list, so a Vec beats a set.
    members: HashMap<K, Vec<Rc<str>>, FxBuildHasher>,
}

impl<K, V> Default for RoomIndex<K, V> {
    fn default() -> Self {
        RoomIndex {
            rooms: HashMap::new(),
            members: HashMap::default(),
        }
    }
}

impl<K: Copy + Eq + Hash, V: Clone> RoomIndex<K, V> {
    /// Adds `member` (reached through `value`) to `room`; returns false if it was already there.
    pub fn join(&mut self, member: K, value: &V, room: &str) -> bool {
        // Members share one allocation of the room name.
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Rc::from(room),
        };
        let set = self.rooms.entry(name.clone()).or_default();
        if set.contains_key(&member) {
            return false;
        }
        set.insert(member, value.clone());
        self.members.entry(member).or_default().push(name);
        true
    }

    /// Removes `member` from `room`; returns false if it was not there.
    pub fn leave(&mut self, member: K, room: &str) -> bool {
        let Some(set) = self.rooms.get_mut(room) else {
            return false;
        };
        if set.remove(&member).is_none() {
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
        self.rooms
            .get(room)
            .is_some_and(|s| s.contains_key(&member))
    }

    /// Whether any member is in `room`.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Every room with at least one member.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(|r| &**r)
    }

    /// How many rooms have at least one member.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Calls `f` once for every member selected by a broadcast to `rooms` (all of `everyone`
    /// when `rooms` is empty) that is in none of the `except` rooms.
    pub fn select<'a>(
        &'a self,
        rooms: &[impl AsRef<str>],
        except: &[impl AsRef<str>],
        everyone: impl Iterator<Item = (K, &'a V)>,
        mut f: impl FnMut(K, &'a V),
    ) {
        // Resolve the except rooms once, not once per member.
        let except: Vec<&Members<K, V>> = except
            .iter()
            .filter_map(|r| self.rooms.get(r.as_ref()))
            .collect();
        let excluded = |m: &K| except.iter().any(|set| set.contains_key(m));
        match rooms {
            [] => everyone
                .filter(|(m, _)| !excluded(m))
                .for_each(|(m, v)| f(m, v)),
            [room] => {
                if let Some(set) = self.rooms.get(room.as_ref()) {
                    set.iter()
                        .filter(|(m, _)| !excluded(m))
                        .for_each(|(m, v)| f(*m, v));
                }
            }
            _ => {
                // A member of several target rooms receives the packet once.
                let mut seen = HashSet::with_hasher(FxBuildHasher);
                for room in rooms {
                    if let Some(set) = self.rooms.get(room.as_ref()) {
                        for (m, v) in set {
                            if seen.insert(*m) && !excluded(m) {
                                f(*m, v);
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

    fn selected(
        idx: &RoomIndex<u32, u32>,
        rooms: &[&str],
        except: &[&str],
        all: &[u32],
    ) -> Vec<u32> {
        let mut out = Vec::new();
        idx.select(rooms, except, all.iter().map(|m| (*m, m)), |m, v| {
            assert_eq!(m, *v, "each member comes with its own value");
            out.push(m)
        });
        out.sort_unstable();
        out
    }

    #[test]
    fn join_leave_and_membership() {
        let mut idx = RoomIndex::default();
        assert!(idx.join(1, &1, "a"));
        assert!(!idx.join(1, &1, "a"));
        assert!(idx.join(1, &1, "b"));
        assert!(idx.join(2, &2, "a"));
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
                idx.join(round, &round, r);
            }
            idx.join(round, &round, &format!("own-{round}"));
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
                idx.join(m, &m, r);
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
