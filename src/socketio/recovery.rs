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
//! In streams mode (`--redis-mode streams`) Redis is the home of every session instead, as
//! with Node's streams adapter: a recoverable packet goes to the stream first and reaches the
//! sockets, here as on every machine, when the bridge reads it back, its entry id as offset;
//! a dropped socket's session goes to Redis (`sio:session:<pid>`); a client back with
//! `{pid, offset}` on any shard of any machine asks the bridge, which takes the session and
//! reads the stream after the offset. No shard logs anything then.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
    format_offset, BridgeMsg, BroadcastOpts, KeptSession, Origin, PublishedBroadcast, RedisRestore,
    RemoteBroadcast, Reply, RestoreAsk, SessionToKeep, SioMsg,
};
use crate::engineio::{CloseReason, Sid};
use crate::metrics::RecoveryEvent;
use crate::protocol::socketio::{event_frames_with_offset, Payload};

mod store;

pub(crate) use store::{RecoveryLimits, Store};

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
    /// Streams mode: sessions and packets are kept in Redis, not in `store`.
    in_redis: bool,
}

impl Recovery {
    pub(crate) fn new(
        limits: RecoveryLimits,
        shard: usize,
        shards: usize,
        in_redis: bool,
    ) -> Rc<Recovery> {
        Rc::new(Recovery {
            in_redis,
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

/// How long a shard waits for the bridge to restore a session from Redis.
fn redis_timeout() -> Duration {
    Duration::from_millis(crate::config::defaults::RECOVERY_REDIS_TIMEOUT_MS)
}

impl NsShard {
    /// A recoverable packet (with its offset) for `opts`, when recovery is on and kept by the
    /// shards. With sessions in Redis, what is not sent through the stream (a local
    /// broadcast) carries no offset, as in Node: the client's last offset stays an entry id.
    pub(super) fn recoverable(
        &self,
        event: &str,
        data: &Payload,
        opts: impl FnOnce() -> BroadcastOpts,
    ) -> Option<Arc<RemoteBroadcast>> {
        let recovery = self.recovery.as_ref().filter(|r| !r.in_redis)?;
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

    /// Whether sessions are kept in Redis (streams mode with recovery on).
    pub(super) fn recovery_in_redis(&self) -> bool {
        self.recovery.as_ref().is_some_and(|r| r.in_redis)
    }

    /// Whether an event for `opts` goes through the stream before any socket gets it: in
    /// streams mode with recovery on, unless local or volatile (Node's `ClusterAdapter`
    /// awaits the XADD's id the same way). [`NsShard::send_through_stream`] sends it.
    pub(super) fn through_stream(&self, opts: &BroadcastOpts) -> bool {
        self.recovery_in_redis() && !opts.local && !opts.volatile
    }

    /// Hands a recoverable event to the bridge for the stream; the bridge delivers it, on
    /// this machine too, when it reads it back.
    pub(super) fn send_through_stream(&self, event: &str, data: Payload, opts: BroadcastOpts) {
        self.link.shard_metrics().broadcast();
        self.link
            .send_to_bridge(BridgeMsg::Publish(Box::new(PublishedBroadcast {
                nsp: self.name.clone(),
                event: event.to_owned(),
                data,
                opts,
                ack: None,
            })));
    }

    /// Logs a recoverable packet this shard delivered (after delivering it).
    pub(super) fn log_packet(&self, packet: &Arc<RemoteBroadcast>) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if packet.offset.is_none() || recovery.in_redis {
            return;
        }
        let metrics = self.link.shard_metrics();
        {
            let store = &mut *recovery.store.borrow_mut();
            store.log(packet.clone(), Instant::now(), metrics);
            if recovery.any_floor.get() {
                let mut floors = recovery.floors.borrow_mut();
                floors.retain(|_, floor| !store.caught_up(floor));
                recovery.any_floor.set(!floors.is_empty());
            }
        }
        self.release_kept();
    }

    /// Releases the rooms of this namespace's sessions that the store no longer keeps (see
    /// `socketio/interest.rs`). Called after every use of the store: sessions expire and give
    /// way there.
    pub(super) fn release_kept(&self) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let released = recovery.store.borrow_mut().released(&self.name);
        for rooms in released {
            self.release_rooms(&rooms);
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
        self: &Rc<Self>,
        (pid, sid): (Sid, Sid),
        rooms: Vec<String>,
        data: Value,
        start: Option<u64>,
    ) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if recovery.in_redis {
            let keep = SessionToKeep {
                pid: pid.as_str().to_owned(),
                sid: sid.as_str().to_owned(),
                rooms,
                data,
            };
            if self
                .link
                .send_to_bridge(BridgeMsg::KeepSession(Box::new(keep)))
            {
                self.link.shard_metrics().recovery(RecoveryEvent::Kept);
            }
            return;
        }
        // Taken while the socket is still in its rooms: they stay held without a report.
        self.keep_rooms(&rooms);
        let kept = (sid, self.name.as_str(), rooms, data, start);
        let metrics = self.link.shard_metrics();
        recovery
            .store
            .borrow_mut()
            .keep(pid, kept, Instant::now(), metrics);
        self.release_kept();
        // Once the window is over the session is gone even if nothing uses the store by then:
        // its rooms are released on time.
        let (ns, window) = (self.clone(), recovery.store.borrow().window());
        tokio::task::spawn_local(async move {
            tokio::time::sleep(window + Duration::from_millis(1)).await;
            if let Some(recovery) = &ns.recovery {
                let metrics = ns.link.shard_metrics();
                recovery.store.borrow_mut().expire(Instant::now(), metrics);
            }
            ns.release_kept();
        });
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
    pub(super) fn take_over(&self, pid: Sid) {
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
    /// The rooms it held stay held until the caller releases them (`release_rooms`) once the
    /// restored socket has joined them; the caller also calls [`NsShard::release_kept`].
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
        let ask = |id| {
            let ask = RestoreAsk {
                nsp: self.name.clone(),
                id,
                pid: pid.as_str().to_owned(),
                offset,
                asker: self.shard(),
            };
            self.link.send(keeper, SioMsg::Restore(Box::new(ask)))
        };
        let mut session = *self.ask_for_session(&recovery, ask, ask_timeout()).await?;
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

    /// The session `pid` for a client that came back with `offset` (a stream entry id), from
    /// Redis through the bridge (streams mode); with the packets it missed, in stream order,
    /// ready to send. The bridge answers after handing this shard every packet up to the last
    /// one it returns, and before any later one, so nothing comes twice or goes missing
    /// between the answer and the socket's joins. `None`: a fresh session.
    pub(super) async fn restore_from_redis(
        self: Rc<Self>,
        pid: Sid,
        offset: String,
    ) -> Option<KeptSession> {
        let recovery = self.recovery.clone()?;
        let ask = |id| {
            let ask = RedisRestore {
                nsp: self.name.clone(),
                id,
                pid: pid.as_str().to_owned(),
                offset,
            };
            self.link.send_to_bridge(BridgeMsg::Restore(Box::new(ask)))
        };
        let answer = self.ask_for_session(&recovery, ask, redis_timeout()).await;
        answer.map(|session| *session)
    }

    /// Sends a question for a session with `send` (given the id its answer will carry) and
    /// waits up to `timeout` for the answer (see [`NsShard::on_restored`]). Late or lost: the
    /// client gets a fresh session, and the question is forgotten.
    async fn ask_for_session(
        &self,
        recovery: &Recovery,
        send: impl FnOnce(u64) -> bool,
        timeout: Duration,
    ) -> Option<Box<KeptSession>> {
        let id = self.next_ack_id();
        let (tx, rx) = oneshot::channel();
        recovery.asks.borrow_mut().insert(id, tx);
        let answer = if send(id) {
            let answer = tokio::time::timeout(timeout, rx).await;
            answer.ok().and_then(Result::ok).flatten()
        } else {
            None
        };
        recovery.asks.borrow_mut().remove(&id);
        answer
    }

    /// Another shard asks for a session this shard keeps, or knows the keeper of (then the
    /// question goes on there, and the keeper answers the asker).
    pub(super) fn on_restore(self: &Rc<Self>, ask: RestoreAsk) {
        let Some(pid) = Sid::parse(&ask.pid) else {
            return self.restored(ask, None);
        };
        let taken = self.take_session(pid, ask.offset);
        self.release_kept();
        if let Some(session) = taken {
            // The asker joins the session's rooms as soon as it has the answer, within the
            // time it waits for one: they stay held here until then, so that in rooms mode the
            // bridge hears of the asker's join before this shard's leave and never
            // unsubscribes a room in between.
            let (ns, rooms) = (self.clone(), session.rooms.clone());
            tokio::task::spawn_local(async move {
                tokio::time::sleep(ask_timeout()).await;
                ns.release_rooms(&rooms);
            });
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
