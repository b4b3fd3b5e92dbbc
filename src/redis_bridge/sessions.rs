//! Streams mode with connection state recovery: the sessions kept in Redis, as
//! `@socket.io/redis-streams-adapter` keeps them (docs/PROTOCOL.md §4.3), so that a client
//! comes back recovered on any machine, shardio or Node.
//!
//! * A socket that drops for a recoverable reason: `SET sio:session:<pid> <base64 msgpack
//!   {sid, pid, rooms, data}> PX <window>`, through the publisher (in order with everything
//!   the shard sent before). While Redis is away the session waits in a bounded queue and is
//!   written on return with what is left of its window.
//! * A client back with `{pid, offset}`: `MULTI GET DEL EXEC` through the publisher (after any
//!   SET queued before it), then, on a connection of its own, `XRANGE key offset offset` (the
//!   offset must still be in the stream) and the entries after the offset, page by page,
//!   **up to the last entry this bridge has handed to the shards**, as many rounds as the
//!   reader moves on meanwhile. The answer reaches the asking shard's inbox after every packet
//!   it covers and before any later one: the restored socket joins its rooms between the two,
//!   and gets each packet once. A client whose offset is beyond what this bridge has read (it
//!   came from a machine whose reader was ahead) waits until the reader gets there.
//! * The bridge remembers the recoverable packets it handed to the shards lately (`Recent`,
//!   the stream's tail as this machine delivered it, bounded by `--redis-stream-maxlen` entries
//!   and `--recovery-process-bytes`). A client whose offset is in it gets what it missed from
//!   there, with no read of the stream; only what is older is read from Redis. So a restore
//!   costs one round trip (the session) in the common case, and never chases a stream that
//!   moves on under a burst of reconnections.
//! * The missed packets are the stream's broadcasts of the namespace to the session's rooms
//!   (`rooms` empty or intersecting, `except` disjoint), not volatile, each with its entry id
//!   as offset. Past `--recovery-session-bytes` of them the client gets a fresh session.

use std::collections::{HashMap, VecDeque};

use super::*;
use crate::bus::cluster::{reaches, KeptSession, RedisRestore, SessionToKeep};
use crate::metrics::RestoreResult;
use crate::protocol::adapter::{
    parse_entry_id, session_key, ClusterBody, ClusterMessage, StoredSession,
};
use crate::protocol::frame::OutFrame;

/// Connection state recovery, as the bridge needs it in streams mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecoveryBounds {
    /// How long a session is kept (`PX`).
    pub(crate) window: Duration,
    /// `--recovery-session-bytes`: what one restore may send.
    pub(crate) session_bytes: usize,
    /// `--recovery-process-bytes`: what the recent recoverable packets may take.
    pub(crate) cache_bytes: usize,
}

/// The next deadline of a request or a restore.
pub(super) fn next_deadline(pending: &Pending, sessions: &Sessions) -> Option<Instant> {
    match (pending.next_deadline(), sessions.next_deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Entries one XRANGE page of a restore returns at most (as many as one XREAD: Node's
/// `readCount`); a client away for 1.5 s under 200 entries a second needs 3 pages.
const RANGE_PAGE: usize = 100;

/// A restore in progress.
struct Restoring {
    /// The shard that asks, and its id for the answer.
    asker: usize,
    ns: usize,
    id: u64,
    offset: (u64, u64),
    /// The session, once taken from Redis.
    session: Option<StoredSession>,
    missed: Vec<Arc<RemoteBroadcast>>,
    bytes: usize,
    /// The stream is read up to this id; it starts at the client's offset.
    read_to: String,
    /// Whether the client's offset was found in the stream.
    checked: bool,
    /// A read of the stream in flight.
    reading: bool,
    deadline: Instant,
}

/// The result of one read of the stream for a restore.
pub(super) struct RangeRead {
    restore: u64,
    /// The last id the read covered (what is not in the stream up to it is not coming).
    to: String,
    result: redis::RedisResult<(bool, Vec<(String, StreamEntry)>)>,
}

/// The restores in flight, the sessions waiting for Redis, and the recent packets.
pub(super) struct Sessions {
    restores: HashMap<u64, Restoring>,
    next: u64,
    waiting: VecDeque<(Instant, String, String)>,
    reads: mpsc::Sender<RangeRead>,
    recent: Recent,
}

/// The recoverable packets handed to the shards lately, in stream order, with their entry ids:
/// every one handed after `floor` is here.
#[derive(Default)]
struct Recent {
    entries: VecDeque<((u64, u64), Arc<RemoteBroadcast>, usize)>,
    bytes: usize,
    floor: (u64, u64),
}

impl Recent {
    /// Forgets everything; from now on, every packet after `from` is kept.
    fn reset(&mut self, from: (u64, u64)) {
        self.entries.clear();
        self.bytes = 0;
        self.floor = from;
    }

    /// Keeps `packet` (handed with entry id `id`), then gives the oldest away to the bounds.
    fn push(
        &mut self,
        id: (u64, u64),
        packet: Arc<RemoteBroadcast>,
        (count, bytes): (usize, usize),
    ) {
        let size = packet.frames.iter().map(OutFrame::len).sum::<usize>()
            + std::mem::size_of::<RemoteBroadcast>();
        self.bytes += size;
        self.entries.push_back((id, packet, size));
        while self.entries.len() > count || self.bytes > bytes {
            let Some((id, _, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.floor = id;
        }
    }

    /// Whether every packet after `id` that was handed is here.
    fn covers(&self, id: (u64, u64)) -> bool {
        self.floor <= id
    }

    /// Whether the packet with `id` is here.
    fn holds(&self, id: (u64, u64)) -> bool {
        self.entries
            .binary_search_by_key(&id, |(i, _, _)| *i)
            .is_ok()
    }

    /// The packets after `id` of namespace `nsp` that reach `rooms`, in order, with their bytes.
    fn after<'a>(
        &'a self,
        id: (u64, u64),
        nsp: &'a str,
        rooms: &'a [String],
    ) -> impl Iterator<Item = (&'a Arc<RemoteBroadcast>, usize)> + 'a {
        let start = self.entries.partition_point(|(i, _, _)| *i <= id);
        self.entries
            .range(start..)
            .filter(move |(_, p, _)| p.nsp == nsp && reaches(rooms, &p.opts.rooms, &p.opts.except))
            .map(|(_, p, size)| (p, *size))
    }
}

impl Sessions {
    /// No restore yet; the reads of the stream for restores come back on the receiver.
    pub(super) fn new() -> (Self, mpsc::Receiver<RangeRead>) {
        let (reads, rx) = mpsc::channel(64);
        let sessions = Sessions {
            restores: HashMap::new(),
            next: 0,
            waiting: VecDeque::new(),
            reads,
            recent: Recent::default(),
        };
        (sessions, rx)
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.restores.values().map(|r| r.deadline).min()
    }
}

/// The session's `data` for the socket: JSON as `JSON.stringify` would write it.
fn data_json(data: JsValue) -> serde_json::Value {
    serde_json::to_value(data).unwrap_or(serde_json::Value::Null)
}

/// Reads the stream for a restore: whether `check` (the client's offset) is there, then the
/// entries after `from` up to `to`, one page of them at most (the bridge asks for the next
/// page once it has kept what it needs of this one: a restore holds one page of the stream at
/// a time, whatever the stream's length).
async fn read_range(
    mut conn: redis::aio::MultiplexedConnection,
    key: String,
    check: Option<String>,
    (from, to): (String, String),
) -> redis::RedisResult<(bool, Vec<(String, StreamEntry)>)> {
    if let Some(offset) = check {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(&offset)
            .arg(&offset)
            .query_async(&mut conn)
            .await?;
        if streams::range_entries(&reply).is_empty() {
            return Ok((false, Vec::new()));
        }
    }
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(&key)
        .arg(format!("({from}"))
        .arg(&to)
        .arg("COUNT")
        .arg(RANGE_PAGE)
        .query_async(&mut conn)
        .await?;
    Ok((true, streams::range_entries(&reply)))
}

impl Bridge {
    /// Whether recovery sessions are kept in Redis (streams mode with recovery on).
    pub(super) fn sessions_in_redis(&self) -> bool {
        self.stream.is_some() && self.recovery.is_some()
    }

    /// A dropped socket's session: to Redis for the window, or to wait while Redis is away.
    pub(super) fn keep_session(&mut self, keep: SessionToKeep) {
        let Some(RecoveryBounds { window, .. }) = self.recovery else {
            return;
        };
        let data = serde_json::from_value(keep.data).unwrap_or(JsValue::Null);
        let session = StoredSession {
            sid: keep.sid,
            pid: keep.pid,
            rooms: keep.rooms,
            data,
        };
        let key = session_key(&session.pid);
        let value = session.encode();
        if self.out.is_some() {
            let px = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            self.send_out(Outgoing::SetSession { key, value, px });
        } else if self.sessions.waiting.len() < self.config.queue {
            self.sessions
                .waiting
                .push_back((Instant::now(), key, value));
        } else {
            self.count_drop();
        }
    }

    /// On a fresh connection: the sessions kept while Redis was away, with what is left of
    /// their window (those past it are gone).
    pub(super) fn flush_sessions(&mut self) {
        let Some(RecoveryBounds { window, .. }) = self.recovery else {
            return;
        };
        let waiting = std::mem::take(&mut self.sessions.waiting);
        for (since, key, value) in waiting {
            let left = window.saturating_sub(since.elapsed());
            let px = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            if px > 0 {
                self.send_out(Outgoing::SetSession { key, value, px });
            }
        }
    }

    /// A client came back on shard `asker` with `{pid, offset}`.
    pub(super) fn restore(&mut self, asker: usize, ask: RedisRestore) {
        let ns = self.ns_index(&ask.nsp);
        let offset = parse_entry_id(&ask.offset);
        // Restores in flight are bounded like requests: past the bound, a fresh session.
        let room = self.sessions.restores.len() < pending::MAX_PENDING;
        let (Some(ns), Some(offset), true) = (ns, offset, self.sessions_in_redis() && room) else {
            self.stats().restored(RestoreResult::Refused);
            return self.answer_restore(asker, &ask.nsp, ask.id, None);
        };
        self.sessions.next += 1;
        let restore = self.sessions.next;
        let take = Outgoing::TakeSession {
            restore,
            key: session_key(&ask.pid),
        };
        if self.out.is_none() || !self.send_out(take) {
            self.stats().restored(RestoreResult::Refused);
            return self.answer_restore(asker, &ask.nsp, ask.id, None);
        }
        let wait = Duration::from_millis(crate::config::defaults::RECOVERY_REDIS_TIMEOUT_MS);
        let restoring = Restoring {
            asker,
            ns,
            id: ask.id,
            offset,
            session: None,
            missed: Vec::new(),
            bytes: 0,
            read_to: ask.offset,
            checked: false,
            reading: false,
            // Before the shard stops waiting: a session taken is never answered to nobody.
            deadline: Instant::now() + wait.saturating_sub(Duration::from_secs(1)),
        };
        self.sessions.restores.insert(restore, restoring);
    }

    /// Redis's answer to `GET` and `DEL` of a session.
    pub(super) fn on_session_taken(&mut self, restore: u64, value: Option<String>) {
        let Some(r) = self.sessions.restores.get_mut(&restore) else {
            return;
        };
        match value.map(|v| StoredSession::decode(&v)) {
            Some(Ok(session)) => {
                r.session = Some(session);
                self.advance(restore);
            }
            Some(Err(e)) => {
                self.malformed("recovery session", &e);
                self.finish_restore(restore, RestoreResult::NoSession);
            }
            // Expired, never kept, or taken by another server.
            None => self.finish_restore(restore, RestoreResult::NoSession),
        }
    }

    /// A read of the stream for a restore came back.
    pub(super) fn on_range_read(&mut self, read: RangeRead) {
        let Some(r) = self.sessions.restores.get_mut(&read.restore) else {
            return;
        };
        r.reading = false;
        let entries = match read.result {
            Ok((true, entries)) => entries,
            // The offset was trimmed from the stream: too old to recover from.
            Ok((false, _)) => return self.finish_restore(read.restore, RestoreResult::OffsetGone),
            Err(e) => {
                tracing::debug!(error = %e, "reading the stream for a recovery failed");
                return self.finish_restore(read.restore, RestoreResult::TimedOut);
            }
        };
        r.checked = true;
        let (ns, limit) = (r.ns, self.recovery.map_or(0, |r| r.session_bytes));
        let rooms = r
            .session
            .as_ref()
            .map(|s| s.rooms.clone())
            .unwrap_or_default();
        let mut missed = Vec::new();
        let mut bytes = 0;
        for (id, entry) in entries {
            if entry.nsp != self.namespaces[ns].name || entry.kind != "3" {
                continue;
            }
            let broadcast = match ClusterMessage::from_entry(entry) {
                Ok(ClusterMessage {
                    body: ClusterBody::Broadcast { packet, opts },
                    ..
                }) if !opts.flags.volatile && reaches(&rooms, &opts.rooms, &opts.except) => {
                    self.decode_event(ns, packet, opts, None, Some(&id))
                }
                _ => None,
            };
            if let Some(packet) = broadcast {
                bytes += packet.frames.iter().map(OutFrame::len).sum::<usize>();
                missed.push(packet);
            }
        }
        let Some(r) = self.sessions.restores.get_mut(&read.restore) else {
            return;
        };
        // Read up to `to`: what is not there up to it (trimmed meanwhile) is not coming.
        if parse_entry_id(&read.to) > parse_entry_id(&r.read_to) {
            r.read_to = read.to;
        }
        r.bytes += bytes;
        r.missed.extend(missed);
        if r.bytes > limit {
            tracing::debug!(
                bytes = r.bytes,
                "a recovery session missed more than --recovery-session-bytes: fresh session"
            );
            return self.finish_restore(read.restore, RestoreResult::TooLarge);
        }
        self.advance(read.restore);
    }

    /// The reader handed more entries to the shards: restores waiting for it go on.
    pub(super) fn advance_restores(&mut self) {
        let waiting: Vec<u64> = self
            .sessions
            .restores
            .iter()
            .filter(|(_, r)| r.session.is_some() && !r.reading)
            .map(|(id, _)| *id)
            .collect();
        for restore in waiting {
            self.advance(restore);
        }
    }

    /// Takes what the shards have from the recent packets, or reads the stream for what is
    /// older, or waits for the reader to reach the client's offset; answers once done.
    fn advance(&mut self, restore: u64) {
        let handed = self.stream.as_ref().and_then(|s| s.last_read.clone());
        let conn = self.commands.clone();
        let key = self.config.stream.clone();
        let limit = self.recovery.map_or(0, |r| r.session_bytes);
        let Some(r) = self.sessions.restores.get_mut(&restore) else {
            return;
        };
        if r.reading || r.session.is_none() {
            return;
        }
        let (Some(handed), Some(conn)) = (handed, conn) else {
            return;
        };
        let handed_id = parse_entry_id(&handed).unwrap_or((0, 0));
        let read_id = parse_entry_id(&r.read_to).unwrap_or((0, 0));
        let recent = &self.sessions.recent;
        if !r.checked && recent.holds(r.offset) {
            r.checked = true;
        }
        if r.checked && recent.covers(read_id) {
            // Everything handed after `read_to` is in the recent packets.
            if handed_id < r.offset {
                return; // The client's offset is beyond what the reader has handed yet.
            }
            let nsp = self.namespaces[r.ns].name.as_str();
            let rooms = r.session.as_ref().map_or(&[][..], |s| s.rooms.as_slice());
            for (packet, size) in recent.after(read_id, nsp, rooms) {
                r.bytes += size;
                r.missed.push(packet.clone());
            }
            let result = if r.bytes <= limit {
                RestoreResult::Recovered
            } else {
                tracing::debug!(
                    bytes = r.bytes,
                    "a recovery session missed more than --recovery-session-bytes: fresh session"
                );
                RestoreResult::TooLarge
            };
            return self.finish_restore(restore, result);
        }
        if !r.checked || read_id < handed_id {
            r.reading = true;
            let check = (!r.checked).then(|| r.read_to.clone());
            let range = (r.read_to.clone(), handed.clone());
            let tx = self.sessions.reads.clone();
            tokio::task::spawn_local(async move {
                let result = read_range(conn, key, check, range).await;
                // A full page covers up to its last entry; a shorter one, all up to `handed`.
                let to = match &result {
                    Ok((_, page)) if page.len() == RANGE_PAGE => page.last().map(|(id, _)| id),
                    _ => None,
                };
                let to = to.cloned().unwrap_or(handed);
                let _ = tx
                    .send(RangeRead {
                        restore,
                        to,
                        result,
                    })
                    .await;
            });
        } else if handed_id >= r.offset {
            self.finish_restore(restore, RestoreResult::Recovered);
        }
        // Else the client's offset is beyond what the reader has handed: it gets there.
    }

    /// Remembers a recoverable packet handed to the shards with entry id `id`.
    pub(super) fn remember(&mut self, id: &str, packet: &Arc<RemoteBroadcast>) {
        let (Some(id), Some(recovery)) = (parse_entry_id(id), self.recovery) else {
            return;
        };
        let maxlen = usize::try_from(self.config.stream_maxlen).unwrap_or(usize::MAX);
        let bounds = (maxlen, recovery.cache_bytes);
        self.sessions.recent.push(id, packet.clone(), bounds);
    }

    /// The reader starts at `from`, which is not where it stopped (a first connection, or a
    /// stream that came back behind): the recent packets start over there.
    pub(super) fn stream_restarted(&mut self, from: &str) {
        let from = parse_entry_id(from).unwrap_or((0, 0));
        self.sessions.recent.reset(from);
    }

    /// Answers a restore: the session and what it missed, or a fresh session; counted.
    fn finish_restore(&mut self, restore: u64, result: RestoreResult) {
        let Some(r) = self.sessions.restores.remove(&restore) else {
            return;
        };
        self.stats().restored(result);
        let session = match (result, r.session) {
            (RestoreResult::Recovered, Some(s)) => Some(Box::new(KeptSession {
                sid: s.sid,
                rooms: s.rooms,
                data: data_json(s.data),
                missed: r.missed,
                high_water: Vec::new(),
            })),
            _ => None,
        };
        let nsp = self.namespaces[r.ns].name.clone();
        self.answer_restore(r.asker, &nsp, r.id, session);
    }

    fn answer_restore(&self, asker: usize, nsp: &str, id: u64, session: Option<Box<KeptSession>>) {
        let reply = Reply::Restored {
            nsp: nsp.to_owned(),
            id,
            session,
        };
        self.reply_to_shard(asker, reply);
    }

    /// Restores past their deadline, or all of them when Redis is lost: fresh sessions.
    pub(super) fn expire_restores(&mut self, all: bool) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .sessions
            .restores
            .iter()
            .filter(|(_, r)| all || r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for restore in due {
            self.finish_restore(restore, RestoreResult::TimedOut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::cluster::BroadcastOpts;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|r| r.to_string()).collect()
    }

    fn packet(nsp: &str, to: &[&str]) -> Arc<RemoteBroadcast> {
        Arc::new(RemoteBroadcast {
            nsp: nsp.into(),
            opts: BroadcastOpts {
                rooms: strings(to),
                ..BroadcastOpts::default()
            },
            frames: vec![OutFrame::text(8, |b| b.extend_from_slice(b"42[\"m\"]"))],
            ack: None,
            offset: Some(IN_STREAM),
        })
    }

    #[test]
    fn the_recent_packets_cover_what_came_after_their_floor() {
        let mut recent = Recent::default();
        recent.reset((10, 0));
        let big = (usize::MAX, usize::MAX);
        recent.push((11, 0), packet("/", &["a"]), big);
        recent.push((11, 1), packet("/", &["b"]), big);
        recent.push((12, 0), packet("/chat", &["a"]), big);
        recent.push((13, 0), packet("/", &[]), big);
        assert!(recent.covers((10, 0)) && recent.covers((11, 1)));
        assert!(!recent.covers((9, 5)), "before the floor: read from Redis");
        assert!(recent.holds((11, 1)) && !recent.holds((11, 2)));
        let rooms = strings(&["a"]);
        let after: Vec<_> = recent.after((11, 0), "/", &rooms).collect();
        assert_eq!(
            after.len(),
            1,
            "b is not its room, /chat not its namespace, 13-0 is"
        );
        assert!(after[0].0.opts.rooms.is_empty());
        // Two entries at most: the oldest go, and the floor follows them.
        recent.push((14, 0), packet("/", &[]), (2, usize::MAX));
        assert_eq!(recent.entries.len(), 2);
        assert_eq!(recent.floor, (12, 0));
        assert!(!recent.covers((11, 0)) && recent.covers((12, 0)));
        // And by bytes.
        recent.push((15, 0), packet("/", &[]), (usize::MAX, 1));
        assert!(recent.entries.is_empty() && recent.bytes == 0);
        assert_eq!(recent.floor, (15, 0));
    }
}
