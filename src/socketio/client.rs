//! The Socket.IO side of one Engine.IO connection: which namespaces it joined, the binary
//! packet being assembled, CONNECT and auth, and the shard's deadline for the first CONNECT.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::socket::{ConnectError, DisconnectReason, Socket};
use super::NsShard;
use crate::bus::cluster::{parse_offset, KeptSession};
use crate::engineio::{
    CloseReason, Connection, EngineShard, Limit, Message, RateLimit, RateState, Session, Sid,
    Verdict,
};
use crate::metrics::{ConnectRefusal, RecoveryEvent};
use crate::protocol::adapter::parse_entry_id;
use crate::protocol::socketio::{self as codec, ack_frames, control_frame, DecodeLimits};
use crate::protocol::socketio::{PacketType, Payload};

/// When a connection must have sent CONNECT by, and its guard.
type ConnectDeadline = (tokio::time::Instant, Weak<ConnectGuard>);

/// Held by a client until its first CONNECT (or its close): the deadline queue only holds a
/// weak reference to this small guard, so a connection that went away frees its session and
/// client at once instead of when its deadline expires.
struct ConnectGuard(Weak<Session>);

/// Connections that must send CONNECT before a deadline, oldest first. One queue and one
/// timer task per shard instead of a timer per connection: the timeout is the same for all,
/// so the queue stays sorted by simply appending.
#[derive(Default)]
pub(super) struct ConnectDeadlines {
    queue: RefCell<VecDeque<ConnectDeadline>>,
    added: tokio::sync::Notify,
}

impl ConnectDeadlines {
    /// Closes `session` unless `client` sends a CONNECT within `timeout`.
    pub(super) fn watch(&self, client: &Client, session: &Rc<Session>, timeout: Duration) {
        let guard = Rc::new(ConnectGuard(Rc::downgrade(session)));
        let at = tokio::time::Instant::now() + timeout;
        self.queue
            .borrow_mut()
            .push_back((at, Rc::downgrade(&guard)));
        self.added.notify_one();
        *client.connect_guard.borrow_mut() = Some(guard);
    }

    /// Closes the connections whose deadline passed without a CONNECT; runs for the shard's life.
    pub(super) async fn enforce(self: Rc<Self>) {
        loop {
            let next = self.queue.borrow().front().map(|(at, _)| *at);
            match next {
                None => self.added.notified().await,
                Some(at) if at > tokio::time::Instant::now() => tokio::time::sleep_until(at).await,
                Some(_) => {
                    let expired = self.queue.borrow_mut().pop_front();
                    // A guard still alive means no CONNECT came in time.
                    let session = expired.and_then(|(_, guard)| guard.upgrade()?.0.upgrade());
                    if let Some(session) = session {
                        session.close(CloseReason::ForcedClose);
                    }
                }
            }
        }
    }
}

/// A binary packet waiting for its attachments.
struct PendingBinary {
    ty: PacketType,
    nsp: String,
    id: Option<u64>,
    data: Value,
    attachments: usize,
    bins: Vec<Bytes>,
}

/// What a client may send: its packets' bounds and its rate of events.
#[derive(Debug)]
pub(super) struct ClientLimits {
    pub(super) decode: DecodeLimits,
    pub(super) events: RateLimit,
}

/// The Socket.IO side of one Engine.IO session: which namespaces it joined, and the binary
/// packet being assembled.
pub(super) struct Client {
    /// This client, for the CONNECT that waits on another shard's answer.
    me: Weak<Client>,
    namespaces: Rc<HashMap<String, Rc<NsShard>>>,
    engine: Rc<EngineShard>,
    limits: Rc<ClientLimits>,
    /// The client's events against `limits.events`.
    events: Cell<RateState>,
    sockets: RefCell<Vec<Socket>>,
    pending: RefCell<Option<PendingBinary>>,
    /// Dropped at the first CONNECT: until then the shard's connect deadline applies.
    connect_guard: RefCell<Option<Rc<ConnectGuard>>>,
    /// Namespaces whose CONNECT waits for another shard to hand over a recovered session.
    restoring: RefCell<Vec<String>>,
}

impl Connection for Client {
    fn on_message(&self, session: &Rc<Session>, message: Message<'_>) {
        match message {
            Message::Text(text) => self.on_text(session, text),
            Message::Binary(data) => self.on_binary(session, data),
        }
    }

    fn on_close(&self, _session: &Rc<Session>, reason: CloseReason) {
        let sockets = std::mem::take(&mut *self.sockets.borrow_mut());
        for socket in sockets {
            socket.left(DisconnectReason::Transport(reason));
        }
        self.pending.borrow_mut().take();
        self.connect_guard.borrow_mut().take();
    }
}

impl Client {
    pub(super) fn new(
        me: Weak<Client>,
        namespaces: Rc<HashMap<String, Rc<NsShard>>>,
        engine: Rc<EngineShard>,
        limits: Rc<ClientLimits>,
    ) -> Self {
        Client {
            me,
            namespaces,
            engine,
            limits,
            events: Cell::new(RateState::default()),
            sockets: RefCell::new(Vec::new()),
            pending: RefCell::new(None),
            connect_guard: RefCell::new(None),
            restoring: RefCell::new(Vec::new()),
        }
    }

    /// The socket this connection has in namespace `nsp`, if it is still connected there.
    fn socket(&self, nsp: &str) -> Option<Socket> {
        self.sockets
            .borrow()
            .iter()
            .find(|s| s.nsp() == nsp && s.connected())
            .cloned()
    }

    fn on_text(&self, session: &Rc<Session>, text: &str) {
        if self.pending.borrow().is_some() {
            // A text packet while attachments are awaited.
            return session.close(CloseReason::ParseError);
        }
        let packet = match codec::decode_with(text, &self.limits.decode) {
            Ok(p) => p,
            Err(e) => {
                if e.is_over_limit() {
                    self.engine.metrics().packet_over_limits();
                }
                return session.close(CloseReason::ParseError);
            }
        };
        if packet.attachments > 0 {
            *self.pending.borrow_mut() = Some(PendingBinary {
                ty: packet.ty,
                nsp: packet.nsp.to_string(),
                id: packet.id,
                data: packet.data.unwrap_or(Value::Null),
                attachments: packet.attachments,
                bins: Vec::with_capacity(packet.attachments),
            });
            return;
        }
        self.on_packet(
            session,
            packet.ty,
            packet.nsp,
            packet.id,
            packet.data,
            Vec::new(),
        );
    }

    fn on_binary(&self, session: &Rc<Session>, data: &[u8]) {
        let complete = {
            let mut pending = self.pending.borrow_mut();
            let Some(p) = pending.as_mut() else {
                // A binary frame nobody announced.
                return session.close(CloseReason::ParseError);
            };
            p.bins.push(Bytes::copy_from_slice(data));
            if p.bins.len() < p.attachments {
                return;
            }
            pending.take()
        };
        if let Some(p) = complete {
            if !codec::placeholders_in_range(&p.data, p.bins.len()) {
                return session.close(CloseReason::ParseError);
            }
            self.on_packet(session, p.ty, &p.nsp, p.id, Some(p.data), p.bins);
        }
    }

    fn on_packet(
        &self,
        session: &Rc<Session>,
        ty: PacketType,
        nsp: &str,
        id: Option<u64>,
        data: Option<Value>,
        bins: Vec<Bytes>,
    ) {
        if ty == PacketType::Connect {
            return self.connect(session, nsp, data);
        }
        let Some(socket) = self.socket(nsp) else {
            // "invalid state": a packet for a namespace this client has not joined.
            return session.close(CloseReason::ParseError);
        };
        match ty {
            PacketType::Event | PacketType::BinaryEvent => {
                if self.within_event_rate(session, nsp, id) {
                    socket.on_event(data, bins, id);
                }
            }
            PacketType::Ack | PacketType::BinaryAck => socket.on_ack(id, data, bins),
            PacketType::Disconnect => socket.left(DisconnectReason::ClientNamespaceDisconnect),
            PacketType::ConnectError | PacketType::Connect => {
                session.close(CloseReason::ParseError)
            }
        }
    }

    /// Takes one event from the client's rate. An event over it is refused: answered with an
    /// error ack when it asked for one, dropped otherwise; persistent abuse (more refusals than
    /// the burst since the client last stayed within its rate) closes the connection.
    fn within_event_rate(&self, session: &Rc<Session>, nsp: &str, id: Option<u64>) -> bool {
        let mut state = self.events.get();
        let verdict = self.limits.events.check(&mut state);
        self.events.set(state);
        if verdict == Verdict::Allowed {
            return true;
        }
        self.engine.metrics().event_refused();
        if verdict == Verdict::Abuse {
            session.close(CloseReason::PolicyViolation(Limit::EventRate));
        } else if let Some(id) = id {
            let refusal = Payload::from(json!({"error": "rate limited"}));
            let _ = session.send(&ack_frames(nsp, id, &refusal));
        }
        false
    }

    fn connect(&self, session: &Rc<Session>, nsp: &str, auth: Option<Value>) {
        self.connect_guard.borrow_mut().take();
        if self.socket(nsp).is_some() || self.restoring.borrow().iter().any(|n| n == nsp) {
            return session.close(CloseReason::ParseError);
        }
        // Sockets that left their namespace are forgotten here, so the list stays as short
        // as the namespaces the connection is in.
        self.sockets.borrow_mut().retain(Socket::connected);
        let metrics = self.engine.metrics();
        let Some(ns) = self.namespaces.get(nsp).cloned() else {
            metrics.namespace_refused(ConnectRefusal::UnknownNamespace);
            let refusal = ConnectError::new("Invalid namespace").to_json();
            let _ = session.send(&[control_frame(PacketType::ConnectError, nsp, Some(&refusal))]);
            return;
        };
        let auth = auth.unwrap_or_else(|| json!({}));
        if let Some(authorize) = &ns.def.authorize {
            if let Err(e) = authorize(session.request(), &auth) {
                metrics.namespace_refused(ConnectRefusal::Authorize);
                let _ = session.send(&[control_frame(
                    PacketType::ConnectError,
                    nsp,
                    Some(&e.to_json()),
                )]);
                return;
            }
        }
        let Some((pid, offset)) = recovery_request(&ns, &auth) else {
            return self.finish_connect(session, &ns, auth, None);
        };
        if ns.recovery_in_redis() {
            return self.restore_from_redis(session, &ns, auth, (pid, offset));
        }
        let offset = match offset {
            None => None,
            Some(offset) => match parse_offset(&offset) {
                Some(offset) => Some(offset),
                // Not an offset this server wrote.
                None => return self.finish_connect(session, &ns, auth, None),
            },
        };
        if let Some(kept) = ns.take_session(pid, offset) {
            // The socket joins the session's rooms before the kept session lets them go: a
            // room it alone held stays held throughout.
            let rooms = kept.rooms.clone();
            self.finish_connect(session, &ns, auth, Some((pid, kept)));
            ns.release_rooms(&rooms);
            return ns.release_kept();
        }
        ns.release_kept();
        let Some(keeper) = ns.keeper_of(pid) else {
            return self.finish_connect(session, &ns, auth, None);
        };
        // The session is kept on another shard: ask it, and answer the CONNECT then (a second
        // CONNECT for the namespace meanwhile is refused like one for a connected namespace).
        self.restoring.borrow_mut().push(nsp.to_owned());
        let (me, ns) = (self.me.clone(), ns.clone());
        let session = Rc::downgrade(session);
        tokio::task::spawn_local(async move {
            let kept = ns.clone().restore_from(keeper, pid, offset).await;
            if let (Some(client), Some(session)) = (me.upgrade(), session.upgrade()) {
                client.restoring.borrow_mut().retain(|n| *n != ns.name);
                client.finish_connect(&session, &ns, auth, kept.map(|k| (pid, k)));
            }
        });
    }

    /// Streams mode: the session `pid` comes from Redis through the bridge; the CONNECT is
    /// answered then. Node's adapter restores only a client that sent an offset (an entry id),
    /// and so does this.
    fn restore_from_redis(
        &self,
        session: &Rc<Session>,
        ns: &Rc<NsShard>,
        auth: Value,
        (pid, offset): (Sid, Option<String>),
    ) {
        let Some(offset) = offset.filter(|o| parse_entry_id(o).is_some()) else {
            return self.finish_connect(session, ns, auth, None);
        };
        // Its old connection still held on this machine (a stall): that socket leaves first,
        // and its session reaches the bridge before this question does. Here, or on the shard
        // the pid names, which answers once its socket left (the bridge's queue keeps the
        // order).
        ns.take_over(pid);
        let home = ns.keeper_of(pid);
        self.restoring.borrow_mut().push(ns.name.clone());
        let (me, ns) = (self.me.clone(), ns.clone());
        let session = Rc::downgrade(session);
        tokio::task::spawn_local(async move {
            if let Some(home) = home {
                // No session comes back: that shard keeps none in streams mode.
                let _ = ns.clone().restore_from(home, pid, None).await;
            }
            let kept = ns.clone().restore_from_redis(pid, offset).await;
            if let (Some(client), Some(session)) = (me.upgrade(), session.upgrade()) {
                client.restoring.borrow_mut().retain(|n| *n != ns.name);
                client.finish_connect(&session, &ns, auth, kept.map(|k| (pid, k)));
            }
        });
    }

    /// Creates the socket (restoring `kept`, a session and what it missed, when given), runs
    /// the middlewares and answers the CONNECT.
    fn finish_connect(
        &self,
        session: &Rc<Session>,
        ns: &Rc<NsShard>,
        auth: Value,
        kept: Option<(Sid, KeptSession)>,
    ) {
        let metrics = self.engine.metrics();
        let nsp = ns.name.as_str();
        let kept = kept.and_then(|(pid, k)| Some((pid, Sid::parse(&k.sid)?, k)));
        let ids = match &kept {
            Some((pid, sid, _)) => (*sid, Some(*pid)),
            None => (
                self.engine.next_sid(),
                ns.recovery_on().then(|| self.engine.next_sid()),
            ),
        };
        let socket = Socket::new(ids, ns.clone(), session.clone(), auth, kept.is_some());
        if let Some((_, _, k)) = &kept {
            socket.set_data(k.data.clone());
        }
        if let Some(e) = ns.def.middlewares.iter().find_map(|m| m(&socket).err()) {
            metrics.namespace_refused(ConnectRefusal::Middleware);
            let _ = session.send(&[control_frame(
                PacketType::ConnectError,
                nsp,
                Some(&e.to_json()),
            )]);
            return;
        }
        // The packets it missed go first: the client takes them before the CONNECT reply.
        for packet in kept.iter().flat_map(|(_, _, k)| &k.missed) {
            if session.send(&packet.frames).is_err() {
                return;
            }
        }
        let reply = match socket.pid() {
            Some(pid) => json!({"sid": socket.id().as_str(), "pid": pid.as_str()}),
            None => json!({"sid": socket.id().as_str()}),
        };
        if session
            .send(&[control_frame(PacketType::Connect, nsp, Some(&reply))])
            .is_err()
        {
            return;
        }
        metrics.namespace_connected();
        ns.sockets.borrow_mut().insert(socket.id(), socket.clone());
        if let Some(pid) = socket.pid() {
            ns.track_pid(pid, socket.id());
        }
        // Every socket is in the room named by its own id.
        ns.join_room(socket.id(), session, socket.id().as_str());
        for room in kept.iter().flat_map(|(_, _, k)| &k.rooms) {
            ns.join_room(socket.id(), session, room);
        }
        if kept.is_some() {
            metrics.recovery(RecoveryEvent::Recovered);
        }
        self.sockets.borrow_mut().push(socket.clone());
        if let Some(on_connect) = &ns.def.on_connect {
            on_connect(&socket);
        }
    }
}

/// The session a CONNECT asks to recover, when recovery is on: `auth.pid` (a string, as
/// socket.io-client sends it) and `auth.offset`, a string, or absent when the client received
/// nothing since its session began (socket.io-client then sends the pid alone; Node gives it a
/// fresh session, shardio everything since the socket began). `None`: a fresh session.
fn recovery_request(ns: &NsShard, auth: &Value) -> Option<(Sid, Option<String>)> {
    if !ns.recovery_on() {
        return None;
    }
    let pid = Sid::parse(auth.get("pid")?.as_str()?)?;
    let offset = match auth.get("offset") {
        None | Some(Value::Null) => None,
        Some(offset) => Some(offset.as_str()?.to_owned()),
    };
    Some((pid, offset))
}
