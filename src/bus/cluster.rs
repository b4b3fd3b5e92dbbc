//! What the Socket.IO layers of the shards and the Redis bridge say to each other: broadcasts
//! encoded by another shard, broadcasts to publish, cluster-wide questions and commands, and
//! their replies. Plain data, shared by `socketio/` and `redis_bridge/`, which both stand on
//! this floor; neither knows the other.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::frame::OutFrame;
use crate::protocol::socketio::Payload;

/// Who receives a broadcast, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOpts {
    /// Target rooms; empty means the whole namespace.
    pub rooms: Vec<String>,
    /// Sockets in any of these rooms are skipped (socket ids are rooms too).
    pub except: Vec<String>,
    /// Drop the packet for a client whose queue is full instead of disconnecting it.
    pub volatile: bool,
    /// This process only: never sent to other machines (shards of this process still get it).
    pub local: bool,
}

/// Whether a broadcast to `to` (empty: the whole namespace) except `except` was meant for a
/// socket in `rooms`: the filter of a recovery's missed packets (Node's `shouldIncludePacket`
/// and `SessionAwareAdapter.restoreSession`).
pub(crate) fn reaches(rooms: &[String], to: &[String], except: &[String]) -> bool {
    let included = to.is_empty() || rooms.iter().any(|r| to.contains(r));
    included && !rooms.iter().any(|r| except.contains(r))
}

/// One socket as a cluster-wide `fetch_sockets` describes it, wherever it is connected: the
/// fields of Node's `RemoteSocket`.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// `{headers, time, address, xdomain, secure, issued, url, query, auth}`
    /// (docs/PROTOCOL.md §2.4).
    pub handshake: Value,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// The application's `socket.data` (`{}` unless the application set it).
    pub data: Value,
    /// The machine and shard holding it, when a shardio server holds it (`None` for sockets
    /// of Node servers).
    pub location: Option<SocketLocation>,
}

/// Where a socket lives in a shardio cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketLocation {
    /// The server's `--node-name`.
    pub machine: String,
    /// The shard that owns it.
    pub shard: usize,
}

/// Bits of an ack id that count; the low byte above them says who issued it.
const ACK_COUNTER_BITS: u32 = 44;
/// The low byte of the ids the bridge issues. Shard indexes stop at 254
/// ([`crate::config::MAX_SHARDS`]), so bridge ids never collide with a shard's.
const BRIDGE_ACK_BYTE: u64 = 0xFF;

/// The `n`th ack (or query) id issued by `issuer`: a 44-bit counter, then one byte naming the
/// issuer (the shard index, or 0xFF for the bridge). Ids are unique across the process, so a
/// socket can hold the broadcast ids of every shard without collisions, and an id fits in a
/// JavaScript number. The one place this layout is decided.
pub(crate) fn ack_id(n: u64, issuer: Origin) -> u64 {
    let low = match issuer {
        Origin::Shard(shard) => shard as u64 & 0xFF,
        Origin::Bridge => BRIDGE_ACK_BYTE,
    };
    ((n & ((1 << ACK_COUNTER_BITS) - 1)) << 8) | low
}

/// Bits of a recovery offset's counter; the top byte above them names the origin.
const OFFSET_COUNTER_BITS: u32 = 56;

/// The `n`th recovery offset issued by `origin` (a shard, or the bridge for packets from other
/// machines): the origin's byte as in [`ack_id`], then a 56-bit counter. Written in hex as the
/// last argument of a recoverable packet. The one place this layout is decided.
pub(crate) fn recovery_offset(n: u64, origin: Origin) -> u64 {
    let top = match origin {
        Origin::Shard(shard) => shard as u64 & 0xFF,
        Origin::Bridge => BRIDGE_ACK_BYTE,
    };
    (top << OFFSET_COUNTER_BITS) | (n & ((1 << OFFSET_COUNTER_BITS) - 1))
}

/// Who issued an offset (`None` for a shard index this process cannot have), and its counter.
pub(crate) fn offset_parts(offset: u64) -> (Option<Origin>, u64) {
    let top = offset >> OFFSET_COUNTER_BITS;
    let origin = match top {
        BRIDGE_ACK_BYTE => Some(Origin::Bridge),
        shard if (shard as usize) < crate::config::MAX_SHARDS => {
            Some(Origin::Shard(shard as usize))
        }
        _ => None,
    };
    (origin, offset & ((1 << OFFSET_COUNTER_BITS) - 1))
}

/// The `offset` of a recoverable packet read from the Redis stream when sessions are kept in
/// Redis (`--redis-mode streams`): its frames carry the stream entry id, every shard gets it,
/// and no shard logs it (Redis holds it).
pub(crate) const IN_STREAM: u64 = u64::MAX;

/// The offset string a recoverable packet carries as its last argument.
pub(crate) fn format_offset(offset: u64) -> String {
    format!("{offset:x}")
}

/// The offset a client sent back; `None` for anything this server did not write.
pub(crate) fn parse_offset(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Who sent a bus message, and so where its replies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A shard of this process, by index.
    Shard(usize),
    /// The Redis bridge, on behalf of the other machines.
    Bridge,
}

/// A broadcast encoded once by a shard or the bridge; receivers deliver it to their own
/// sockets and never forward it.
#[derive(Debug)]
pub(crate) struct RemoteBroadcast {
    pub(crate) nsp: String,
    pub(crate) opts: BroadcastOpts,
    pub(crate) frames: Vec<OutFrame>,
    /// The ack id, when the origin collects acks.
    pub(crate) ack: Option<u64>,
    /// The recovery offset the frames carry (`--recovery-window`), when the packet is
    /// recoverable: the origin in the top byte, its counter below (`socketio::recovery`).
    pub(crate) offset: Option<u64>,
}

/// A broadcast handed to the bridge unencoded: the bridge writes the Redis form, so the origin
/// shard pays only for moving the payload.
#[derive(Debug)]
pub(crate) struct PublishedBroadcast {
    pub(crate) nsp: String,
    pub(crate) event: String,
    pub(crate) data: Payload,
    pub(crate) opts: BroadcastOpts,
    /// The origin's collector id and timeout, when the other machines' client count and acks
    /// are wanted.
    pub(crate) ack: Option<(u64, Duration)>,
}

/// What a query asks of every participant.
#[derive(Debug, Clone)]
pub(crate) enum Query {
    /// The matching sockets, described.
    FetchSockets(BroadcastOpts),
    /// Every room with a member.
    AllRooms,
    /// Run the server-side handler (other machines only) and collect one ack from each.
    ServerSideEmit { event: String, data: Payload },
}

/// One participant's answer, or several merged.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Sockets(Vec<SocketInfo>),
    Rooms(Vec<String>),
    Acks(Vec<Payload>),
}

impl Answer {
    /// The empty answer of the kind `query` expects.
    pub(crate) fn empty_for(query: &Query) -> Answer {
        match query {
            Query::FetchSockets(_) => Answer::Sockets(Vec::new()),
            Query::AllRooms => Answer::Rooms(Vec::new()),
            Query::ServerSideEmit { .. } => Answer::Acks(Vec::new()),
        }
    }

    /// Adds another participant's answer; an answer of another kind is ignored.
    pub(crate) fn merge(&mut self, other: Answer) {
        match (self, other) {
            (Answer::Sockets(a), Answer::Sockets(b)) => a.extend(b),
            (Answer::Rooms(a), Answer::Rooms(b)) => a.extend(b),
            (Answer::Acks(a), Answer::Acks(b)) => a.extend(b),
            _ => {}
        }
    }
}

/// What every participant is told to do; nobody answers.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    Join {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    Leave {
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    Disconnect {
        opts: BroadcastOpts,
        close: bool,
    },
    /// For the other machines only: a server-side event whose sender wants no ack.
    ServerSideEmit {
        event: String,
        data: Payload,
    },
}

/// The merged answers to one query and how many participants have answered. Pure.
#[derive(Debug)]
pub(crate) struct Tally<T> {
    /// Participants that owe an answer, once known (the bridge learns it from Redis).
    expected: Option<usize>,
    received: usize,
    /// False once a participant said its own answer is partial.
    whole: bool,
    pub(crate) acc: T,
}

impl<T> Tally<T> {
    pub(crate) fn new(acc: T, expected: Option<usize>) -> Self {
        Tally {
            expected,
            received: 0,
            whole: true,
            acc,
        }
    }

    /// Sets how many participants owe an answer, once that is known.
    pub(crate) fn set_expected(&mut self, expected: usize) {
        self.expected = Some(expected);
    }

    /// Counts one participant's answer, merged into the accumulator by `merge`.
    pub(crate) fn add(&mut self, whole: bool, merge: impl FnOnce(&mut T)) {
        self.received += 1;
        self.whole &= whole;
        merge(&mut self.acc);
    }

    /// Every expected participant has answered.
    pub(crate) fn is_done(&self) -> bool {
        self.expected.is_some_and(|n| self.received >= n)
    }

    /// Done, and no answer was partial.
    pub(crate) fn is_whole(&self) -> bool {
        self.is_done() && self.whole
    }
}

/// A message between the Socket.IO layers of two shards, or from the bridge to a shard. Each
/// names its namespace; replies go back to the message's [`Origin`].
#[derive(Debug)]
pub(crate) enum SioMsg {
    /// Deliver to local sockets; never forward. Shared by every receiving shard.
    Broadcast(Arc<RemoteBroadcast>),
    /// A reply to something the receiving shard started.
    Reply(Box<Reply>),
    /// Answer `query` from local state with one [`Reply::Answer`].
    Query {
        nsp: String,
        id: u64,
        query: Box<Query>,
    },
    /// Carry out `cmd` on local sockets.
    Command { nsp: String, cmd: Box<Command> },
    /// From the bridge to one shard: run a namespace's server-side handler.
    ServerSideEmit(Box<ServerSideEmit>),
    /// To the shard a recovery session id names (or the shard it says keeps the session):
    /// hand over that session and the packets it missed, with one [`Reply::Restored`] to the
    /// asker.
    Restore(Box<RestoreAsk>),
    /// To the shard a recovery session id names, from the shard that kept the session of a
    /// socket that had moved there: where to find it.
    KeptAt { nsp: String, pid: String },
}

/// A client came back on another shard with `{pid, offset}`; the session's home shard answers.
#[derive(Debug)]
pub(crate) struct RestoreAsk {
    pub(crate) nsp: String,
    pub(crate) id: u64,
    pub(crate) pid: String,
    /// The offset of the last packet the client got; `None` when it got none.
    pub(crate) offset: Option<u64>,
    /// The shard the client came back on, which waits for the answer.
    pub(crate) asker: usize,
}

/// A kept session handed to the shard its client came back on.
#[derive(Debug)]
pub(crate) struct KeptSession {
    /// The socket id, kept.
    pub(crate) sid: String,
    /// Its rooms, its own id included.
    pub(crate) rooms: Vec<String>,
    /// Its `socket.data`.
    pub(crate) data: Value,
    /// The packets it missed, in the order its home shard delivered them.
    pub(crate) missed: Vec<Arc<RemoteBroadcast>>,
    /// The home shard's highest counter seen from each origin when it answered: the new shard
    /// sends what it saw beyond these, and skips what it gets up to them. Empty from Redis:
    /// the bridge's answer reaches the shard after every packet it covers.
    pub(crate) high_water: Vec<u64>,
}

/// A reply to a broadcast-with-ack or a query, sent to its origin (a shard, or the bridge).
#[derive(Debug)]
pub(crate) enum Reply {
    /// How many local sockets received broadcast-with-ack `id`.
    AckCount { nsp: String, id: u64, count: usize },
    /// One client's answer to broadcast-with-ack `id`.
    Ack {
        nsp: String,
        id: u64,
        payload: Payload,
    },
    /// An answer to query `id`; `whole` is false when the answerer itself missed some
    /// (the bridge, when machines did not answer or Redis is away).
    Answer {
        nsp: String,
        id: u64,
        answer: Answer,
        whole: bool,
    },
    /// The answer to [`SioMsg::Restore`] `id`: the session, or `None` when it cannot be
    /// recovered (unknown, expired, or its packets gone).
    Restored {
        nsp: String,
        id: u64,
        session: Option<Box<KeptSession>>,
    },
    /// From the bridge: Redis has confirmed the subscriptions that this shard's room reports
    /// up to `seq` needed (or Redis is away, and the next connection subscribes them before
    /// anything is received).
    RoomsSubscribed { nsp: String, seq: u64 },
}

/// A server-side event from another machine; with `ack`, the handler's answer goes back as
/// one [`Reply::Answer`] to query `ack`.
#[derive(Debug)]
pub(crate) struct ServerSideEmit {
    pub(crate) nsp: String,
    pub(crate) event: String,
    pub(crate) data: Payload,
    pub(crate) ack: Option<u64>,
}

impl SioMsg {
    /// The namespace the message is for.
    pub(crate) fn nsp(&self) -> &str {
        match self {
            SioMsg::Broadcast(b) => &b.nsp,
            SioMsg::Reply(r) => r.nsp(),
            SioMsg::Query { nsp, .. } | SioMsg::Command { nsp, .. } => nsp,
            SioMsg::ServerSideEmit(e) => &e.nsp,
            SioMsg::Restore(r) => &r.nsp,
            SioMsg::KeptAt { nsp, .. } => nsp,
        }
    }
}

impl Reply {
    /// The namespace of the broadcast or query replied to.
    pub(crate) fn nsp(&self) -> &str {
        match self {
            Reply::AckCount { nsp, .. }
            | Reply::Ack { nsp, .. }
            | Reply::Answer { nsp, .. }
            | Reply::Restored { nsp, .. } => nsp,
            Reply::RoomsSubscribed { nsp, .. } => nsp,
        }
    }
}

/// What a shard's Socket.IO layer sends to the Redis bridge.
#[derive(Debug)]
pub(crate) enum BridgeMsg {
    /// Publish this broadcast to the other machines.
    Publish(Box<PublishedBroadcast>),
    /// Ask the other machines; the bridge answers the origin shard exactly once with
    /// [`Reply::Answer`] (incomplete when Redis is away or some did not answer in time).
    Ask {
        nsp: String,
        id: u64,
        query: Box<Query>,
        timeout: Duration,
    },
    /// Tell the other machines.
    Tell { nsp: String, cmd: Box<Command> },
    /// A shard's reply to a message of the bridge.
    Reply(Box<Reply>),
    /// Rooms of namespace `nsp` that gained their first or lost their last member on the
    /// sending shard, since its last report (`--redis-subscribe rooms`).
    Rooms(Box<RoomChanges>),
    /// Streams mode with recovery: keep this session in Redis for the window.
    KeepSession(Box<SessionToKeep>),
    /// Streams mode with recovery: take session `pid` from Redis, with the packets after
    /// `offset` (a stream entry id); the bridge answers [`Reply::Restored`] with `id`.
    Restore(Box<RedisRestore>),
}

/// A dropped socket's session, for Redis (`sio:session:<pid>`).
#[derive(Debug)]
pub(crate) struct SessionToKeep {
    pub(crate) pid: String,
    pub(crate) sid: String,
    /// Its rooms, its own id included.
    pub(crate) rooms: Vec<String>,
    pub(crate) data: Value,
}

/// A client back with `{pid, offset}`, in streams mode with recovery.
#[derive(Debug)]
pub(crate) struct RedisRestore {
    pub(crate) nsp: String,
    pub(crate) id: u64,
    pub(crate) pid: String,
    /// The entry id of the last packet the client got.
    pub(crate) offset: String,
}

/// A shard's batch of room changes: each room with whether the shard now holds a member of it
/// (the state, not a difference: a report repeated or reordered within the batch is harmless,
/// the last one counts). `seq` numbers the shard's reports for the namespace from 1; the
/// bridge answers [`Reply::RoomsSubscribed`] with it.
#[derive(Debug)]
pub(crate) struct RoomChanges {
    pub(crate) nsp: String,
    pub(crate) rooms: Vec<(String, bool)>,
    pub(crate) seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_ids_never_collide_with_shard_ids() {
        let bridge: std::collections::HashSet<u64> =
            (1..1000).map(|n| ack_id(n, Origin::Bridge)).collect();
        assert_eq!(bridge.len(), 999);
        assert!(bridge.iter().all(|id| id & 0xFF == 0xFF));
        for shard in 0..crate::config::MAX_SHARDS {
            let id = ack_id(7, Origin::Shard(shard));
            assert_eq!(id, (7 << 8) | shard as u64);
            assert!(!bridge.contains(&id));
        }
    }

    #[test]
    fn ack_ids_wrap_within_44_bits_and_fit_a_javascript_number() {
        let last = ack_id((1 << 44) - 1, Origin::Shard(3));
        assert!(last < (1 << 53), "a JavaScript number holds it exactly");
        assert_eq!(ack_id(1 << 44, Origin::Shard(3)), 3, "the counter wraps");
    }

    #[test]
    fn a_tally_is_done_once_every_expected_answer_came() {
        let mut t = Tally::new(Answer::Rooms(vec!["a".into()]), None);
        assert!(!t.is_done(), "not done while the count is unknown");
        t.add(true, |acc| acc.merge(Answer::Rooms(vec!["b".into()])));
        t.set_expected(2);
        assert!(!t.is_done());
        t.add(false, |acc| acc.merge(Answer::Rooms(vec!["c".into()])));
        assert!(t.is_done());
        assert!(!t.is_whole(), "one participant answered partially");
        let Answer::Rooms(rooms) = &t.acc else {
            panic!("rooms expected")
        };
        assert_eq!(rooms, &["a", "b", "c"]);
    }

    #[test]
    fn nobody_to_wait_for_is_done_at_once() {
        let mut t = Tally::new(Answer::Acks(Vec::new()), None);
        t.set_expected(0);
        assert!(t.is_whole());
    }

    #[test]
    fn answers_of_another_kind_are_ignored() {
        let mut a = Answer::empty_for(&Query::AllRooms);
        a.merge(Answer::Acks(vec![Payload::from("x")]));
        assert!(matches!(a, Answer::Rooms(r) if r.is_empty()));
    }

    #[test]
    fn a_session_gets_what_reached_its_rooms_as_node_decides() {
        let strings = |items: &[&str]| items.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let rooms = strings(&["sid1", "r1"]);
        let reach = |to: &[&str], except: &[&str]| reaches(&rooms, &strings(to), &strings(except));
        assert!(reach(&[], &[]), "the whole namespace");
        assert!(reach(&["r1", "r2"], &[]));
        assert!(reach(&["sid1"], &[]), "its own id");
        assert!(!reach(&["r2"], &[]));
        assert!(!reach(&[], &["r1"]), "excluded");
        assert!(!reach(&["r1"], &["sid1"]));
    }

    #[test]
    fn bus_messages_stay_small() {
        // Every inbox slot is this size: the rare, large messages are boxed.
        assert!(std::mem::size_of::<SioMsg>() <= 48);
        assert!(std::mem::size_of::<BridgeMsg>() <= 64);
    }
}
