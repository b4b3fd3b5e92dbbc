//! Broadcasts: encode the packet ONCE into shared frames, deliver to the matching local sockets,
//! and send ONE bus message to each other shard, whose Socket.IO layer delivers locally and
//! never re-forwards. Acks from every receiving client, on every shard, are collected by the
//! shard that broadcast.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Notify;

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

    /// Sends `event` with `data` to every selected socket on every shard.
    pub fn emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        check_event(event)?;
        let frames = event_frames(&self.ns.name, Some(event), None, &data.into());
        self.ns.broadcast(self.opts.clone(), frames, None);
        Ok(())
    }

    /// Sends `event` and collects the ack of every receiving client (on every shard) within
    /// `timeout`.
    pub fn emit_with_ack(
        &self,
        event: &str,
        data: impl Into<Payload>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<Payload>, BroadcastAckError>> + 'static {
        let prepared = check_event(event).map(|()| {
            let id = self.ns.next_ack_id();
            let frames = event_frames(&self.ns.name, Some(event), Some(id), &data.into());
            let collector = Rc::new(Collector::default());
            self.ns
                .collectors
                .borrow_mut()
                .insert(id, collector.clone());
            let (local, shards) = self.ns.broadcast(self.opts.clone(), frames, Some(id));
            collector.add_count(local);
            collector.shards_pending.set(shards);
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

fn check_event(event: &str) -> Result<(), EmitError> {
    if RESERVED_EVENTS.contains(&event) {
        Err(EmitError::ReservedEvent)
    } else {
        Ok(())
    }
}

/// What the Socket.IO layers of two shards say to each other over the bus.
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
