//! Broadcasts: encode the packet ONCE into shared frames, deliver to the matching local sockets,
//! send ONE bus message to each other shard, whose Socket.IO layer delivers locally and never
//! re-forwards, and unless the broadcast is local, hand the unencoded packet to the Redis bridge
//! (when it runs), which publishes it to the other machines. Acks from every receiving client,
//! on every shard and every machine, are collected by the shard that broadcast.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Notify;

use super::cluster::{Answer, Command, Gathering, Incomplete, Query, SocketInfo};
use super::socket::{event_frames, EmitError};
use super::NsShard;
use crate::engineio::OutFrame;
use crate::protocol::socketio::{Payload, RESERVED_EVENTS};

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

/// Why a broadcast with acks did not collect every answer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BroadcastAckError {
    /// Not every receiving client answered in time; `responses` holds those that did.
    #[error("{missing} of the receiving clients did not acknowledge in time")]
    Timeout {
        responses: Vec<Payload>,
        missing: usize,
    },
    #[error("emit failed: {0}")]
    Emit(#[from] EmitError),
}

/// Builds and sends a broadcast: `socket.to("room").except("other").emit(..)` and friends.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Rc<NsShard>,
    opts: BroadcastOpts,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Rc<NsShard>, opts: BroadcastOpts) -> Self {
        BroadcastOperator { ns, opts }
    }

    /// Adds a target room.
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.opts.rooms.push(room.into());
        self
    }

    /// Adds several target rooms.
    pub fn to_rooms(mut self, rooms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.opts.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// Skips the sockets in `room` (a socket id skips that socket).
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.opts.except.push(room.into());
        self
    }

    /// Skips the sockets in several rooms.
    pub fn except_rooms(mut self, rooms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.opts.except.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// The packet may be dropped for clients that cannot take it now.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// Only this process's sockets receive it.
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    pub fn opts(&self) -> &BroadcastOpts {
        &self.opts
    }

    /// Sends `event` with `data` to every selected socket on every shard, and on every machine
    /// when the Redis bridge runs (unless [`local`](Self::local)).
    pub fn emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        check_event(event)?;
        let data = data.into();
        let frames = event_frames(&self.ns.name, Some(event), None, &data);
        self.ns
            .broadcast(self.opts.clone(), frames, None, Some((event, data)));
        Ok(())
    }

    /// Sends `event` and collects the ack of every receiving client (on every shard, and on
    /// every machine when the Redis bridge runs) within `timeout`.
    pub fn emit_with_ack(
        &self,
        event: &str,
        data: impl Into<Payload>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Payload>, BroadcastAckError>> + 'static {
        let prepared = check_event(event).map(|()| {
            let id = self.ns.next_ack_id();
            let data = data.into();
            let frames = event_frames(&self.ns.name, Some(event), Some(id), &data);
            let collector = Rc::new(Collector::default());
            self.ns
                .collectors
                .borrow_mut()
                .insert(id, collector.clone());
            let sent = self.ns.broadcast(
                self.opts.clone(),
                frames,
                Some((id, timeout)),
                Some((event, data)),
            );
            collector.add_count(sent.local);
            // The bridge reports the other machines' clients as one more participant.
            collector
                .shards_pending
                .set(sent.shards + usize::from(sent.bridged));
            (id, collector)
        });
        let ns = self.ns.clone();
        async move {
            let (id, collector) = prepared?;
            let done = tokio::time::timeout(timeout, collector.complete()).await;
            ns.collectors.borrow_mut().remove(&id);
            let responses = std::mem::take(&mut *collector.responses.borrow_mut());
            match done {
                Ok(()) => Ok(responses),
                Err(_) => Err(BroadcastAckError::Timeout {
                    missing: collector.expected.get().saturating_sub(responses.len()),
                    responses,
                }),
            }
        }
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

/// Open queries of a namespace on their origin shard, by id.
pub(crate) type Gatherings = RefCell<HashMap<u64, Rc<Gathering>>>;

fn check_event(event: &str) -> Result<(), EmitError> {
    if RESERVED_EVENTS.contains(&event) {
        Err(EmitError::ReservedEvent)
    } else {
        Ok(())
    }
}

/// What the Socket.IO layers of two shards, or a shard and the Redis bridge, say to each other
/// over the bus. Replies go back to the sender ([`super::cluster::ReplyTo`]).
pub(crate) enum BusMessage {
    /// Deliver to local sockets; never forward.
    Broadcast(Arc<RemoteBroadcast>),
    /// How many local sockets received broadcast-with-ack `id` (sent to its origin).
    AckCount { nsp: String, id: u64, count: usize },
    /// One client's answer to broadcast-with-ack `id` (sent to its origin).
    Ack {
        nsp: String,
        id: u64,
        payload: Payload,
    },
    /// Answer `query` from local state with one [`BusMessage::Answer`].
    Query { nsp: String, id: u64, query: Query },
    /// An answer to query `id`; `whole` is false when the answerer itself missed some
    /// (the bridge, when machines did not answer or Redis is away).
    Answer {
        nsp: String,
        id: u64,
        answer: Answer,
        whole: bool,
    },
    /// Carry out `cmd` on local sockets.
    Command { nsp: String, cmd: Command },
    /// From the bridge to one shard: run the namespace's server-side handler; with `ack`, answer
    /// with one [`BusMessage::Answer`] holding the handler's ack.
    ServerSideEmit {
        nsp: String,
        event: String,
        data: Payload,
        ack: Option<u64>,
    },
}

impl BusMessage {
    pub(crate) fn nsp(&self) -> &str {
        match self {
            BusMessage::Broadcast(b) => &b.nsp,
            BusMessage::AckCount { nsp, .. }
            | BusMessage::Ack { nsp, .. }
            | BusMessage::Query { nsp, .. }
            | BusMessage::Answer { nsp, .. }
            | BusMessage::Command { nsp, .. }
            | BusMessage::ServerSideEmit { nsp, .. } => nsp,
        }
    }
}

/// A broadcast encoded by another shard.
pub(crate) struct RemoteBroadcast {
    pub nsp: String,
    pub opts: BroadcastOpts,
    pub frames: Vec<OutFrame>,
    /// The ack id, when the origin collects acks.
    pub ack: Option<u64>,
}

/// The answers to one broadcast-with-ack, gathered on the origin shard.
#[derive(Default)]
pub(crate) struct Collector {
    /// Clients that received the packet, summed over the shards that reported.
    expected: std::cell::Cell<usize>,
    /// Shards that have not reported their count yet.
    shards_pending: std::cell::Cell<usize>,
    responses: RefCell<Vec<Payload>>,
    changed: Notify,
}

impl Collector {
    pub(crate) fn add_count(&self, count: usize) {
        self.expected.set(self.expected.get() + count);
        self.changed.notify_one();
    }

    pub(crate) fn shard_reported(&self, count: usize) {
        self.shards_pending
            .set(self.shards_pending.get().saturating_sub(1));
        self.add_count(count);
    }

    pub(crate) fn push(&self, payload: Payload) {
        self.responses.borrow_mut().push(payload);
        self.changed.notify_one();
    }

    fn is_complete(&self) -> bool {
        self.shards_pending.get() == 0 && self.responses.borrow().len() >= self.expected.get()
    }

    async fn complete(&self) {
        while !self.is_complete() {
            self.changed.notified().await;
        }
    }
}

/// Open collectors of a namespace on its origin shard, by ack id.
pub(crate) type Collectors = RefCell<HashMap<u64, Rc<Collector>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_completes_when_every_shard_and_client_answered() {
        let c = Collector::default();
        c.add_count(2);
        c.shards_pending.set(2);
        c.push(Payload::from("a"));
        assert!(!c.is_complete());
        c.shard_reported(1);
        c.push(Payload::from("b"));
        assert!(!c.is_complete(), "one shard has not reported");
        c.push(Payload::from("c"));
        c.shard_reported(0);
        assert!(c.is_complete());
        assert_eq!(c.responses.borrow().len(), 3);
    }

    #[test]
    fn acks_may_arrive_before_their_shard_reports() {
        let c = Collector::default();
        c.shards_pending.set(1);
        c.push(Payload::from("early"));
        assert!(!c.is_complete());
        c.shard_reported(1);
        assert!(c.is_complete());
    }
}
