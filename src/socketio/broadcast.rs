//! Broadcasts: encode the packet ONCE into shared frames, deliver to the matching local sockets,
//! send ONE bus message to each other shard, whose Socket.IO layer delivers locally and never
//! re-forwards, and unless the broadcast is local, hand the unencoded packet to the Redis bridge
//! (when it runs), which publishes it to the other machines. Acks from every receiving client,
//! on every shard and every machine, are collected by the shard that broadcast.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::Notify;

use super::socket::{EmitError, Socket};
use super::NsShard;
use crate::bus::cluster::{
    BridgeMsg, BroadcastOpts, Origin, PublishedBroadcast, RemoteBroadcast, Reply, SioMsg,
};
use crate::engineio::{Session, Sid};
use crate::protocol::frame::OutFrame;
use crate::protocol::socketio::{event_frames, is_reserved_event, Payload};

/// Sessions a broadcast touches together before sending to them (see `NsShard::deliver`).
const DELIVERY_BATCH: usize = 16;

/// Why a broadcast with acks did not collect every answer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum BroadcastAckError {
    /// Not every receiving client answered in time; `responses` holds those that did.
    #[error("{missing} of the receiving clients did not acknowledge in time")]
    Timeout {
        /// The answers that came.
        responses: Vec<Payload>,
        /// How many receiving clients did not answer.
        missing: usize,
    },
    /// The broadcast could not be sent.
    #[error("emit failed: {0}")]
    Emit(#[from] EmitError),
}

/// Builds and sends a broadcast: `socket.to("room").except("other").emit(..)` and friends.
#[derive(Clone)]
pub struct BroadcastOperator {
    pub(super) ns: Rc<NsShard>,
    pub(super) opts: BroadcastOpts,
}

impl std::fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("nsp", &self.ns.name)
            .field("opts", &self.opts)
            .finish()
    }
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

    /// Who the broadcast selects.
    pub fn opts(&self) -> &BroadcastOpts {
        &self.opts
    }

    /// Sends `event` with `data` to every selected socket on every shard, and on every machine
    /// when the Redis bridge runs (unless [`local`](Self::local)).
    pub fn emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        check_event(event)?;
        let data = data.into();
        if self.ns.through_stream(&self.opts) {
            self.ns.send_through_stream(event, data, self.opts.clone());
            return Ok(());
        }
        let packet = if self.opts.volatile {
            None
        } else {
            self.ns.recoverable(event, &data, || self.opts.clone())
        };
        match packet {
            Some(packet) => {
                self.ns.broadcast_recoverable(packet, (event, data));
            }
            None => {
                let frames = event_frames(&self.ns.name, event, None, &data);
                self.ns
                    .broadcast(self.opts.clone(), frames, None, (event, data));
            }
        }
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
            let frames = event_frames(&self.ns.name, event, Some(id), &data);
            let collector = Rc::new(Collector::default());
            self.ns
                .collectors
                .borrow_mut()
                .insert(id, collector.clone());
            let sent = self.ns.broadcast(
                self.opts.clone(),
                frames,
                Some((id, timeout)),
                (event, data),
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

/// The one event-name check of outgoing broadcasts and server-side emits.
pub(super) fn check_event(event: &str) -> Result<(), EmitError> {
    if is_reserved_event(event) {
        Err(EmitError::ReservedEvent)
    } else {
        Ok(())
    }
}

impl Socket {
    /// A broadcast to `room`, from this socket: the socket itself is skipped.
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to the whole namespace, from this socket: the socket itself is skipped.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.namespace().except(self.id().as_str())
    }

    /// A broadcast to the whole namespace, the socket itself included (`io.of(nsp)`).
    pub fn namespace(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns().clone(), BroadcastOpts::default())
    }
}

/// What a broadcast reached: local sockets, other shards, and whether the bridge took it.
struct Sent {
    local: usize,
    shards: usize,
    bridged: bool,
}

impl NsShard {
    /// Delivers frames to the selected local sockets; returns how many took them. With
    /// `ack = Some((id, origin))` each receiver owes an ack to `origin`.
    pub(super) fn deliver(
        &self,
        opts: &BroadcastOpts,
        frames: &[OutFrame],
        ack: Option<(u64, Origin)>,
        offset: Option<u64>,
    ) -> usize {
        let sockets = self.sockets.borrow();
        let rooms = self.rooms.borrow();
        let everyone = sockets.iter().map(|(sid, socket)| (*sid, socket.session()));
        let mut delivered = 0;
        let mut send = |batch: &mut Vec<(Sid, &Rc<Session>)>| {
            // Touch every session of the batch first: the loads do not depend on each other, so
            // their cache misses (thousands of cold sessions per broadcast) overlap.
            for (_, session) in batch.iter() {
                std::hint::black_box(session.queued_bytes());
            }
            for (sid, session) in batch.drain(..) {
                if offset.is_some() && self.skips(sid, offset) {
                    // A restored socket got this packet with its session.
                    continue;
                }
                let sent = if opts.volatile {
                    session.send_volatile(frames)
                } else {
                    session.send(frames).is_ok()
                };
                if sent {
                    delivered += 1;
                    if let Some((id, origin)) = ack {
                        if let Some(socket) = sockets.get(&sid) {
                            socket.expect_broadcast_ack(id, origin);
                        }
                    }
                }
            }
        };
        let mut batch = Vec::with_capacity(DELIVERY_BATCH);
        rooms.select(&opts.rooms, &opts.except, everyone, |sid, session| {
            batch.push((sid, session));
            if batch.len() == DELIVERY_BATCH {
                send(&mut batch);
            }
        });
        send(&mut batch);
        self.link.shard_metrics().delivered(delivered);
        delivered
    }

    /// Delivers locally, sends one message to every other shard and, unless the broadcast is
    /// local, hands `packet` (the event and its unencoded payload) to the Redis bridge.
    fn broadcast(
        &self,
        opts: BroadcastOpts,
        frames: Vec<OutFrame>,
        ack: Option<(u64, Duration)>,
        (event, data): (&str, Payload),
    ) -> Sent {
        let id = ack.map(|(id, _)| id);
        let origin = Origin::Shard(self.shard());
        self.link.shard_metrics().broadcast();
        let local = self.deliver(&opts, &frames, id.map(|id| (id, origin)), None);
        let bridged = !opts.local
            && self.link.has_bridge()
            && self
                .link
                .send_to_bridge(BridgeMsg::Publish(Box::new(PublishedBroadcast {
                    nsp: self.name.clone(),
                    event: event.to_owned(),
                    data,
                    opts: opts.clone(),
                    ack,
                })));
        // Only the shards with a member in one of the rooms (every shard for the whole
        // namespace): see bus::interest.
        let targets = self.link.broadcast_targets(&self.name, &opts.rooms);
        let mut shards = 0;
        if targets.len() > 0 {
            let remote = Arc::new(RemoteBroadcast {
                nsp: self.name.clone(),
                opts,
                frames,
                ack: id,
                offset: None,
            });
            for to in targets.iter() {
                if self.link.send(to, SioMsg::Broadcast(remote.clone())) {
                    shards += 1;
                }
            }
        }
        Sent {
            local,
            shards,
            bridged,
        }
    }

    /// A recoverable broadcast (with its offset): delivered here, logged, sent to every other
    /// shard (which log it too) and, unless local, to the bridge.
    fn broadcast_recoverable(&self, packet: Arc<RemoteBroadcast>, (event, data): (&str, Payload)) {
        self.link.shard_metrics().broadcast();
        self.deliver(&packet.opts, &packet.frames, None, packet.offset);
        self.log_packet(&packet);
        if !packet.opts.local && self.link.has_bridge() {
            self.link
                .send_to_bridge(BridgeMsg::Publish(Box::new(PublishedBroadcast {
                    nsp: self.name.clone(),
                    event: event.to_owned(),
                    data,
                    opts: packet.opts.clone(),
                    ack: None,
                })));
        }
        for to in self.link.other_shards() {
            self.link.send(to, SioMsg::Broadcast(packet.clone()));
        }
    }

    /// Routes a client's answer to a broadcast-with-ack to the collector of `origin`.
    pub(super) fn route_broadcast_ack(&self, id: u64, origin: Origin, payload: Payload) {
        let msg = Reply::Ack {
            nsp: self.name.clone(),
            id,
            payload,
        };
        self.reply(origin, msg);
    }
}

/// The answers to one broadcast-with-ack, gathered on the origin shard.
#[derive(Default)]
pub(crate) struct Collector {
    /// Clients that received the packet, summed over the shards that reported.
    expected: Cell<usize>,
    /// Shards that have not reported their count yet.
    shards_pending: Cell<usize>,
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
