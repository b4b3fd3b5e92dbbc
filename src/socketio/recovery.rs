//! Connection state recovery (Socket.IO 4.6's `connectionStateRecovery`, docs/PROTOCOL.md
//! §5) on the shards of one process (docs/ARCHITECTURE.md, "Connection state recovery").
//!
//! Each shard keeps, per Socket.IO endpoint, a [`Store`]: a log of the recoverable packets it
//! delivered (its own broadcasts and emits, and the broadcasts of the other shards, in the
//! order it delivered them; the encoded frames are shared with the deliveries, never copied),
//! and the sessions of its sockets that dropped. A packet's offset is its origin (a shard) in
//! the top byte and that origin's counter below, and the client's session id (`pid`) names the
//! socket's shard, so a client that comes back on another shard is served by one request to
//! the session's home shard over the bus, not by a store every shard locks.
//!
//! Each origin's packets reach every shard in the order it sent them (one FIFO per pair of
//! shards), so the home shard's answer carries, besides the missed packets, its highest
//! counter from each origin: the new shard adds the packets it delivered beyond those, and
//! skips those up to them that reach it later. Nothing is lost between the two shards and
//! nothing comes twice.
//!
//! A Redis-backed store (the streams adapter's sessions) would replace the home shard's half
//! of the exchange: `NsShard::take_session` and the `SioMsg::Restore` round trip become a
//! request to Redis, keyed by the same `pid`; the client's half (`Client::connect`) does not
//! change.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxBuildHasher;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::socket::DisconnectReason;
use super::NsShard;
use crate::bus::cluster::{
    format_offset, offset_parts, recovery_offset, BroadcastOpts, KeptSession, Origin,
    RemoteBroadcast, Reply, RestoreAsk, SioMsg,
};
use crate::engineio::{CloseReason, Sid};
use crate::metrics::{RecoveryEvent, ShardMetrics};
use crate::protocol::socketio::{event_frames_with_offset, Payload};

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
    let opts = &packet.opts;
    packet.nsp == nsp
        && (opts.rooms.is_empty() || opts.rooms.iter().any(|r| rooms.contains(r)))
        && !opts.except.iter().any(|r| rooms.contains(r))
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
                m.recovery(event);
            }
        }
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
    fn caught_up(&self, high_water: &[u64]) -> bool {
        self.high
            .iter()
            .zip(high_water)
            .all(|(mine, theirs)| mine >= theirs)
    }

    /// Whether a packet with `offset` is at or below `floor` (it came with the session).
    fn below(&self, offset: u64, floor: &[u64]) -> bool {
        self.slot(offset)
            .and_then(|slot| floor.get(slot))
            .is_some_and(|&f| counter(offset) <= f)
    }
}

/// Recovery on one shard for one endpoint: the store, the questions this shard asked other
/// shards, and the restored sockets that skip packets they already got.
pub(crate) struct Recovery {
    store: RefCell<Store>,
    asks: RefCell<HashMap<u64, oneshot::Sender<Option<Box<KeptSession>>>>>,
    /// Sockets restored from another shard, with the counters up to which they skip.
    floors: RefCell<HashMap<Sid, Vec<u64>, FxBuildHasher>>,
    /// Whether `floors` holds any (read on every delivery of a recoverable packet).
    any_floor: Cell<bool>,
    /// The connected sockets of this shard by pid: a client back while its old connection
    /// still looks alive here (a stall the heartbeat has not caught yet) takes it over.
    live: RefCell<HashMap<Sid, (Sid, u64), FxBuildHasher>>,
}

impl Recovery {
    pub(crate) fn new(limits: RecoveryLimits, shard: usize, shards: usize) -> Rc<Recovery> {
        Rc::new(Recovery {
            store: RefCell::new(Store::new(limits, shard, shards)),
            asks: RefCell::new(HashMap::new()),
            floors: RefCell::new(HashMap::default()),
            any_floor: Cell::new(false),
            live: RefCell::new(HashMap::default()),
        })
    }
}

/// How long a shard waits for the home shard of a session.
fn ask_timeout() -> Duration {
    Duration::from_millis(crate::config::defaults::RECOVERY_ASK_TIMEOUT_MS)
}

impl NsShard {
    /// A recoverable packet (with its offset) for `opts`, when recovery is on.
    pub(super) fn recoverable(
        &self,
        event: &str,
        data: &Payload,
        opts: impl FnOnce() -> BroadcastOpts,
    ) -> Option<Arc<RemoteBroadcast>> {
        let recovery = self.recovery.as_ref()?;
        let offset = recovery.store.borrow_mut().issue();
        let frames = event_frames_with_offset(&self.name, event, data, &format_offset(offset));
        Some(Arc::new(RemoteBroadcast {
            nsp: self.name.clone(),
            opts: opts(),
            frames,
            ack: None,
            offset: Some(offset),
        }))
    }

    /// Logs a recoverable packet this shard delivered (after delivering it).
    pub(super) fn log_packet(&self, packet: &Arc<RemoteBroadcast>) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if packet.offset.is_none() {
            return;
        }
        let metrics = self.link.shard_metrics();
        let store = &mut *recovery.store.borrow_mut();
        store.log(packet.clone(), Instant::now(), metrics);
        if recovery.any_floor.get() {
            let mut floors = recovery.floors.borrow_mut();
            floors.retain(|_, floor| !store.caught_up(floor));
            recovery.any_floor.set(!floors.is_empty());
        }
    }

    /// Whether socket `sid` must skip the packet with `offset` (it came with its session).
    pub(super) fn skips(&self, sid: Sid, offset: Option<u64>) -> bool {
        let (Some(recovery), Some(offset)) = (&self.recovery, offset) else {
            return false;
        };
        recovery.any_floor.get()
            && recovery
                .floors
                .borrow()
                .get(&sid)
                .is_some_and(|floor| recovery.store.borrow().below(offset, floor))
    }

    /// Whether connection state recovery is on (`--recovery-window`).
    pub(super) fn recovery_on(&self) -> bool {
        self.recovery.is_some()
    }

    /// Keeps the session of socket `sid` (recovery id `pid`), which dropped.
    pub(super) fn keep_session(
        &self,
        (pid, sid): (Sid, Sid),
        rooms: Vec<String>,
        data: Value,
        start: Option<u64>,
    ) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let kept = (sid, self.name.as_str(), rooms, data, start);
        let metrics = self.link.shard_metrics();
        recovery
            .store
            .borrow_mut()
            .keep(pid, kept, Instant::now(), metrics);
        // The socket had moved here from the shard its pid names: tell that shard, where a
        // client coming back elsewhere will ask.
        let home = pid.shard();
        if home != self.shard() {
            let msg = SioMsg::KeptAt {
                nsp: self.name.clone(),
                pid: pid.as_str().to_owned(),
            };
            self.link.send(home, msg);
        }
    }

    /// Another shard keeps the session of `pid`, which names this shard.
    pub(super) fn on_kept_at(&self, from: Origin, pid: &str) {
        if let (Some(recovery), Origin::Shard(at), Some(pid)) =
            (&self.recovery, from, Sid::parse(pid))
        {
            let now = Instant::now();
            recovery.store.borrow_mut().forward(pid, at, now);
        }
    }

    /// The other shard to ask for session `pid` (not kept here): the shard it names, or the
    /// one that said it keeps it.
    pub(super) fn keeper_of(&self, pid: Sid) -> Option<usize> {
        let recovery = self.recovery.as_ref()?;
        let home = pid.shard();
        let at = if home == self.shard() {
            recovery.store.borrow_mut().forwarded(pid)?
        } else {
            home
        };
        (at != self.shard() && self.link.other_shards().any(|s| s == at)).then_some(at)
    }

    /// Socket `sid` of this namespace, with recovery id `pid`, is connected here from now on.
    pub(super) fn track_pid(&self, pid: Sid, sid: Sid) {
        if let Some(recovery) = &self.recovery {
            let start = recovery.store.borrow().end();
            recovery.live.borrow_mut().insert(pid, (sid, start));
        }
    }

    /// The socket with recovery id `pid` left; where the log stood when it began here.
    pub(super) fn untrack_pid(&self, pid: Sid) -> Option<u64> {
        let recovery = self.recovery.as_ref()?;
        let (_, start) = recovery.live.borrow_mut().remove(&pid)?;
        Some(start)
    }

    /// A client came back with `pid` while its socket is still connected here (its old
    /// connection stalled and the heartbeat has not noticed yet): that socket leaves now, its
    /// session kept, and its connection closes.
    fn take_over(&self, pid: Sid) {
        let sid = self
            .recovery
            .as_ref()
            .and_then(|r| r.live.borrow().get(&pid).map(|(sid, _)| *sid));
        let socket = sid.and_then(|sid| self.sockets.borrow().get(&sid).cloned());
        if let Some(socket) = socket {
            socket.left(DisconnectReason::Transport(CloseReason::TransportClose));
            socket.session().close(CloseReason::ForcedClose);
        }
    }

    /// The session `pid` with what it missed since `offset`, taken from this shard's store.
    pub(super) fn take_session(&self, pid: Sid, offset: Option<u64>) -> Option<KeptSession> {
        let recovery = self.recovery.as_ref()?;
        self.take_over(pid);
        let metrics = self.link.shard_metrics();
        let taken =
            recovery
                .store
                .borrow_mut()
                .take(pid, &self.name, offset, Instant::now(), metrics);
        taken
    }

    /// The session `pid` for a client that came back with `offset`, from shard `keeper` (see
    /// [`NsShard::keeper_of`]); with the packets it missed, in order, ready to send. `None`: a
    /// fresh session.
    pub(super) async fn restore_from(
        self: Rc<Self>,
        keeper: usize,
        pid: Sid,
        offset: Option<u64>,
    ) -> Option<KeptSession> {
        let recovery = self.recovery.clone()?;
        let id = self.next_ack_id();
        let (tx, rx) = oneshot::channel();
        recovery.asks.borrow_mut().insert(id, tx);
        let ask = RestoreAsk {
            nsp: self.name.clone(),
            id,
            pid: pid.as_str().to_owned(),
            offset,
            asker: self.shard(),
        };
        let answer = if self.link.send(keeper, SioMsg::Restore(Box::new(ask))) {
            // Late or lost: the client gets a fresh session, and the question is forgotten.
            let answer = tokio::time::timeout(ask_timeout(), rx).await;
            answer.ok().and_then(Result::ok).flatten()
        } else {
            None
        };
        recovery.asks.borrow_mut().remove(&id);
        let mut session = *answer?;
        // What this shard delivered beyond the home shard's answer; later packets up to it are
        // skipped for this socket (see the module's comment).
        let store = recovery.store.borrow();
        let beyond = store.beyond(&self.name, &session.rooms, &session.high_water);
        session.missed.extend(beyond);
        if !store.caught_up(&session.high_water) {
            if let Some(sid) = Sid::parse(&session.sid) {
                let floor = std::mem::take(&mut session.high_water);
                recovery.floors.borrow_mut().insert(sid, floor);
                recovery.any_floor.set(true);
            }
        }
        Some(session)
    }

    /// Another shard asks for a session this shard keeps, or knows the keeper of (then the
    /// question goes on there, and the keeper answers the asker).
    pub(super) fn on_restore(&self, ask: RestoreAsk) {
        let Some(pid) = Sid::parse(&ask.pid) else {
            return self.restored(ask, None);
        };
        if let Some(session) = self.take_session(pid, ask.offset) {
            return self.restored(ask, Some(Box::new(session)));
        }
        let forward = (pid.shard() == self.shard())
            .then(|| self.keeper_of(pid))
            .flatten()
            .filter(|&at| at != ask.asker);
        match forward {
            Some(at) => {
                self.link.send(at, SioMsg::Restore(Box::new(ask)));
            }
            None => self.restored(ask, None),
        }
    }

    fn restored(&self, ask: RestoreAsk, session: Option<Box<KeptSession>>) {
        let reply = Reply::Restored {
            nsp: self.name.clone(),
            id: ask.id,
            session,
        };
        self.reply(Origin::Shard(ask.asker), reply);
    }

    /// The home shard's answer to a question this shard asked.
    pub(super) fn on_restored(&self, id: u64, session: Option<Box<KeptSession>>) {
        let waiter = self
            .recovery
            .as_ref()
            .and_then(|r| r.asks.borrow_mut().remove(&id));
        if let Some(tx) = waiter {
            let _ = tx.send(session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::cluster::parse_offset;
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
