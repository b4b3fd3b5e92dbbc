//! The seam between what the bridge says and how `--redis-mode` carries it: the rest of the
//! bridge speaks in the classic adapter's values ([`BroadcastMessage`], [`Request`],
//! [`Response`]); these methods put them on the wire of the mode.
//!
//! * `classic`: Node's `@socket.io/redis-adapter` channels (docs/PROTOCOL.md §3).
//! * `streams`: `@socket.io/redis-streams-adapter` 0.3 (§4): broadcasts, joins, leaves and
//!   disconnects are added to the stream (`streams.rs`); fetches, server-side emits and
//!   broadcasts with acks go as msgpack on `prefix#nsp#`, and their answers to the asking
//!   server's own channel `prefix#nsp#uid#`.

use super::*;
use crate::config::RedisMode;
use crate::protocol::adapter::{ClusterBody, ClusterMessage};

impl Bridge {
    pub(super) fn streams_mode(&self) -> bool {
        self.config.mode == RedisMode::Streams
    }

    /// The channel on which this bridge gets the answers to its requests, and its probe.
    pub(super) fn own_channel(mode: RedisMode, channels: &Channels, uid: &str) -> String {
        match mode {
            RedisMode::Classic => channels.specific_response(uid),
            RedisMode::Streams => format!("{}{uid}#", channels.broadcast()),
        }
    }

    /// Every channel and pattern to subscribe to, as (is pattern, name), and what it carries.
    pub(super) fn channel_roles(&self) -> Vec<(bool, String, usize, Role)> {
        let mut subs = Vec::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let c = &ns.channels;
            if self.streams_mode() {
                subs.push((false, c.broadcast().to_owned(), i, Role::Cluster));
                subs.push((false, ns.own_response.clone(), i, Role::Cluster));
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

    /// Sends a cluster message: into the stream, or (ephemeral) on Pub/Sub to `channel`.
    fn send_cluster(&mut self, message: ClusterMessage, channel: String) {
        if message.is_ephemeral() {
            if let Some(payload) = message.encode_msgpack() {
                self.publish(channel, payload);
            }
        } else if let Some(entry) = message.to_entry() {
            self.add_to_stream(entry);
        }
    }

    /// Publishes a broadcast without acks.
    pub(super) fn send_broadcast(&mut self, ns: usize, b: BroadcastMessage) {
        if self.streams_mode() {
            let body = ClusterBody::Broadcast {
                packet: b.packet,
                opts: b.opts,
            };
            let message = self.cluster(ns, body);
            return self.send_cluster(message, String::new());
        }
        let channel = self.namespaces[ns]
            .channels
            .publish_channel(&b.opts.rooms)
            .into_owned();
        self.publish(channel, b.encode());
    }

    /// Publishes a request nobody answers (join, leave, disconnect, server-side emit).
    pub(super) fn send_command(&mut self, ns: usize, body: RequestBody) {
        if self.streams_mode() {
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
    /// channel first); `None` when the mode has no such request (ALL_ROOMS in streams mode:
    /// Node's cluster adapter answers `allRooms` locally).
    pub(super) fn request_out(
        &self,
        ns: usize,
        request_id: String,
        body: RequestBody,
    ) -> Option<Outgoing> {
        let channels = &self.namespaces[ns].channels;
        let (channel, payload) = if self.streams_mode() {
            let message = self.cluster(ns, ClusterBody::Request(body));
            (channels.broadcast(), message.encode_msgpack()?)
        } else {
            let request = Request {
                uid: Some(self.uid.clone()),
                body,
            };
            (channels.request(), request.encode())
        };
        Some(Outgoing::Request {
            request_id,
            channel: channel.to_owned(),
            payload,
        })
    }

    /// Answers another server's request.
    pub(super) fn send_response(&mut self, ns: usize, response: Response) {
        if self.streams_mode() {
            // Answers go to the asking server's own channel; one whose asker is forgotten
            // (more than the in-flight bound ago) has nobody left to read it.
            let Some(asker) = self.reply_to.get(response.request_id()) else {
                return;
            };
            let channel = format!("{}{asker}#", self.namespaces[ns].channels.broadcast());
            let message = self.cluster(ns, ClusterBody::Response(response));
            return self.send_cluster(message, channel);
        }
        let channel = self.namespaces[ns].channels.response().to_owned();
        self.publish(channel, response.encode());
    }

    /// The probe: a response to this bridge itself, on its own channel.
    pub(super) fn probe_payload(&self, request_id: String) -> Vec<u8> {
        if self.streams_mode() {
            let response = Response::ServerSideEmit {
                request_id,
                data: JsValue::Null,
            };
            let message = self.cluster(0, ClusterBody::Response(response));
            return message.encode_msgpack().unwrap_or_default();
        }
        Response::Done { request_id }.encode()
    }

    /// A message on a Pub/Sub channel of streams mode.
    pub(super) fn on_cluster_payload(&mut self, ns: usize, channel: &str, payload: &Bytes) {
        match ClusterMessage::decode(payload) {
            Ok(message) if message.nsp == self.namespaces[ns].name => {
                self.on_cluster_message(ns, message);
            }
            Ok(_) => {}
            Err(e) => self.malformed(channel, &e),
        }
    }
}
