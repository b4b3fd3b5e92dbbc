//! The seam between what the bridge says and how `--redis-mode` carries it: the rest of the
//! bridge speaks in the classic adapter's values ([`BroadcastMessage`], [`Request`],
//! [`Response`]); these methods put them on the wire of the mode, and read it back. This is the
//! one place that asks the mode which channels and encodings to use.
//!
//! * `classic`: Node's `@socket.io/redis-adapter` channels (docs/PROTOCOL.md §3).
//! * `streams`: `@socket.io/redis-streams-adapter` 0.3 (§4): broadcasts, joins, leaves and
//!   disconnects are added to the stream (`streams.rs`); fetches, server-side emits and
//!   broadcasts with acks go as msgpack on `prefix#nsp#`, and their answers to the asking
//!   server's own channel `prefix#nsp#uid#`.
//! * `sharded`: Node's `createShardedAdapter` (§3.7): the same cluster messages, JSON unless the
//!   data holds binary, SPUBLISHed on `prefix#nsp#` (a broadcast to one room on the room's own
//!   channel `prefix#nsp#room#` when the subscription mode gives it one); answers go to the
//!   asking server's own channel `prefix#nsp#uid#`.
//!
//! Both cluster-message modes answer a request on its asker's channel: [`ReplyTo`] remembers
//! who asked.

use std::collections::VecDeque;

use super::*;
use crate::config::{RedisMode, SubscriptionMode};
use crate::protocol::adapter::{ClusterBody, ClusterMessage};

/// Whether a room name looks like a socket id to Node's sharded adapter (a string of 20
/// characters, counted as JavaScript does: UTF-16 code units), which then never gives it a
/// channel of its own in `dynamic` mode.
pub(super) fn looks_like_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

impl Bridge {
    pub(super) fn sharded(&self) -> bool {
        self.config.mode == RedisMode::Sharded
    }

    /// Whether `room` gets a channel of its own that this machine subscribes to while it holds
    /// a member: every room with `--redis-subscribe rooms`; in sharded mode as Node's
    /// `subscriptionMode` says (`dynamic` skips socket ids, `dynamic-private` does not).
    pub(super) fn room_has_channel(&self, room: &str) -> bool {
        match (self.config.mode, self.config.subscription_mode) {
            (RedisMode::Sharded, SubscriptionMode::Static) => false,
            (RedisMode::Sharded, SubscriptionMode::Dynamic) => !looks_like_socket_id(room),
            _ => true,
        }
    }

    /// The channel on which this bridge gets the answers to its requests, and its probe:
    /// `prefix-response#nsp#uid#` (classic), `prefix#nsp#uid#` (streams, sharded).
    pub(super) fn own_channel(mode: RedisMode, channels: &Channels, uid: &str) -> String {
        match mode {
            RedisMode::Classic => channels.specific_response(uid),
            RedisMode::Streams | RedisMode::Sharded => channels.room(uid),
        }
    }

    /// Every fixed channel and pattern to subscribe to, as (is pattern, name), with its
    /// namespace and what it carries (room channels are `rooms.rs`'s).
    pub(super) fn channel_roles(&self) -> Vec<(bool, String, usize, Role)> {
        let mut subs = Vec::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let c = &ns.channels;
            if self.config.mode != RedisMode::Classic {
                subs.push((false, c.broadcast().to_owned(), i, Role::Cluster));
                subs.push((false, ns.own_response.clone(), i, Role::ClusterPrivate));
                continue;
            }
            if self.rooms.is_some() {
                // --redis-subscribe rooms: the namespace channel here, the rooms' in `rooms`.
                subs.push((false, c.broadcast().to_owned(), i, Role::Broadcast));
            } else {
                subs.push((true, c.pattern().to_owned(), i, Role::Broadcast));
            }
            subs.push((false, c.request().to_owned(), i, Role::Request));
            subs.push((false, c.response().to_owned(), i, Role::Response));
            subs.push((false, ns.own_response.clone(), i, Role::Response));
        }
        subs
    }

    fn cluster(&self, ns: usize, body: ClusterBody) -> ClusterMessage {
        ClusterMessage {
            uid: self.uid.clone(),
            nsp: self.namespaces[ns].name.clone(),
            body,
        }
    }

    /// A cluster message's Pub/Sub payload in this mode: msgpack (streams), JSON or msgpack
    /// (sharded).
    fn cluster_payload(&self, message: &ClusterMessage) -> Option<Vec<u8>> {
        if self.sharded() {
            message.encode_sharded()
        } else {
            message.encode_msgpack()
        }
    }

    /// Sends a cluster message: into the stream, or (ephemeral, and everything in sharded
    /// mode) published to `channel`.
    fn send_cluster(&mut self, message: ClusterMessage, channel: String) {
        if self.sharded() || message.is_ephemeral() {
            if let Some(payload) = self.cluster_payload(&message) {
                self.publish(channel, payload);
            }
        } else if let Some(entry) = message.to_entry() {
            self.add_to_stream(entry);
        }
    }

    /// Publishes a broadcast without acks.
    pub(super) fn send_broadcast(&mut self, ns: usize, b: BroadcastMessage) {
        let channels = &self.namespaces[ns].channels;
        if self.config.mode == RedisMode::Classic {
            let channel = channels.publish_channel(&b.opts.rooms).into_owned();
            self.publish(channel, b.encode());
            return;
        }
        let body = ClusterBody::Broadcast {
            packet: b.packet,
            opts: b.opts,
        };
        let message = self.cluster(ns, body);
        let channel = match message.single_room() {
            Some(room) if self.sharded() && self.room_has_channel(room) => channels.room(room),
            _ => channels.broadcast().to_owned(),
        };
        self.send_cluster(message, channel);
    }

    /// Publishes a request nobody answers (join, leave, disconnect, server-side emit).
    pub(super) fn send_command(&mut self, ns: usize, body: RequestBody) {
        if self.config.mode != RedisMode::Classic {
            let message = self.cluster(ns, ClusterBody::Request(body));
            let channel = self.namespaces[ns].channels.broadcast().to_owned();
            return self.send_cluster(message, channel);
        }
        let payload = Request {
            uid: Some(self.uid.clone()),
            body,
        }
        .encode();
        let channel = self.namespaces[ns].channels.request().to_owned();
        self.publish(channel, payload);
    }

    /// A request that wants answers, ready for the publisher (which counts the servers on its
    /// channel first); `None` when the mode has no such request (ALL_ROOMS in streams and
    /// sharded modes: Node's cluster adapters answer `allRooms` locally).
    pub(super) fn request_out(
        &self,
        ns: usize,
        request_id: String,
        body: RequestBody,
    ) -> Option<Outgoing> {
        let channels = &self.namespaces[ns].channels;
        let (channel, payload) = if self.config.mode == RedisMode::Classic {
            let request = Request {
                uid: Some(self.uid.clone()),
                body,
            };
            (channels.request(), request.encode())
        } else {
            let message = self.cluster(ns, ClusterBody::Request(body));
            (channels.broadcast(), self.cluster_payload(&message)?)
        };
        Some(Outgoing::Request {
            request_id,
            channel: channel.to_owned(),
            payload,
        })
    }

    /// Answers another server's request.
    pub(super) fn send_response(&mut self, ns: usize, response: Response) {
        if self.config.mode != RedisMode::Classic {
            // Answers go to the asking server's own channel; one whose asker is forgotten
            // (more than the in-flight bound ago) has nobody left to read it.
            let Some(asker) = self.reply_to.get(response.request_id()) else {
                return;
            };
            let channel = self.namespaces[ns].channels.room(asker);
            let message = self.cluster(ns, ClusterBody::Response(response));
            return self.send_cluster(message, channel);
        }
        let channel = self.namespaces[ns].channels.response().to_owned();
        self.publish(channel, response.encode());
    }

    /// The probe: a response to this bridge itself, on its own channel.
    pub(super) fn probe_payload(&self, request_id: String) -> Vec<u8> {
        if self.config.mode == RedisMode::Classic {
            return Response::Done { request_id }.encode();
        }
        let response = Response::ServerSideEmit {
            request_id,
            data: JsValue::Null,
        };
        let message = self.cluster(0, ClusterBody::Response(response));
        self.cluster_payload(&message).unwrap_or_default()
    }

    /// A cluster message on a Pub/Sub channel of namespace `ns`; `private` when it came on this
    /// server's own channel, where only answers are taken (Node's `onRawMessage`).
    pub(super) fn on_cluster_payload(
        &mut self,
        ns: usize,
        channel: &str,
        payload: &Bytes,
        private: bool,
    ) {
        let decoded = if self.sharded() {
            ClusterMessage::decode_sharded(payload)
        } else {
            ClusterMessage::decode(payload)
        };
        match decoded {
            Ok(message) if private && !matches!(message.body, ClusterBody::Response(_)) => {}
            Ok(message) if message.nsp == self.namespaces[ns].name => {
                self.on_cluster_message(ns, message, None);
            }
            Ok(_) => {}
            Err(e) => self.malformed(channel, &e),
        }
    }

    /// A cluster message from the stream or from Pub/Sub, for namespace `ns`.
    /// A cluster message from Pub/Sub, or from the stream with its entry id (`entry`).
    pub(super) fn on_cluster_message(
        &mut self,
        ns: usize,
        message: ClusterMessage,
        entry: Option<&str>,
    ) {
        let ClusterMessage { uid, body, .. } = message;
        match body {
            ClusterBody::Broadcast { packet, opts } => {
                self.on_broadcast(ns, BroadcastMessage { uid, packet, opts }, entry);
            }
            ClusterBody::Request(body) => {
                if uid == self.uid {
                    return;
                }
                let request = Request {
                    uid: Some(uid.clone()),
                    body,
                };
                if let Some(id) = request.request_id() {
                    self.reply_to.remember(id.to_owned(), uid);
                }
                self.on_request(ns, request);
            }
            ClusterBody::Response(response) => self.on_response(response),
            ClusterBody::Ignored(_) => {}
        }
    }
}

/// Which server asked each request in flight, to answer on its own channel: a bounded map
/// whose oldest entries go first (requests in flight are bounded the same way).
#[derive(Default)]
pub(super) struct ReplyTo {
    order: VecDeque<String>,
    uids: HashMap<String, String>,
}

impl ReplyTo {
    const CAPACITY: usize = 2 * pending::MAX_PENDING;

    fn remember(&mut self, request_id: String, uid: String) {
        if self.uids.len() >= Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.uids.remove(&oldest);
            }
        }
        if self.uids.insert(request_id.clone(), uid).is_none() {
            self.order.push_back(request_id);
        }
    }

    /// The uid of the server that sent request `request_id`.
    pub(super) fn get(&self, request_id: &str) -> Option<&str> {
        self.uids.get(request_id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_are_twenty_characters() {
        assert!(looks_like_socket_id("Ov-JRqox9DHsnM2KAAAA"));
        assert!(!looks_like_socket_id("room1"));
        // JavaScript's length: an emoji outside the BMP counts twice.
        assert!(looks_like_socket_id("😀😀😀😀😀😀😀😀😀😀"));
    }

    #[test]
    fn reply_to_forgets_the_oldest_first() {
        let mut r = ReplyTo::default();
        for i in 0..ReplyTo::CAPACITY + 1 {
            r.remember(i.to_string(), format!("u{i}"));
        }
        assert_eq!(r.get("0"), None);
        assert_eq!(r.get("1"), Some("u1"));
        assert_eq!(r.uids.len(), ReplyTo::CAPACITY);
    }
}
