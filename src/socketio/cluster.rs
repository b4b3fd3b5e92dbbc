//! Cluster-wide operations: what every shard of this process, and through the Redis bridge
//! every other machine, is asked or told (fetch sockets, all rooms, sockets join / leave /
//! disconnect, server-side emit).
//!
//! A query is answered by each participant from its own state; the asker merges the answers
//! as they come (`Tally`) and stops waiting at its timeout. Participants never forward.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use tokio::sync::Notify;

use super::broadcast::BroadcastAckError;
use super::broadcast::{check_event, BroadcastOperator};
use super::socket::{EmitError, Socket};
use super::NsShard;
use crate::bus::cluster::{
    Answer, BridgeMsg, BroadcastOpts, Command, Origin, Query, Reply, SioMsg, SocketInfo, Tally,
};
use crate::protocol::socketio::Payload;

/// Open queries of a namespace on their origin shard, by id.
pub(super) type Gatherings = RefCell<HashMap<u64, Rc<Gathering>>>;

/// Not every participant (a shard of this process, or another machine) answered in time, or
/// Redis was unreachable: `partial` holds the answers that came.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("not every server answered in time")]
pub struct Incomplete<T> {
    /// The answers that came.
    pub partial: T,
}

/// Answers a server-side emit whose sender waits (Node forwards only the first argument).
/// Consumed by `send`, so it answers at most once.
pub struct ServerSideAck {
    ns: Rc<NsShard>,
    id: u64,
}

impl std::fmt::Debug for ServerSideAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSideAck")
            .field("nsp", &self.ns.name)
            .field("id", &self.id)
            .finish()
    }
}

impl ServerSideAck {
    /// Sends the answer.
    pub fn send(self, data: impl Into<Payload>) {
        self.ns.reply(
            Origin::Bridge,
            Reply::Answer {
                nsp: self.ns.name.clone(),
                id: self.id,
                answer: Answer::Acks(vec![data.into()]),
                whole: true,
            },
        );
    }
}

impl BroadcastOperator {
    /// Describes the selected sockets of every shard and, with the bridge, every machine.
    pub fn fetch_sockets(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<SocketInfo>, Incomplete<Vec<SocketInfo>>>> + 'static {
        let asked = self.ask(Query::FetchSockets(self.opts.clone()), timeout);
        async move {
            match asked.await {
                Ok(Answer::Sockets(s)) => Ok(s),
                Err(Incomplete {
                    partial: Answer::Sockets(s),
                }) => Err(Incomplete { partial: s }),
                _ => Ok(Vec::new()),
            }
        }
    }

    /// Every room of the namespace with at least one member, on every shard and machine,
    /// sorted, without duplicates (Node's `adapter.allRooms()`). The selection is ignored.
    pub fn all_rooms(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<String>, Incomplete<Vec<String>>>> + 'static {
        let asked = self.ask(Query::AllRooms, timeout);
        let rooms = |answer| match answer {
            Answer::Rooms(mut r) => {
                r.sort_unstable();
                r.dedup();
                r
            }
            _ => Vec::new(),
        };
        async move {
            asked.await.map(rooms).map_err(|e| Incomplete {
                partial: rooms(e.partial),
            })
        }
    }

    /// Makes the selected sockets, on every shard and machine, join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<String>>) {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.tell(Command::Join {
            opts: self.opts.clone(),
            rooms,
        });
    }

    /// Makes the selected sockets, on every shard and machine, leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<String>>) {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.tell(Command::Leave {
            opts: self.opts.clone(),
            rooms,
        });
    }

    /// Disconnects the selected sockets on every shard and machine; with `close`, their whole
    /// connections.
    pub fn disconnect_sockets(&self, close: bool) {
        self.tell(Command::Disconnect {
            opts: self.opts.clone(),
            close,
        });
    }

    /// Sends `event` to the server-side handler of the other machines (never to this process,
    /// which is one server, as Node's `serverSideEmit`).
    pub fn server_side_emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        check_event(event)?;
        let cmd = Command::ServerSideEmit {
            event: event.to_owned(),
            data: data.into(),
        };
        self.ns.tell_bridge(cmd);
        Ok(())
    }

    /// Sends `event` to the other machines' server-side handlers and collects one ack from
    /// each within `timeout`. On [`BroadcastAckError::Timeout`], `missing` is 0: how many
    /// servers did not answer is not known, only that not all did.
    pub fn server_side_emit_with_ack(
        &self,
        event: &str,
        data: impl Into<Payload>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Payload>, BroadcastAckError>> + 'static {
        let checked = check_event(event);
        let query = Query::ServerSideEmit {
            event: event.to_owned(),
            data: data.into(),
        };
        let asked = self.ask(query, timeout);
        async move {
            checked?;
            let acks = |answer| match answer {
                Answer::Acks(a) => a,
                _ => Vec::new(),
            };
            asked
                .await
                .map(acks)
                .map_err(|e| BroadcastAckError::Timeout {
                    responses: acks(e.partial),
                    missing: 0,
                })
        }
    }

    fn tell(&self, cmd: Command) {
        self.ns.tell(cmd, !self.opts.local);
    }

    fn ask(
        &self,
        query: Query,
        timeout: Duration,
    ) -> impl Future<Output = Result<Answer, Incomplete<Answer>>> + 'static {
        let (id, gathering) = self.ns.ask(query, !self.opts.local, timeout);
        let ns = self.ns.clone();
        async move {
            let done = tokio::time::timeout(timeout, gathering.done()).await;
            ns.gatherings.borrow_mut().remove(&id);
            let whole = done.is_ok() && gathering.tally.borrow().is_whole();
            let answer = std::mem::replace(
                &mut gathering.tally.borrow_mut().acc,
                Answer::Acks(Vec::new()),
            );
            if whole {
                Ok(answer)
            } else {
                Err(Incomplete { partial: answer })
            }
        }
    }
}

impl NsShard {
    /// Carries out `cmd` here, on every other shard, and with `remote`, on the other machines.
    fn tell(&self, cmd: Command, remote: bool) {
        self.apply(&cmd);
        for to in self.link.other_shards() {
            let msg = SioMsg::Command {
                nsp: self.name.clone(),
                cmd: Box::new(cmd.clone()),
            };
            self.link.send(to, msg);
        }
        if remote {
            self.tell_bridge(cmd);
        }
    }

    /// Hands `cmd` to the bridge for the other machines (dropped without a bridge).
    fn tell_bridge(&self, cmd: Command) {
        self.link.send_to_bridge(BridgeMsg::Tell {
            nsp: self.name.clone(),
            cmd: Box::new(cmd),
        });
    }

    /// Starts `query` on every shard (unless only other machines answer it) and, with `remote`,
    /// on the other machines. The caller waits on the returned gathering (bounded) and removes
    /// it from `gatherings`.
    fn ask(&self, query: Query, remote: bool, timeout: Duration) -> (u64, Rc<Gathering>) {
        let id = self.next_ack_id();
        let gathering = Gathering::new(self.answer(&query));
        self.gatherings.borrow_mut().insert(id, gathering.clone());
        let mut expected = 0;
        if !matches!(query, Query::ServerSideEmit { .. }) {
            for to in self.link.other_shards() {
                let msg = SioMsg::Query {
                    nsp: self.name.clone(),
                    id,
                    query: Box::new(query.clone()),
                };
                if self.link.send(to, msg) {
                    expected += 1;
                }
            }
        }
        let ask = BridgeMsg::Ask {
            nsp: self.name.clone(),
            id,
            query: Box::new(query),
            timeout,
        };
        if remote && self.link.send_to_bridge(ask) {
            expected += 1;
        }
        gathering.tally.borrow_mut().set_expected(expected);
        (id, gathering)
    }

    /// This shard's own answer to `query`.
    pub(super) fn answer(&self, query: &Query) -> Answer {
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
    pub(super) fn apply(&self, cmd: &Command) {
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

    pub(super) fn on_server_side_emit(
        self: &Rc<Self>,
        event: &str,
        data: Payload,
        ack: Option<u64>,
    ) {
        let ack = ack.map(|id| ServerSideAck {
            ns: self.clone(),
            id,
        });
        match &self.def.on_server_side_emit {
            Some(handler) => {
                let io = BroadcastOperator::new(self.clone(), BroadcastOpts::default());
                handler(&io, event, data, ack);
            }
            // Nobody listens here: say so at once rather than let the sender time out.
            None => {
                if let Some(ack) = ack {
                    ack.send(Value::Null);
                }
            }
        }
    }
}

/// A query in flight on its origin shard.
pub(super) struct Gathering {
    pub(super) tally: RefCell<Tally<Answer>>,
    changed: Notify,
}

impl Gathering {
    pub(super) fn new(local: Answer) -> Rc<Self> {
        Rc::new(Gathering {
            tally: RefCell::new(Tally::new(local, None)),
            changed: Notify::new(),
        })
    }

    pub(super) fn add(&self, answer: Answer, whole: bool) {
        self.tally.borrow_mut().add(whole, |acc| acc.merge(answer));
        self.changed.notify_one();
    }

    /// Waits until every participant answered; the caller bounds the wait.
    pub(super) async fn done(&self) {
        while !self.tally.borrow().is_done() {
            self.changed.notified().await;
        }
    }
}
