//! The two wire formats (`--redis-mode`): which channels a message goes to and how it is
//! encoded, and how a message from Redis is read, so that the rest of the bridge works on the
//! classic adapter's types either way (docs/PROTOCOL.md §3.1-3.4 classic, §3.7 sharded).
//!
//! In sharded mode a request's id is kept, in the bridge's books, together with the uid of the
//! server that asked (`<uid>\n<request id>`, see [`requester_key`]): the sharded adapter answers
//! on the requester's own channel, the classic one on the namespace's response channel.

use super::*;
use crate::config::{RedisMode, SubscriptionMode};
use crate::protocol::adapter::{ClusterBody, ClusterMessage};

/// A message from Redis, read as the classic adapter's types.
pub(super) enum Incoming {
    Broadcast(BroadcastMessage),
    Request(Request),
    Response(Response),
}

/// The id kept for a sharded request of server `uid`: both parts are needed to answer it.
fn requester_key(uid: &str, request_id: &str) -> String {
    format!("{uid}\n{request_id}")
}

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

    /// Whether the room channels follow the rooms held here (`dynamic`, `dynamic-private`).
    pub(super) fn dynamic_rooms(&self) -> bool {
        self.sharded() && self.config.subscription_mode != SubscriptionMode::Static
    }

    /// Whether `room` gets a channel of its own in the sharded adapter's dynamic modes.
    pub(super) fn room_has_channel(&self, room: &str) -> bool {
        match self.config.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_socket_id(room),
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// The channel and payload of a broadcast without acks.
    pub(super) fn broadcast_out(&self, ns: usize, msg: BroadcastMessage) -> (String, Vec<u8>) {
        let channels = &self.namespaces[ns].channels;
        if !self.sharded() {
            let channel = channels.publish_channel(&msg.opts.rooms).into_owned();
            return (channel, msg.encode());
        }
        let message = ClusterMessage {
            uid: msg.uid,
            nsp: self.namespaces[ns].name.clone(),
            body: ClusterBody::Broadcast {
                packet: msg.packet,
                opts: msg.opts,
            },
        };
        let channel = match message.single_room() {
            Some(room) if self.room_has_channel(room) => channels.room(room),
            _ => channels.broadcast().to_owned(),
        };
        let payload = message
            .encode()
            .expect("a broadcast has a sharded encoding");
        (channel, payload)
    }

    /// The channel and payload of a request (`None`: the sharded adapter has no such request,
    /// e.g. ALL_ROOMS). Its answers are counted on the same channel.
    pub(super) fn request_out(&self, ns: usize, body: RequestBody) -> Option<(String, Vec<u8>)> {
        let channels = &self.namespaces[ns].channels;
        let uid = Some(self.uid.clone());
        if !self.sharded() {
            let payload = Request { uid, body }.encode();
            return Some((channels.request().to_owned(), payload));
        }
        let message = ClusterMessage {
            uid: self.uid.clone(),
            nsp: self.namespaces[ns].name.clone(),
            body: ClusterBody::Request(body),
        };
        Some((channels.broadcast().to_owned(), message.encode()?))
    }

    /// The channel and payload of a response to a request kept under `response.request_id()`.
    pub(super) fn response_out(&self, ns: usize, response: Response) -> Option<(String, Vec<u8>)> {
        let channels = &self.namespaces[ns].channels;
        if !self.sharded() {
            return Some((channels.response().to_owned(), response.encode()));
        }
        let (requester, request_id) = response.request_id().split_once('\n')?;
        let channel = channels.room(requester);
        let request_id = request_id.to_owned();
        let response = match response {
            Response::RemoteFetch { sockets, .. } => Response::RemoteFetch {
                request_id,
                sockets,
            },
            Response::ServerSideEmit { data, .. } => Response::ServerSideEmit { request_id, data },
            Response::BroadcastClientCount { client_count, .. } => Response::BroadcastClientCount {
                request_id,
                client_count,
            },
            Response::BroadcastAck { packet, .. } => Response::BroadcastAck { request_id, packet },
            Response::Sockets { .. } | Response::AllRooms { .. } | Response::Done { .. } => {
                return None
            }
        };
        let message = ClusterMessage {
            uid: self.uid.clone(),
            nsp: self.namespaces[ns].name.clone(),
            body: ClusterBody::Response(response),
        };
        Some((channel, message.encode()?))
    }

    /// The probe: a response to request `id` on this bridge's own response channel.
    pub(super) fn probe_out(&self, id: String) -> (String, Vec<u8>) {
        let ns = &self.namespaces[0];
        if !self.sharded() {
            let payload = Response::Done { request_id: id }.encode();
            return (ns.own_response.clone(), payload);
        }
        let message = ClusterMessage {
            uid: self.uid.clone(),
            nsp: ns.name.clone(),
            body: ClusterBody::Response(Response::ServerSideEmit {
                request_id: id,
                data: JsValue::Null,
            }),
        };
        let payload = message
            .encode()
            .expect("a server-side emit response has a sharded encoding");
        (ns.own_response.clone(), payload)
    }

    /// Reads a sharded message that came on a channel of namespace `ns`; `private` when it is
    /// this server's own response channel (where only responses come, as in Node's
    /// `onRawMessage`). `None` for what this server ignores.
    pub(super) fn read_sharded(
        &self,
        ns: usize,
        private: bool,
        payload: &bytes::Bytes,
    ) -> Result<Option<Incoming>, adapter::AdapterError> {
        let message = ClusterMessage::decode(payload)?;
        if private {
            return Ok(match message.body {
                ClusterBody::Response(response) => Some(Incoming::Response(response)),
                _ => None,
            });
        }
        if message.uid == self.uid || message.nsp != self.namespaces[ns].name {
            return Ok(None);
        }
        let uid = message.uid;
        Ok(match message.body {
            ClusterBody::Broadcast { packet, opts } => {
                Some(Incoming::Broadcast(BroadcastMessage { uid, packet, opts }))
            }
            ClusterBody::Request(mut body) => {
                match &mut body {
                    RequestBody::RemoteFetch { request_id, .. }
                    | RequestBody::Broadcast { request_id, .. }
                    | RequestBody::ServerSideEmit {
                        request_id: Some(request_id),
                        ..
                    } => *request_id = requester_key(&uid, request_id),
                    _ => {}
                }
                Some(Incoming::Request(Request {
                    uid: Some(uid),
                    body,
                }))
            }
            // Responses come on the private channel; other servers' are not for this one.
            ClusterBody::Response(_) | ClusterBody::Other(_) => None,
        })
    }

    /// Every channel and pattern to subscribe to, as (is pattern, name).
    pub(super) fn subscriptions(&self) -> Vec<(bool, String)> {
        let mut subs = Vec::new();
        for ns in &self.namespaces {
            if self.sharded() {
                subs.push((false, ns.channels.broadcast().to_owned()));
                subs.push((false, ns.own_response.clone()));
            } else {
                subs.push((true, ns.channels.pattern().to_owned()));
                subs.push((false, ns.channels.request().to_owned()));
                subs.push((false, ns.channels.response().to_owned()));
                subs.push((false, ns.own_response.clone()));
            }
        }
        subs.extend(self.rooms.channels().map(|c| (false, c.to_owned())));
        subs
    }

    /// Every channel name this bridge subscribes to, with what it carries.
    pub(super) fn build_routes(&mut self) {
        let mut routes = HashMap::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            if self.config.mode == RedisMode::Sharded {
                routes.insert(ns.channels.broadcast().to_owned(), (i, Role::Sharded));
                routes.insert(ns.own_response.clone(), (i, Role::ShardedPrivate));
            } else {
                routes.insert(ns.channels.pattern().to_owned(), (i, Role::Broadcast));
                routes.insert(ns.channels.request().to_owned(), (i, Role::Request));
                routes.insert(ns.channels.response().to_owned(), (i, Role::Response));
                routes.insert(ns.own_response.clone(), (i, Role::Response));
            }
        }
        self.routes = routes;
    }

    /// Whether this bridge wants to stay subscribed to `channel` (a namespace's channel, its
    /// own, or a room channel it has not given up).
    pub(super) fn wants(&self, channel: &str) -> bool {
        self.routes.contains_key(channel) || self.rooms.contains(channel)
    }

    /// The namespace of a sharded room channel (`prefix#nsp#room#`): the longest namespace
    /// prefix that matches.
    pub(super) fn room_channel_ns(&self, channel: &str) -> Option<usize> {
        self.namespaces
            .iter()
            .enumerate()
            .filter(|(_, ns)| ns.channels.room_of(channel).is_some_and(|r| !r.is_empty()))
            .max_by_key(|(_, ns)| ns.channels.broadcast().len())
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requester_keys_split_back() {
        let key = requester_key("7c9575a35a19ed00", "f6733b1875e0e38e");
        assert_eq!(
            key.split_once('\n'),
            Some(("7c9575a35a19ed00", "f6733b1875e0e38e"))
        );
    }

    #[test]
    fn socket_ids_are_twenty_characters() {
        assert!(looks_like_socket_id("Ov-JRqox9DHsnM2KAAAA"));
        assert!(!looks_like_socket_id("room1"));
        // JavaScript's length: an emoji outside the BMP counts twice.
        assert!(looks_like_socket_id("😀😀😀😀😀😀😀😀😀😀"));
    }
}
