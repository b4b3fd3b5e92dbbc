//! Cluster-wide operations: what every shard of this process, and through the Redis bridge
//! every other machine, is asked or told (fetch sockets, all rooms, sockets join / leave /
//! disconnect, server-side emit), and the messages the Socket.IO layer and the bridge exchange.
//!
//! A query is answered by each participant from its own state; the asker merges the answers
//! as they come ([`Tally`]) and stops waiting at its timeout. Participants never forward.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::sync::Notify;

use super::broadcast::BusMessage;
use super::{BroadcastOpts, NsShard, Socket};
use crate::protocol::adapter::js_date_string;
use crate::protocol::http::percent_decode;
use crate::protocol::socketio::Payload;

/// One socket as a cluster-wide `fetch_sockets` describes it, wherever it is connected: the
/// fields of Node's `RemoteSocket`.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// `{headers, time, address, xdomain, secure, issued, url, query, auth}` (SOCKETIO.md §2.4).
    pub handshake: Value,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// The application's data for the socket (`{}` for shardio sockets).
    pub data: Value,
}

/// Not every participant (a shard of this process, or another machine) answered in time, or
/// Redis was unreachable: `partial` holds the answers that came.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("not every server answered in time")]
pub struct Incomplete<T> {
    pub partial: T,
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

/// A broadcast handed to the bridge unencoded: the bridge writes the Redis form, so the origin
/// shard pays only for moving the payload.
pub(crate) struct PublishedBroadcast {
    pub nsp: String,
    pub event: String,
    pub data: Payload,
    pub opts: BroadcastOpts,
    /// The origin's collector id and timeout, when the other machines' client count and acks
    /// are wanted.
    pub ack: Option<(u64, Duration)>,
}

/// What a shard's Socket.IO layer sends to the Redis bridge.
pub(crate) enum ShardToBridge {
    /// Publish this broadcast to the other machines.
    Publish(PublishedBroadcast),
    /// Ask the other machines; the bridge answers the origin shard exactly once with
    /// [`BusMessage::Answer`] (incomplete when Redis is away or some did not answer in time).
    Ask {
        nsp: String,
        id: u64,
        query: Query,
        timeout: Duration,
    },
    /// Tell the other machines.
    Tell { nsp: String, cmd: Command },
    /// A shard's reply to a message of the bridge: `Answer`, `AckCount` or `Ack`.
    Reply(BusMessage),
}

/// Where the replies to a bus message go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyTo {
    Shard(usize),
    Bridge,
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

    pub(crate) fn expect(&mut self, expected: usize) {
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

/// A query in flight on its origin shard.
pub(crate) struct Gathering {
    pub(crate) tally: RefCell<Tally<Answer>>,
    changed: Notify,
}

impl Gathering {
    pub(crate) fn new(local: Answer) -> Rc<Self> {
        Rc::new(Gathering {
            tally: RefCell::new(Tally::new(local, None)),
            changed: Notify::new(),
        })
    }

    pub(crate) fn add(&self, answer: Answer, whole: bool) {
        self.tally.borrow_mut().add(whole, |acc| acc.merge(answer));
        self.changed.notify_one();
    }

    /// Waits until every participant answered; the caller bounds the wait.
    pub(crate) async fn done(&self) {
        while !self.tally.borrow().is_done() {
            self.changed.notified().await;
        }
    }
}

impl NsShard {
    /// This shard's own answer to `query`.
    pub(crate) fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::FetchSockets(opts) => {
                Answer::Sockets(self.selected(opts).iter().map(Socket::describe).collect())
            }
            Query::AllRooms => {
                Answer::Rooms(self.rooms.borrow().rooms().map(str::to_owned).collect())
            }
            // Only other machines run server-side handlers: this process is one server.
            Query::ServerSideEmit { .. } => Answer::Acks(Vec::new()),
        }
    }

    /// Carries out `cmd` on this shard's sockets.
    pub(crate) fn apply(&self, cmd: &Command) {
        match cmd {
            Command::Join { opts, rooms } => {
                for socket in self.selected(opts) {
                    for room in rooms {
                        socket.join(room);
                    }
                }
            }
            Command::Leave { opts, rooms } => {
                for socket in self.selected(opts) {
                    for room in rooms {
                        socket.leave(room);
                    }
                }
            }
            Command::Disconnect { opts, close } => {
                for socket in self.selected(opts) {
                    if *close {
                        socket.close();
                    } else {
                        socket.disconnect();
                    }
                }
            }
            Command::ServerSideEmit { .. } => {}
        }
    }

    /// The local sockets `opts` selects, collected so that the caller may change rooms.
    fn selected(&self, opts: &BroadcastOpts) -> Vec<Socket> {
        let sockets = self.sockets.borrow();
        let rooms = self.rooms.borrow();
        let mut out = Vec::new();
        let everyone = sockets.iter().map(|(sid, socket)| (*sid, socket.session()));
        rooms.select(&opts.rooms, &opts.except, everyone, |sid, _| {
            if let Some(s) = sockets.get(&sid) {
                out.push(s.clone());
            }
        });
        out
    }
}

impl Socket {
    /// This socket as `fetch_sockets` describes it.
    pub(crate) fn describe(&self) -> SocketInfo {
        SocketInfo {
            id: self.id().as_str().to_owned(),
            handshake: self.handshake(),
            rooms: self.rooms(),
            data: json!({}),
        }
    }

    /// Node's handshake object (SOCKETIO.md §2.4), keys in Node's order.
    pub fn handshake(&self) -> Value {
        let request = self.request();
        let issued = request
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let headers: Map<String, Value> = request
            .headers()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        let query: Map<String, Value> = request
            .query()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), Value::from(percent_decode(v)))
            })
            .collect();
        json!({
            "headers": headers,
            "time": js_date_string(issued),
            "address": request.address.ip().to_string(),
            "xdomain": request.header("origin").is_some(),
            "secure": false,
            "issued": issued,
            "url": request.url(),
            "query": query,
            "auth": self.auth(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_done_once_every_expected_answer_came() {
        let mut t = Tally::new(Answer::Rooms(vec!["a".into()]), None);
        assert!(!t.is_done(), "not done while the count is unknown");
        t.add(true, |acc| acc.merge(Answer::Rooms(vec!["b".into()])));
        t.expect(2);
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
        t.expect(0);
        assert!(t.is_whole());
    }

    #[test]
    fn answers_of_another_kind_are_ignored() {
        let mut a = Answer::empty_for(&Query::AllRooms);
        a.merge(Answer::Acks(vec![Payload::from("x")]));
        assert!(matches!(a, Answer::Rooms(r) if r.is_empty()));
    }
}
