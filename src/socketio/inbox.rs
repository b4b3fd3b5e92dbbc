//! What a namespace on one shard does with the messages of the other shards and of the Redis
//! bridge: deliver their broadcasts, answer their queries, carry out their commands, run
//! server-side events, and collect the replies to what this shard started. Replies go back to
//! the message's origin.

use std::rc::Rc;

use super::NsShard;
use crate::bus::cluster::{BridgeMsg, Origin, Reply, ServerSideEmit, SioMsg};

impl NsShard {
    /// Acts on one message from `from`.
    pub(super) fn on_bus(self: &Rc<Self>, from: Origin, msg: SioMsg) {
        match msg {
            SioMsg::Broadcast(b) => {
                let count = self.deliver(&b.opts, &b.frames, b.ack.map(|id| (id, from)));
                if let Some(id) = b.ack {
                    let reply = Reply::AckCount {
                        nsp: self.name.clone(),
                        id,
                        count,
                    };
                    self.reply(from, reply);
                }
            }
            SioMsg::Reply(reply) => self.on_reply(*reply),
            SioMsg::Query { id, query, .. } => {
                let answer = Reply::Answer {
                    nsp: self.name.clone(),
                    id,
                    answer: self.answer(&query),
                    whole: true,
                };
                self.reply(from, answer);
            }
            SioMsg::Command { cmd, .. } => self.apply(&cmd),
            SioMsg::ServerSideEmit(emit) => {
                let ServerSideEmit {
                    event, data, ack, ..
                } = *emit;
                self.on_server_side_emit(&event, data, ack);
            }
        }
    }

    /// Sends `reply` to whoever asked: this shard, another shard over the bus, or the bridge.
    /// A reply that cannot be sent is counted and logged by the bus; the asker stops waiting
    /// at its timeout.
    pub(super) fn reply(&self, to: Origin, reply: Reply) {
        match to {
            Origin::Shard(shard) if shard == self.shard() => self.on_reply(reply),
            Origin::Shard(shard) => {
                self.link.send(shard, SioMsg::Reply(Box::new(reply)));
            }
            Origin::Bridge => {
                self.link.send_to_bridge(BridgeMsg::Reply(Box::new(reply)));
            }
        }
    }

    /// A reply to something this shard started: a broadcast-with-ack or a query. A reply for
    /// an id nobody waits for any more (its asker timed out) is dropped.
    fn on_reply(&self, reply: Reply) {
        match reply {
            Reply::AckCount { id, count, .. } => {
                let collector = self.collectors.borrow().get(&id).cloned();
                if let Some(c) = collector {
                    c.shard_reported(count);
                }
            }
            Reply::Ack { id, payload, .. } => {
                let collector = self.collectors.borrow().get(&id).cloned();
                if let Some(c) = collector {
                    c.push(payload);
                }
            }
            Reply::Answer {
                id, answer, whole, ..
            } => {
                let gathering = self.gatherings.borrow().get(&id).cloned();
                if let Some(g) = gathering {
                    g.add(answer, whole);
                }
            }
            Reply::RoomsSubscribed { seq, .. } => self.reports.subscribed(seq),
        }
    }
}
