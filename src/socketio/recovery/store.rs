//! The store of connection state recovery on one shard (see the parent module): the log of
//! recoverable packets the shard delivered and the sessions it keeps. Pure: time is given.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxBuildHasher;
use serde_json::Value;
use tokio::time::Instant;

use crate::bus::cluster::{
    self, offset_parts, recovery_offset, KeptSession, Origin, RemoteBroadcast,
};
use crate::engineio::Sid;
use crate::metrics::{RecoveryEvent, ShardMetrics};

/// The bounds of one shard's store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecoveryLimits {
    /// How long a dropped session, and a packet, are kept.
    pub(crate) window: Duration,
    /// Bytes of missed packets one session may get back.
    pub(crate) session_bytes: usize,
    /// This shard's share of the process's bytes.
    pub(crate) shard_bytes: usize,
}

fn counter(offset: u64) -> u64 {
    offset_parts(offset).1
}

/// A packet in the log.
struct Entry {
    at: Instant,
    packet: Arc<RemoteBroadcast>,
    bytes: usize,
}

impl Entry {
    fn offset(&self) -> u64 {
        self.packet.offset.unwrap_or_default()
    }
}

/// A session kept for its client.
struct Kept {
    at: Instant,
    sid: Sid,
    /// The log position when the socket began on this shard: a client that received nothing
    /// since (no offset to send back) missed everything from there.
    start: Option<u64>,
    nsp: String,
    rooms: Vec<String>,
    data: Value,
    bytes: usize,
}

/// Whether `packet` was meant for a socket of namespace `nsp` in `rooms` (Node's
/// `SessionAwareAdapter.restoreSession` filter).
fn reaches(packet: &RemoteBroadcast, nsp: &str, rooms: &[String]) -> bool {
    packet.nsp == nsp && cluster::reaches(rooms, &packet.opts.rooms, &packet.opts.except)
}

/// The recoverable packets one shard delivered and the sessions it keeps. Pure: time is given.
pub(crate) struct Store {
    limits: RecoveryLimits,
    /// This shard's index: the origin of the offsets it issues.
    shard: usize,
    /// Shards of the process: origin slots 0..shards, then the bridge's.
    shards: usize,
    issued: u64,
    log: VecDeque<Entry>,
    /// The position of `log[0]` since the store began.
    first: u64,
    /// The positions of each origin's packets in the log (increasing, as are their counters).
    by_origin: Vec<VecDeque<u64>>,
    /// The highest counter seen from each origin.
    high: Vec<u64>,
    sessions: HashMap<Sid, Kept, FxBuildHasher>,
    /// Kept sessions, oldest first (a pid no longer in `sessions` was taken, and is skipped).
    kept_order: VecDeque<(Instant, Sid)>,
    /// Sessions of pids naming this shard that another shard keeps (their sockets had moved
    /// there), oldest first; a few dozen bytes each, gone with the window.
    forwards: HashMap<Sid, (usize, Instant), FxBuildHasher>,
    forward_order: VecDeque<(Instant, Sid)>,
    bytes: usize,
    /// The namespaces and rooms of the sessions that stopped being kept (expired, evicted or
    /// replaced; a session taken whole is released by its taker), until their namespace
    /// releases the rooms they held.
    released: Vec<(String, Vec<String>)>,
}

impl Store {
    pub(crate) fn new(limits: RecoveryLimits, shard: usize, shards: usize) -> Store {
        Store {
            limits,
            shard,
            shards,
            issued: 0,
            log: VecDeque::new(),
            first: 0,
            by_origin: vec![VecDeque::new(); shards + 1],
            high: vec![0; shards + 1],
            sessions: HashMap::default(),
            kept_order: VecDeque::new(),
            forwards: HashMap::default(),
            forward_order: VecDeque::new(),
            bytes: 0,
            released: Vec::new(),
        }
    }

    /// The origin slot of an offset, if it names a shard of this process or the bridge.
    fn slot(&self, offset: u64) -> Option<usize> {
        match offset_parts(offset).0? {
            Origin::Bridge => Some(self.shards),
            Origin::Shard(shard) => (shard < self.shards).then_some(shard),
        }
    }

    /// A new offset of this shard.
    pub(crate) fn issue(&mut self) -> u64 {
        self.issued += 1;
        recovery_offset(self.issued, Origin::Shard(self.shard))
    }

    /// Appends a packet delivered now; then drops what the window and the bounds no longer
    /// allow.
    pub(crate) fn log(&mut self, packet: Arc<RemoteBroadcast>, now: Instant, m: &ShardMetrics) {
        let Some(offset) = packet.offset else { return };
        let Some(slot) = self.slot(offset) else {
            return;
        };
        let bytes = 96
            + packet.nsp.len()
            + packet.frames.iter().map(|f| f.wire().len()).sum::<usize>()
            + packet
                .opts
                .rooms
                .iter()
                .map(|r| r.len() + 24)
                .sum::<usize>()
            + packet
                .opts
                .except
                .iter()
                .map(|r| r.len() + 24)
                .sum::<usize>();
        let position = self.first + self.log.len() as u64;
        self.log.push_back(Entry {
            at: now,
            packet,
            bytes,
        });
        self.by_origin[slot].push_back(position);
        self.high[slot] = self.high[slot].max(counter(offset));
        self.bytes += bytes;
        self.trim(now, m);
    }

    /// Keeps the session of a socket that dropped.
    pub(crate) fn keep(
        &mut self,
        pid: Sid,
        kept: (Sid, &str, Vec<String>, Value, Option<u64>),
        now: Instant,
        m: &ShardMetrics,
    ) {
        let (sid, nsp, rooms, data, start) = kept;
        let bytes = 160
            + nsp.len()
            + rooms.iter().map(|r| r.len() + 24).sum::<usize>()
            + serde_json::to_vec(&data).map_or(0, |v| v.len());
        let kept = Kept {
            at: now,
            sid,
            start,
            nsp: nsp.to_owned(),
            rooms,
            data,
            bytes,
        };
        if let Some(old) = self.sessions.insert(pid, kept) {
            self.bytes -= old.bytes;
            self.released.push((old.nsp, old.rooms));
        }
        self.forwards.remove(&pid);
        self.kept_order.push_back((now, pid));
        self.bytes += bytes;
        m.recovery(RecoveryEvent::Kept);
        self.trim(now, m);
    }

    /// Remembers that shard `at` keeps the session of `pid`.
    pub(crate) fn forward(&mut self, pid: Sid, at: usize, now: Instant) {
        self.forwards.insert(pid, (at, now));
        self.forward_order.push_back((now, pid));
        self.trim_forwards(now);
    }

    /// The shard that said it keeps the session of `pid`, forgotten as it is told.
    pub(crate) fn forwarded(&mut self, pid: Sid) -> Option<usize> {
        self.forwards.remove(&pid).map(|(at, _)| at)
    }

    fn trim_forwards(&mut self, now: Instant) {
        let Some(horizon) = now.checked_sub(self.limits.window) else {
            return;
        };
        while let Some(&(at, pid)) = self.forward_order.front() {
            if at >= horizon && self.forwards.get(&pid).is_some_and(|f| f.1 == at) {
                break;
            }
            self.forward_order.pop_front();
            if self.forwards.get(&pid).is_some_and(|f| f.1 == at) {
                self.forwards.remove(&pid);
            }
        }
    }

    /// How long a dropped session, and a packet, are kept.
    pub(crate) fn window(&self) -> Duration {
        self.limits.window
    }

    /// Drops what the window no longer allows, now (the store otherwise trims as it is used).
    pub(crate) fn expire(&mut self, now: Instant, m: &ShardMetrics) {
        self.trim(now, m);
    }

    /// Drops the packets and sessions older than the window, then the oldest of either while
    /// the store is over its bytes.
    fn trim(&mut self, now: Instant, m: &ShardMetrics) {
        let horizon = now.checked_sub(self.limits.window);
        let expired = |at: Instant| horizon.is_some_and(|h| at < h);
        while self.log.front().is_some_and(|e| expired(e.at)) {
            self.pop_packet();
        }
        while let Some(&(at, pid)) = self.kept_order.front() {
            if !expired(at) && self.sessions.get(&pid).is_some_and(|k| k.at == at) {
                break;
            }
            self.pop_session(RecoveryEvent::Expired, m);
        }
        while self.bytes > self.limits.shard_bytes {
            let packet_at = self.log.front().map(|e| e.at);
            let session_at = self.kept_order.front().map(|(at, _)| *at);
            match (packet_at, session_at) {
                (Some(p), Some(s)) if s < p => self.pop_session(RecoveryEvent::Evicted, m),
                (Some(_), _) => self.pop_packet(),
                (None, Some(_)) => self.pop_session(RecoveryEvent::Evicted, m),
                (None, None) => break,
            }
        }
    }

    fn pop_packet(&mut self) {
        if let Some(entry) = self.log.pop_front() {
            if let Some(slot) = self.slot(entry.offset()) {
                self.by_origin[slot].pop_front();
            }
            self.first += 1;
            self.bytes -= entry.bytes;
        }
    }

    /// Forgets the oldest kept session, counted as `event` when it was still kept.
    fn pop_session(&mut self, event: RecoveryEvent, m: &ShardMetrics) {
        let Some((at, pid)) = self.kept_order.pop_front() else {
            return;
        };
        if self.sessions.get(&pid).is_some_and(|k| k.at == at) {
            if let Some(kept) = self.sessions.remove(&pid) {
                self.bytes -= kept.bytes;
                self.released.push((kept.nsp, kept.rooms));
                m.recovery(event);
            }
        }
    }

    /// The rooms of the sessions of `nsp` no longer kept since the last call, one list per
    /// session.
    pub(crate) fn released(&mut self, nsp: &str) -> Vec<Vec<String>> {
        if self.released.is_empty() {
            return Vec::new();
        }
        let (mine, others) = std::mem::take(&mut self.released)
            .into_iter()
            .partition(|(n, _)| n == nsp);
        self.released = others;
        mine.into_iter().map(|(_, rooms)| rooms).collect()
    }

    /// The log position of the packet with `offset`, if it is still there.
    fn position(&self, offset: u64) -> Option<u64> {
        let positions = &self.by_origin[self.slot(offset)?];
        let wanted = counter(offset);
        let i = positions.partition_point(|&p| counter(self.at(p).offset()) < wanted);
        let p = *positions.get(i)?;
        (self.at(p).offset() == offset).then_some(p)
    }

    fn at(&self, position: u64) -> &Entry {
        &self.log[(position - self.first) as usize]
    }

    /// The log position after the last packet.
    pub(crate) fn end(&self) -> u64 {
        self.first + self.log.len() as u64
    }

    /// Takes the session `pid` of namespace `nsp` for a client whose last packet was `offset`
    /// (`None`: it received none since its socket began here): the session with the packets it
    /// missed, or `None` (unknown, expired, its packets gone or more than one session may get
    /// back: counted).
    pub(crate) fn take(
        &mut self,
        pid: Sid,
        nsp: &str,
        offset: Option<u64>,
        now: Instant,
        m: &ShardMetrics,
    ) -> Option<KeptSession> {
        self.trim(now, m);
        if self.sessions.get(&pid)?.nsp != nsp {
            return None;
        }
        let kept = self.sessions.remove(&pid)?;
        self.bytes -= kept.bytes;
        let from = match offset {
            Some(offset) => self.position(offset).map(|p| p + 1),
            None => kept.start.filter(|&s| s >= self.first),
        };
        let Some(from) = from else {
            m.recovery(RecoveryEvent::Evicted);
            self.released.push((kept.nsp, kept.rooms));
            return None;
        };
        let mut bytes = 0;
        let mut missed = Vec::new();
        for entry in self.log.range((from - self.first) as usize..) {
            if reaches(&entry.packet, nsp, &kept.rooms) {
                bytes += entry.bytes;
                missed.push(entry.packet.clone());
            }
        }
        if bytes > self.limits.session_bytes {
            m.recovery(RecoveryEvent::Evicted);
            self.released.push((kept.nsp, kept.rooms));
            return None;
        }
        Some(KeptSession {
            sid: kept.sid.as_str().to_owned(),
            rooms: kept.rooms,
            data: kept.data,
            missed,
            high_water: self.high.clone(),
        })
    }

    /// The packets for `nsp` and `rooms` this shard delivered beyond `high_water` (another
    /// shard's highest counters), in the order it delivered them.
    pub(crate) fn beyond(
        &self,
        nsp: &str,
        rooms: &[String],
        high_water: &[u64],
    ) -> Vec<Arc<RemoteBroadcast>> {
        let mut positions: Vec<u64> = Vec::new();
        for (slot, list) in self.by_origin.iter().enumerate() {
            let floor = high_water.get(slot).copied().unwrap_or(0);
            let i = list.partition_point(|&p| counter(self.at(p).offset()) <= floor);
            positions.extend(list.range(i..));
        }
        positions.sort_unstable();
        positions
            .into_iter()
            .map(|p| &self.at(p).packet)
            .filter(|packet| reaches(packet, nsp, rooms))
            .cloned()
            .collect()
    }

    /// Whether this shard has seen every origin up to `high_water`: a socket restored with it
    /// needs no more skipping.
    pub(super) fn caught_up(&self, high_water: &[u64]) -> bool {
        self.high
            .iter()
            .zip(high_water)
            .all(|(mine, theirs)| mine >= theirs)
    }

    /// Whether a packet with `offset` is at or below `floor` (it came with the session).
    pub(super) fn below(&self, offset: u64, floor: &[u64]) -> bool {
        self.slot(offset)
            .and_then(|slot| floor.get(slot))
            .is_some_and(|&f| counter(offset) <= f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::cluster::{format_offset, parse_offset, BroadcastOpts};
    use crate::metrics::Metrics;

    const SHARDS: usize = 2;

    fn limits() -> RecoveryLimits {
        RecoveryLimits {
            window: Duration::from_secs(60),
            session_bytes: 1 << 20,
            shard_bytes: 1 << 20,
        }
    }

    fn packet(offset: u64, rooms: &[&str]) -> Arc<RemoteBroadcast> {
        Arc::new(RemoteBroadcast {
            nsp: "/".into(),
            opts: BroadcastOpts {
                rooms: rooms.iter().map(|r| r.to_string()).collect(),
                ..BroadcastOpts::default()
            },
            frames: Vec::new(),
            ack: None,
            offset: Some(offset),
        })
    }

    fn offset(origin: usize, n: u64) -> u64 {
        recovery_offset(n, Origin::Shard(origin))
    }

    fn sid(shard: usize) -> Sid {
        crate::engineio::SidGenerator::new(shard).next_sid()
    }

    fn offsets(packets: &[Arc<RemoteBroadcast>]) -> Vec<u64> {
        packets
            .iter()
            .map(|p| p.offset.unwrap_or_default())
            .collect()
    }

    fn keep(store: &mut Store, pid: Sid, rooms: &[&str], now: Instant, m: &ShardMetrics) {
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        store.keep(pid, (sid(0), "/", rooms, Value::Null, Some(0)), now, m);
    }

    #[test]
    fn sessions_no_longer_kept_release_their_rooms_to_their_namespace() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let start = Instant::now();
        let mut store = Store::new(limits(), 0, SHARDS);
        let (taken, expiring) = (sid(0), sid(0));
        keep(&mut store, taken, &["a", "b"], start, m);
        keep(
            &mut store,
            expiring,
            &["c"],
            start + Duration::from_secs(30),
            m,
        );
        assert!(store.released("/").is_empty(), "both still kept");
        let session = store.take(taken, "/", None, start, m).expect("the session");
        assert_eq!(session.rooms, ["a", "b"]);
        assert!(
            store.released("/").is_empty(),
            "its taker releases a session taken whole"
        );
        let (replaced, again) = (
            start + Duration::from_secs(40),
            start + Duration::from_secs(41),
        );
        keep(&mut store, taken, &["d"], replaced, m);
        keep(&mut store, taken, &["e"], again, m);
        store.expire(start + Duration::from_secs(91), m);
        assert_eq!(store.released("/chat"), Vec::<Vec<String>>::new());
        assert_eq!(
            store.released("/"),
            [["d"], ["c"]],
            "replaced, then expired"
        );
        assert!(store.released("/").is_empty(), "each session once");
    }

    #[test]
    fn offsets_round_trip_and_name_their_origin() {
        let mut store = Store::new(limits(), 1, SHARDS);
        let first = store.issue();
        assert_eq!(first, offset(1, 1));
        assert_eq!(parse_offset(&format_offset(first)), Some(first));
        let bridge = recovery_offset(3, Origin::Bridge);
        assert_eq!(store.slot(bridge), Some(SHARDS));
        assert_eq!(store.slot(offset(7, 3)), None, "no such shard");
        for bad in ["", "xyz", "12345678901234567", "-1"] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_session_gets_the_packets_after_its_offset_for_its_rooms_in_order() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let now = Instant::now();
        let mut store = Store::new(limits(), 0, SHARDS);
        for (o, rooms) in [
            (offset(0, 1), &["a"][..]),
            (offset(1, 1), &["a"]),
            (offset(0, 2), &["b"]),
            (offset(1, 2), &[]),
            (offset(0, 3), &["a"]),
        ] {
            store.log(packet(o, rooms), now, m);
        }
        let pid = sid(0);
        keep(&mut store, pid, &["a"], now, m);
        let kept = store
            .take(pid, "/", Some(offset(1, 1)), now, m)
            .expect("kept");
        assert_eq!(offsets(&kept.missed), [offset(1, 2), offset(0, 3)]);
        assert_eq!(kept.high_water, [3, 2, 0]);
        assert!(
            store.take(pid, "/", Some(offset(1, 1)), now, m).is_none(),
            "taken once"
        );
        keep(&mut store, pid, &["a"], now, m);
        assert!(
            store.take(pid, "/", Some(offset(1, 9)), now, m).is_none(),
            "unknown offset"
        );
        assert_eq!(m.recovery_events(RecoveryEvent::Evicted), 1);
    }

    #[test]
    fn a_session_that_received_nothing_gets_everything_since_it_began() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let now = Instant::now();
        let mut store = Store::new(limits(), 0, SHARDS);
        store.log(packet(offset(0, 1), &["a"]), now, m);
        let start = store.end();
        for n in 2..=3 {
            store.log(packet(offset(0, n), &["a"]), now, m);
        }
        let pid = sid(0);
        let rooms = vec!["a".to_string()];
        store.keep(pid, (sid(0), "/", rooms, Value::Null, Some(start)), now, m);
        let kept = store.take(pid, "/", None, now, m).expect("kept");
        assert_eq!(offsets(&kept.missed), [offset(0, 2), offset(0, 3)]);
    }

    #[test]
    fn another_shard_adds_what_it_saw_beyond_the_home_and_skips_the_rest() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let now = Instant::now();
        // The new shard saw origin 0's third packet before the home did, and origin 1's second
        // one only after.
        let mut here = Store::new(limits(), 1, SHARDS);
        for o in [offset(0, 1), offset(0, 2), offset(1, 1), offset(0, 3)] {
            here.log(packet(o, &["a"]), now, m);
        }
        let home_high = [2, 2, 0];
        let beyond = here.beyond("/", &["a".to_string()], &home_high);
        assert_eq!(offsets(&beyond), [offset(0, 3)]);
        assert!(
            !here.caught_up(&home_high),
            "origin 1's second packet is still to come"
        );
        assert!(
            here.below(offset(1, 2), &home_high),
            "it came with the session"
        );
        assert!(!here.below(offset(1, 3), &home_high));
        here.log(packet(offset(1, 2), &["a"]), now, m);
        assert!(here.caught_up(&home_high));
    }

    #[test]
    fn the_window_expires_packets_and_sessions() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let start = Instant::now();
        let mut store = Store::new(limits(), 0, SHARDS);
        store.log(packet(offset(0, 1), &[]), start, m);
        let pid = sid(0);
        keep(&mut store, pid, &[], start, m);
        let later = start + Duration::from_secs(61);
        store.log(packet(offset(0, 2), &[]), later, m);
        assert_eq!(store.log.len(), 1);
        assert_eq!(m.recovery_events(RecoveryEvent::Expired), 1);
        assert!(store.take(pid, "/", Some(offset(0, 2)), later, m).is_none());
    }

    #[test]
    fn a_forward_names_the_keeper_once_and_goes_with_the_window() {
        let start = Instant::now();
        let mut store = Store::new(limits(), 0, SHARDS);
        let (moved, old) = (sid(0), sid(0));
        store.forward(old, 1, start);
        let later = start + Duration::from_secs(61);
        store.forward(moved, 1, later);
        assert_eq!(store.forwarded(old), None, "past the window");
        assert_eq!(store.forwarded(moved), Some(1));
        assert_eq!(store.forwarded(moved), None, "told once");
        let metrics = Metrics::new(1);
        store.forward(moved, 1, later);
        keep(&mut store, moved, &[], later, &metrics.shards()[0]);
        assert_eq!(store.forwarded(moved), None, "kept here again");
    }

    #[test]
    fn the_bytes_bound_drops_the_oldest_first() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let now = Instant::now();
        let mut store = Store::new(
            RecoveryLimits {
                shard_bytes: 1000,
                ..limits()
            },
            0,
            SHARDS,
        );
        let pid = sid(0);
        keep(&mut store, pid, &["a"], now, m);
        for n in 1..=20 {
            store.log(
                packet(offset(0, n), &["a"]),
                now + Duration::from_millis(n),
                m,
            );
        }
        assert!(store.bytes <= 1000);
        assert_eq!(
            m.recovery_events(RecoveryEvent::Evicted),
            1,
            "the session went first"
        );
        let kept: Vec<u64> = store.log.iter().map(Entry::offset).collect();
        assert_eq!(kept.last(), Some(&offset(0, 20)), "the newest stay");
        assert!(store.position(offset(0, 1)).is_none());
        assert!(store.position(offset(0, 20)).is_some());
    }

    #[test]
    fn a_session_over_its_bytes_is_not_restored() {
        let metrics = Metrics::new(1);
        let m = &metrics.shards()[0];
        let now = Instant::now();
        let mut store = Store::new(
            RecoveryLimits {
                session_bytes: 300,
                ..limits()
            },
            0,
            SHARDS,
        );
        store.log(packet(offset(0, 1), &["a"]), now, m);
        let pid = sid(0);
        keep(&mut store, pid, &["a"], now, m);
        for n in 2..=5 {
            store.log(packet(offset(0, n), &["a"]), now, m);
        }
        assert!(store.take(pid, "/", Some(offset(0, 1)), now, m).is_none());
        assert_eq!(m.recovery_events(RecoveryEvent::Evicted), 1);
    }
}
