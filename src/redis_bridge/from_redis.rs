//! What arrives from Redis: other servers' broadcasts, requests and responses (docs/PROTOCOL.md §3),
//! decoded and handed to the shards.

use super::*;

impl Bridge {
    pub(super) fn on_redis(&mut self, msg: &redis::Msg) {
        let key = match msg.get_pattern::<Option<String>>() {
            Ok(Some(pattern)) => pattern,
            _ => msg.get_channel_name().to_owned(),
        };
        self.stats().message_in(msg.get_payload_bytes().len());
        let Some((ns, role)) = self.route(&key) else {
            return;
        };
        let payload = convert::payload_bytes(msg);
        let channel = msg.get_channel_name();
        match role {
            Role::Broadcast => match BroadcastMessage::decode(&payload) {
                Ok(b) => self.on_broadcast(ns, b, None),
                Err(e) => self.malformed(channel, &e),
            },
            Role::Request => match Request::decode(&payload) {
                Ok(r) => self.on_request(ns, r),
                Err(e) => self.malformed(channel, &e),
            },
            Role::Response => match Response::decode(&payload) {
                Ok(r) => self.on_response(r),
                Err(e) => self.malformed(channel, &e),
            },
            Role::Cluster => self.on_cluster_payload(ns, channel, &payload, false),
            Role::ClusterPrivate => self.on_cluster_payload(ns, channel, &payload, true),
        }
    }

    /// A broadcast from Pub/Sub, or from the stream with its entry id (`entry`).
    pub(super) fn on_broadcast(&mut self, ns: usize, msg: BroadcastMessage, entry: Option<&str>) {
        // With sessions in Redis a recoverable broadcast of this server reaches its sockets
        // only now, as its shards sent it to the stream instead of delivering it.
        let through_stream =
            self.sessions_in_redis() && entry.is_some() && !msg.opts.flags.volatile;
        let own = msg.uid == self.uid && !through_stream;
        if own || msg.packet.nsp != self.namespaces[ns].name {
            return;
        }
        let Some(broadcast) = self.decode_event(ns, msg.packet, msg.opts, None, entry) else {
            return;
        };
        self.stats().received_one();
        self.to_interested_shards(&broadcast);
        if let (Some(IN_STREAM), Some(id)) = (broadcast.offset, entry) {
            self.remember(id, &broadcast);
        }
    }

    /// Encodes a packet from Redis once, into the frames every shard shares. `entry`: its
    /// stream entry id, the offset of a recoverable packet when sessions are kept in Redis.
    pub(super) fn decode_event(
        &self,
        ns: usize,
        packet: adapter::Packet,
        opts: adapter::BroadcastOpts,
        ack: Option<u64>,
        entry: Option<&str>,
    ) -> Option<Arc<RemoteBroadcast>> {
        // EVENT (2); BINARY_EVENT (5) would mean the same data. Other packet types are not
        // broadcast by Node's adapter.
        let split = matches!(packet.kind, 2 | 5)
            .then(|| convert::split_event(packet.data))
            .flatten();
        let Some((event, data)) = split else {
            self.malformed(&self.namespaces[ns].name, &"not an EVENT packet");
            return None;
        };
        let nsp = self.namespaces[ns].name.clone();
        let opts = convert::local_opts(opts);
        // Recoverable as a broadcast of a shard would be: no ack, not volatile.
        let recoverable = ack.is_none() && !opts.volatile;
        let offset = match (&self.offsets, entry) {
            (Some(_), Some(id)) if recoverable && self.sessions_in_redis() => {
                Some((IN_STREAM, id.to_owned()))
            }
            (Some(_), _) if self.sessions_in_redis() => None,
            (Some(issued), _) if recoverable => {
                issued.set(issued.get() + 1);
                let offset = recovery_offset(issued.get(), Origin::Bridge);
                Some((offset, format_offset(offset)))
            }
            _ => None,
        };
        let frames = match &offset {
            Some((_, written)) => event_frames_with_offset(&nsp, &event, &data, written),
            None => event_frames(&nsp, &event, ack, &data),
        };
        let offset = offset.map(|(offset, _)| offset);
        Some(Arc::new(RemoteBroadcast {
            nsp,
            opts,
            frames,
            ack,
            offset,
        }))
    }

    pub(super) fn on_request(&mut self, ns: usize, request: Request) {
        if request.uid.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        self.stats().received_one();
        let cmd = match request.body {
            RequestBody::RemoteJoin { opts, rooms } => Command::Join {
                opts: convert::local_opts(opts),
                rooms,
            },
            RequestBody::RemoteLeave { opts, rooms } => Command::Leave {
                opts: convert::local_opts(opts),
                rooms,
            },
            RequestBody::RemoteDisconnect { opts, close } => Command::Disconnect {
                opts: convert::local_opts(opts),
                close,
            },
            RequestBody::RemoteFetch { request_id, opts } => {
                let query = Query::FetchSockets(convert::local_opts(opts));
                return self.ask_shards(ns, request_id, InboundKind::FetchSockets, query);
            }
            RequestBody::AllRooms { request_id } => {
                return self.ask_shards(ns, request_id, InboundKind::AllRooms, Query::AllRooms);
            }
            RequestBody::ServerSideEmit { request_id, data } => {
                return self.on_server_side_emit(ns, request_id, data);
            }
            RequestBody::Broadcast {
                request_id,
                packet,
                opts,
            } => return self.on_broadcast_with_ack(ns, request_id, packet, opts),
            // Adapter 8 never sends these (it fetches instead); an older node that does gets
            // no answer from this server.
            RequestBody::Sockets { .. }
            | RequestBody::LegacyJoin { .. }
            | RequestBody::LegacyLeave { .. }
            | RequestBody::LegacyDisconnect { .. } => {
                return tracing::debug!(kind = ?request.body, "legacy adapter request ignored");
            }
        };
        let nsp = &self.namespaces[ns].name;
        self.to_every_shard(|| SioMsg::Command {
            nsp: nsp.clone(),
            cmd: Box::new(cmd.clone()),
        });
    }

    pub(super) fn ask_shards(
        &mut self,
        ns: usize,
        request_id: String,
        kind: InboundKind,
        query: Query,
    ) {
        if !self.pending.has_room() {
            self.stats().drop_one();
            return;
        }
        let id = self.shard_id();
        let nsp = self.namespaces[ns].name.clone();
        let asked = self.to_every_shard(|| SioMsg::Query {
            nsp: nsp.clone(),
            id,
            query: Box::new(query.clone()),
        });
        let req = Inbound {
            ns,
            request_id,
            kind,
            tally: Tally::new(Answer::empty_for(&query), Some(asked)),
            deadline: Instant::now() + self.shard_wait(),
        };
        if let Some(due) = self.pending.add_inbound(id, req) {
            self.carry_out(due);
        }
    }

    pub(super) fn shard_wait(&self) -> Duration {
        SHARD_ANSWER_WAIT.min(self.config.requests_timeout() / 2)
    }

    pub(super) fn on_server_side_emit(
        &mut self,
        ns: usize,
        request_id: Option<String>,
        data: Vec<JsValue>,
    ) {
        let Some((event, data)) = convert::split_event(JsValue::Array(data)) else {
            self.malformed(
                &self.namespaces[ns].name,
                &"server-side emit without an event",
            );
            return;
        };
        let ack = match request_id {
            Some(request_id) if self.pending.has_room() => {
                let id = self.shard_id();
                let req = Inbound {
                    ns,
                    request_id,
                    kind: InboundKind::ServerSideEmit,
                    tally: Tally::new(Answer::Acks(Vec::new()), Some(1)),
                    // The handler may take its time, but must answer within the requester's.
                    deadline: Instant::now() + self.config.requests_timeout() * 4 / 5,
                };
                self.pending.add_inbound(id, req);
                Some(id)
            }
            _ => None,
        };
        // One server runs it once: one shard, taking turns.
        let shard = self.next_emit_shard % self.shards;
        self.next_emit_shard = self.next_emit_shard.wrapping_add(1);
        let emit = ServerSideEmit {
            nsp: self.namespaces[ns].name.clone(),
            event,
            data,
            ack,
        };
        self.to_shard(shard, SioMsg::ServerSideEmit(Box::new(emit)));
    }

    pub(super) fn on_broadcast_with_ack(
        &mut self,
        ns: usize,
        request_id: String,
        packet: adapter::Packet,
        opts: adapter::BroadcastOpts,
    ) {
        if !self.pending.has_room() {
            self.stats().drop_one();
            return;
        }
        let timeout = opts
            .flags
            .timeout
            .map_or(self.config.requests_timeout(), Duration::from_millis);
        let id = self.shard_id();
        let Some(broadcast) = self.decode_event(ns, packet, opts, Some(id), None) else {
            return;
        };
        let reached = self.to_interested_shards(&broadcast);
        let now = Instant::now();
        let req = InboundAck {
            ns,
            request_id,
            counts: Tally::new(0, Some(reached)),
            counted: false,
            count_deadline: now + self.shard_wait(),
            deadline: now + timeout,
        };
        if let Some(due) = self.pending.add_inbound_ack(id, req) {
            self.carry_out(due);
        }
    }

    pub(super) fn on_response(&mut self, response: Response) {
        if self.probe.as_deref() == Some(response.request_id()) {
            self.probe = None;
            return;
        }
        // Responses to other servers' requests arrive too; they match nothing here.
        if !self.pending.knows(response.request_id()) {
            return;
        }
        self.stats().received_one();
        let due = match response {
            Response::RemoteFetch {
                request_id,
                sockets,
            } => {
                let sockets = sockets.into_iter().map(convert::socket_info).collect();
                self.pending
                    .server_answered(&request_id, Answer::Sockets(sockets))
            }
            Response::AllRooms { request_id, rooms } => self
                .pending
                .server_answered(&request_id, Answer::Rooms(rooms)),
            Response::ServerSideEmit { request_id, data } => {
                let acks = Answer::Acks(vec![convert::payload_of(data)]);
                self.pending.server_answered(&request_id, acks)
            }
            Response::BroadcastClientCount {
                request_id,
                client_count,
            } => self.pending.server_counted(&request_id, client_count),
            Response::BroadcastAck { request_id, packet } => {
                if let Some((ns, origin, id)) = self.pending.outbound_ack_target(&request_id) {
                    let reply = Reply::Ack {
                        nsp: self.namespaces[ns].name.clone(),
                        id,
                        payload: convert::payload_of(packet),
                    };
                    self.reply_to_shard(origin, reply);
                }
                None
            }
            // Answers to requests this bridge never sends.
            Response::Sockets { .. } | Response::Done { .. } => None,
        };
        if let Some(due) = due {
            self.carry_out(due);
        }
    }
}
