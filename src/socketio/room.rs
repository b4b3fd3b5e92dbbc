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

/// What a join or a leave changed: nothing, a room's membership, or whether the room exists
/// here at all (its first member joined, or its last one left: what the shards' interest
/// table follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The member was already in (join) or not in (leave) the room.
    None,
    /// The member joined or left a room that had, and keeps, other members.
    Member,
    /// The room got its first member, or lost its last.
    Room,
}

impl Change {
    /// Whether the membership changed.
    pub fn changed(self) -> bool {
        self != Change::None
    }
}

impl<K: Copy + Eq + Hash, V: Clone> RoomIndex<K, V> {
    /// Adds `member` (reached through `value`) to `room`.
    pub fn join(&mut self, member: K, value: &V, room: &str) -> Change {
        // Members share one allocation of the room name.
        let name = match self.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Rc::from(room),
        };
        let set = self.rooms.entry(name.clone()).or_default();
        if set.contains_key(&member) {
            return Change::None;
        }
        set.insert(member, value.clone());
        let change = if set.len() == 1 {
            Change::Room
        } else {
            Change::Member
        };
        self.members.entry(member).or_default().push(name);
        change
    }

    /// Removes `member` from `room`.
    pub fn leave(&mut self, member: K, room: &str) -> Change {
        let Some(set) = self.rooms.get_mut(room) else {
            return Change::None;
        };
        if set.remove(&member).is_none() {
            return Change::None;
        }
        let change = if set.is_empty() {
            self.rooms.remove(room);
            Change::Room
        } else {
            Change::Member
        };
        if let Some(list) = self.members.get_mut(&member) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                self.members.remove(&member);
            }
        }
        change
    }

    /// Removes `member` from every room (on disconnect); `emptied` is called with each room
    /// that lost its last member.
    pub fn leave_all(&mut self, member: K, mut emptied: impl FnMut(&str)) {
        for room in self.members.remove(&member).unwrap_or_default() {
            if let Some(set) = self.rooms.get_mut(&room) {
                set.remove(&member);
                if set.is_empty() {
                    self.rooms.remove(&room);
                    emptied(&room);
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
        assert_eq!(
            idx.join(1, &1, "a"),
            Change::Room,
            "the room's first member"
        );
        assert_eq!(idx.join(1, &1, "a"), Change::None);
        assert_eq!(idx.join(1, &1, "b"), Change::Room);
        assert_eq!(idx.join(2, &2, "a"), Change::Member);
        assert_eq!(idx.rooms_of(1).len(), 2);
        assert!(idx.contains("a", 2));
        assert_eq!(idx.leave(1, "a"), Change::Member);
        assert_eq!(idx.leave(1, "a"), Change::None);
        assert!(!idx.contains("a", 1));
        assert!(idx.has_room("a"));
        assert_eq!(idx.leave(2, "a"), Change::Room, "the room's last member");
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
            let mut emptied = 0;
            idx.leave_all(round, |_| emptied += 1);
            assert_eq!(emptied, 4, "each of its rooms had only this member");
        }
        assert_eq!(idx.room_count(), 0);
        assert!(idx.members.is_empty());
        assert!(idx.rooms_of(3).is_empty());
        idx.join(1, &1, "x");
        idx.join(2, &2, "x");
        let mut emptied = 0;
        idx.leave_all(1, |_| emptied += 1);
        assert_eq!(emptied, 0, "x keeps a member");
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
