//! What the shards ask of the bridge: broadcasts to publish, questions and commands for the
//! cluster, and the shards' answers to other servers' requests.

use super::*;

impl Bridge {
    pub(super) fn on_shard(&mut self, work: ToBridge) {
        let origin = work.from;
        match work.msg {
            BridgeMsg::Publish(b) => self.publish_broadcast(origin, *b),
            BridgeMsg::Ask {
                nsp,
                id,
                query,
                timeout,
            } => self.ask_cluster(origin, &nsp, id, *query, timeout),
            BridgeMsg::Tell { nsp, cmd } => self.tell_cluster(&nsp, *cmd),
            BridgeMsg::Reply(reply) => self.on_shard_reply(*reply),
            BridgeMsg::Rooms(changes) => self.on_rooms(origin, *changes),
            BridgeMsg::KeepSession(keep) => self.keep_session(*keep),
            BridgeMsg::Restore(ask) => self.restore(origin, *ask),
        }
    }

    pub(super) fn ns_index(&self, nsp: &str) -> Option<usize> {
        self.namespaces.iter().position(|n| n.name == nsp)
    }

    pub(super) fn publish_broadcast(&mut self, origin: usize, b: PublishedBroadcast) {
        let Some(ns) = self.ns_index(&b.nsp) else {
            return;
        };
        let data = match convert::event_data(&b.event, &b.data) {
            Ok(data) => data,
            Err(e) => {
                self.stats().drop_one();
                tracing::warn!(error = %e, "broadcast not published: its payload has bad placeholders");
                return self.report_no_remote_clients(ns, origin, b.ack);
            }
        };
        let packet = adapter::Packet {
            kind: 2,
            data,
            nsp: b.nsp,
        };
        match b.ack {
            None => {
                let message = BroadcastMessage {
                    uid: self.uid.clone(),
                    packet,
                    opts: convert::wire_opts(&b.opts, None),
                };
                self.send_broadcast(ns, message);
            }
            Some((id, timeout)) => {
                if self.out.is_none() || !self.pending.has_room() {
                    self.stats().drop_one();
                    return self.report_no_remote_clients(ns, origin, b.ack);
                }
                let timeout = timeout.min(self.config.requests_timeout());
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                let request_id = self.request_id();
                let body = RequestBody::Broadcast {
                    request_id: request_id.clone(),
                    packet,
                    opts: convert::wire_opts(&b.opts, Some(timeout_ms)),
                };
                let req = Outbound {
                    ns,
                    origin,
                    id,
                    kind: OutboundKind::BroadcastAck {
                        counts: Tally::new(0, None),
                        reported: false,
                    },
                    started: Instant::now(),
                    deadline: Instant::now() + timeout,
                };
                self.send_request(ns, request_id, body, req);
            }
        }
    }

    /// Tells the origin of a broadcast with acks that no other machine will count.
    pub(super) fn report_no_remote_clients(
        &self,
        ns: usize,
        origin: usize,
        ack: Option<(u64, Duration)>,
    ) {
        if let Some((id, _)) = ack {
            let reply = Reply::AckCount {
                nsp: self.namespaces[ns].name.clone(),
                id,
                count: 0,
            };
            self.reply_to_shard(origin, reply);
        }
    }

    /// Publishes a request that wants answers and registers it.
    pub(super) fn send_request(
        &mut self,
        ns: usize,
        request_id: String,
        body: RequestBody,
        req: Outbound,
    ) {
        let out = self.request_out(ns, request_id.clone(), body);
        self.pending.add_outbound(request_id.clone(), req);
        if !out.is_some_and(|out| self.send_out(out)) {
            if let Some(due) = self.pending.servers_known(&request_id, None) {
                self.carry_out(due);
            }
        }
    }

    pub(super) fn ask_cluster(
        &mut self,
        origin: usize,
        nsp: &str,
        id: u64,
        query: Query,
        timeout: Duration,
    ) {
        let Some(ns) = self.ns_index(nsp) else {
            return;
        };
        let empty = Answer::empty_for(&query);
        if self.out.is_none() || !self.pending.has_room() {
            // Redis is away: say so at once instead of letting the shard wait it out.
            return self.answer_incomplete(origin, nsp, id, empty);
        }
        let request_id = self.request_id();
        let body = match query {
            Query::FetchSockets(opts) => RequestBody::RemoteFetch {
                request_id: request_id.clone(),
                opts: convert::wire_opts(&opts, None),
            },
            Query::AllRooms => RequestBody::AllRooms {
                request_id: request_id.clone(),
            },
            Query::ServerSideEmit { event, data } => match convert::event_data(&event, &data) {
                Ok(JsValue::Array(data)) => RequestBody::ServerSideEmit {
                    request_id: Some(request_id.clone()),
                    data,
                },
                _ => return self.answer_incomplete(origin, nsp, id, empty),
            },
        };
        let req = Outbound {
            ns,
            origin,
            id,
            kind: OutboundKind::Ask(Tally::new(empty, None)),
            started: Instant::now(),
            deadline: Instant::now() + timeout.min(self.config.requests_timeout()),
        };
        self.send_request(ns, request_id, body, req);
    }

    /// Answers question `id` of shard `origin` with `answer`, marked incomplete: the cluster
    /// could not be asked.
    fn answer_incomplete(&self, origin: usize, nsp: &str, id: u64, answer: Answer) {
        let reply = Reply::Answer {
            nsp: nsp.to_owned(),
            id,
            answer,
            whole: false,
        };
        self.reply_to_shard(origin, reply);
    }

    pub(super) fn tell_cluster(&mut self, nsp: &str, cmd: Command) {
        let Some(ns) = self.ns_index(nsp) else {
            return;
        };
        let body = match cmd {
            Command::Join { opts, rooms } => RequestBody::RemoteJoin {
                opts: convert::wire_opts(&opts, None),
                rooms,
            },
            Command::Leave { opts, rooms } => RequestBody::RemoteLeave {
                opts: convert::wire_opts(&opts, None),
                rooms,
            },
            Command::Disconnect { opts, close } => RequestBody::RemoteDisconnect {
                opts: convert::wire_opts(&opts, None),
                close,
            },
            Command::ServerSideEmit { event, data } => match convert::event_data(&event, &data) {
                Ok(JsValue::Array(data)) => RequestBody::ServerSideEmit {
                    request_id: None,
                    data,
                },
                _ => {
                    self.stats().drop_one();
                    return;
                }
            },
        };
        self.send_command(ns, body);
    }

    pub(super) fn on_shard_reply(&mut self, reply: Reply) {
        let due = match reply {
            Reply::Answer { id, answer, .. } => self.pending.shard_answered(id, answer),
            Reply::AckCount { id, count, .. } => self.pending.shard_counted(id, count),
            Reply::Ack { id, payload, .. } => {
                if let Some((ns, request_id)) = self.pending.inbound_ack_target(id) {
                    let response = Response::BroadcastAck {
                        request_id: request_id.to_owned(),
                        packet: convert::first_arg(&payload),
                    };
                    self.send_response(ns, response);
                }
                None
            }
            // Sessions move between the shards of one process only; the bridge never asks.
            Reply::Restored { .. } => None,
            // Only shards are told that; a bridge never asks itself.
            Reply::RoomsSubscribed { .. } => None,
        };
        if let Some(due) = due {
            self.carry_out(due);
        }
    }

    pub(super) fn carry_out(&mut self, due: Due) {
        match due {
            Due::Respond {
                ns,
                request_id,
                kind,
                answer,
            } => {
                let response = match (kind, answer) {
                    (InboundKind::FetchSockets, Answer::Sockets(sockets)) => {
                        Response::RemoteFetch {
                            request_id,
                            sockets: sockets.into_iter().map(convert::remote_socket).collect(),
                        }
                    }
                    (InboundKind::AllRooms, Answer::Rooms(mut rooms)) => {
                        rooms.sort_unstable();
                        rooms.dedup();
                        Response::AllRooms { request_id, rooms }
                    }
                    (_, answer) => Response::ServerSideEmit {
                        request_id,
                        data: pending::first_ack(answer)
                            .map_or(JsValue::Null, |p| convert::first_arg(&p)),
                    },
                };
                self.send_response(ns, response);
            }
            Due::ClientCount {
                ns,
                request_id,
                count,
            } => {
                let response = Response::BroadcastClientCount {
                    request_id,
                    client_count: count,
                };
                self.send_response(ns, response);
            }
            Due::Answer {
                ns,
                origin,
                id,
                answer,
                whole,
                took,
            } => {
                self.stats().round_trip(took);
                let reply = Reply::Answer {
                    nsp: self.namespaces[ns].name.clone(),
                    id,
                    answer,
                    whole,
                };
                self.reply_to_shard(origin, reply);
            }
            Due::AckCount {
                ns,
                origin,
                id,
                count,
                took,
            } => {
                self.stats().round_trip(took);
                let reply = Reply::AckCount {
                    nsp: self.namespaces[ns].name.clone(),
                    id,
                    count: usize::try_from(count).unwrap_or(usize::MAX),
                };
                self.reply_to_shard(origin, reply);
            }
        }
    }
}
