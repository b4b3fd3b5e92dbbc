//! Socket.IO v5 on Engine.IO (SOCKETIO.md §2): namespaces, the per-connection client,
//! CONNECT and auth, events, acks in both directions, binary attachments.
//!
//! Handlers are registered once on a [`SocketIo`] and shared by every shard; each runs on the
//! shard that owns the socket, so a handler may keep the [`Socket`] (an `Rc`) and use it later
//! from `tokio::task::spawn_local`.

pub mod broadcast;
pub mod cluster;
pub mod room;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::engineio::{
    CloseReason, Connection, EngineApp, EngineAppFactory, EngineShard, Message, OutFrame,
    RequestInfo, Session, ShardContext, Sid,
};
use crate::protocol::socketio::{self as codec, PacketType, Payload};

pub use broadcast::{BroadcastAckError, BroadcastOperator, BroadcastOpts};
pub use cluster::{Incomplete, SocketInfo};
pub use socket::{AckError, AckSender, EmitError, Socket};

pub(crate) use broadcast::{BusMessage, RemoteBroadcast};
pub(crate) use cluster::{Answer, Command, PublishedBroadcast, Query, ReplyTo, ShardToBridge};
pub(crate) use socket::event_frames;

use broadcast::{Collectors, Gatherings};
use cluster::Gathering;
use room::RoomIndex;

/// Sessions a broadcast touches together before sending to them (see `NsShard::deliver`).
const DELIVERY_BATCH: usize = 16;

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    /// A connection that has not sent CONNECT for any namespace by then is closed. Default 45 s.
    pub connect_timeout: Duration,
    /// Binary attachments accepted per packet. Default 10.
    pub max_attachments: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: codec::MAX_ATTACHMENTS,
        }
    }
}

/// Why a connection attempt to a namespace was refused: sent to the client as
/// `44<nsp>,{"message":..,"data":..}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> Value {
        match &self.data {
            Some(data) => json!({"message": self.message, "data": data}),
            None => json!({"message": self.message}),
        }
    }
}

/// Why a socket left its namespace (Socket.IO's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT for the namespace.
    ClientNamespaceDisconnect,
    /// The server called [`Socket::disconnect`].
    ServerNamespaceDisconnect,
    /// The server closed the whole connection ([`Socket::close`]).
    ForcedServerClose,
    /// The Engine.IO session closed.
    Transport(CloseReason),
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ForcedServerClose | Self::Transport(CloseReason::ForcedClose) => {
                "forced server close"
            }
            Self::Transport(reason) => reason.as_str(),
        }
    }
}

type AuthorizeFn = dyn Fn(&RequestInfo, &Value) -> Result<(), ConnectError> + Send + Sync;
type ConnectFn = dyn Fn(&Socket) + Send + Sync;
type EventFn = dyn Fn(&Socket, Payload, Option<AckSender>) + Send + Sync;
type AnyEventFn = dyn Fn(&Socket, &str, Payload, Option<AckSender>) + Send + Sync;
type DisconnectFn = dyn Fn(&Socket, DisconnectReason) + Send + Sync;
type ServerSideEmitFn =
    dyn Fn(&BroadcastOperator, &str, Payload, Option<ServerSideAck>) + Send + Sync;

/// The handlers of one namespace.
#[derive(Default, Clone)]
pub struct Namespace {
    authorize: Option<Arc<AuthorizeFn>>,
    on_connect: Option<Arc<ConnectFn>>,
    events: HashMap<String, Arc<EventFn>>,
    on_any: Option<Arc<AnyEventFn>>,
    on_disconnect: Option<Arc<DisconnectFn>>,
    on_server_side_emit: Option<Arc<ServerSideEmitFn>>,
}

impl Namespace {
    /// Decides whether a client may connect, from its request and CONNECT auth payload
    /// (socket.io's middleware). An error is sent to the client as CONNECT_ERROR.
    pub fn authorize(
        &mut self,
        f: impl Fn(&RequestInfo, &Value) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.authorize = Some(Arc::new(f));
        self
    }

    /// Runs once a socket is connected (after the CONNECT reply went out).
    pub fn on_connect(&mut self, f: impl Fn(&Socket) + Send + Sync + 'static) -> &mut Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Handles one event; `ack` is present when the client asked for an acknowledgement.
    pub fn on(
        &mut self,
        event: &str,
        f: impl Fn(&Socket, Payload, Option<AckSender>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.events.insert(event.to_string(), Arc::new(f));
        self
    }

    /// Handles events that have no handler of their own.
    pub fn on_any(
        &mut self,
        f: impl Fn(&Socket, &str, Payload, Option<AckSender>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_any = Some(Arc::new(f));
        self
    }

    /// Runs when a socket leaves the namespace, for whatever reason.
    pub fn on_disconnect(
        &mut self,
        f: impl Fn(&Socket, DisconnectReason) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// Handles the events other servers send with `serverSideEmit` (Node's `io.on(event)`),
    /// once per process, on one of its shards. The handler gets the namespace (as `io.of(nsp)`),
    /// the event, its arguments, and `ack` when the sender waits for one answer per server.
    /// Without a handler, a sender that waits gets `null` from this server at once.
    pub fn on_server_side_emit(
        &mut self,
        f: impl Fn(&BroadcastOperator, &str, Payload, Option<ServerSideAck>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_server_side_emit = Some(Arc::new(f));
        self
    }
}

/// Answers a server-side emit whose sender waits (Node forwards only the first argument).
/// Consumed by `send`, so it answers at most once.
pub struct ServerSideAck {
    ns: Rc<NsShard>,
    id: u64,
}

impl ServerSideAck {
    pub fn send(self, data: impl Into<Payload>) {
        self.ns.reply(
            ReplyTo::Bridge,
            BusMessage::Answer {
                nsp: self.ns.name.clone(),
                id: self.id,
                answer: Answer::Acks(vec![data.into()]),
                whole: true,
            },
        );
    }
}

/// A Socket.IO application: its namespaces and their handlers. Build it, then hand it to
/// [`crate::server::Server::run`] as an endpoint.
///
/// ```no_run
/// use shardio::socketio::{SocketIo, SocketIoConfig};
/// use shardio::protocol::socketio::Payload;
/// use std::time::Duration;
///
/// let mut io = SocketIo::new(SocketIoConfig::default());
/// io.namespace("/")
///     .on_connect(|socket| {
///         let _ = socket.emit("welcome", serde_json::json!({ "id": socket.id().as_str() }));
///     })
///     // Echo every "message" back, and answer the client's ack with the same arguments.
///     .on("message", |socket, data, ack| {
///         let _ = socket.emit("message-back", data.clone());
///         if let Some(ack) = ack {
///             let _ = ack.send(data);
///         }
///     })
///     // Ask the client something and wait for its answer, off the handler.
///     .on("ask", |socket, _data, _ack| {
///         let socket = socket.clone();
///         tokio::task::spawn_local(async move {
///             match socket.emit_with_ack("question", Payload::from("ready?"), Duration::from_secs(5)).await {
///                 Ok(answer) => println!("client said {:?}", answer.first()),
///                 Err(e) => println!("no answer: {e}"),
///             }
///         });
///     })
///     .on_disconnect(|socket, reason| println!("{} left: {}", socket.id(), reason.as_str()));
/// ```
#[derive(Default)]
pub struct SocketIo {
    config: SocketIoConfig,
    namespaces: HashMap<String, Arc<Namespace>>,
}

impl SocketIo {
    pub fn new(config: SocketIoConfig) -> Self {
        SocketIo {
            config,
            namespaces: HashMap::new(),
        }
    }

    /// The namespace `name` (e.g. `/` or `/admin`), created on first use. Clients may only
    /// connect to registered namespaces.
    pub fn namespace(&mut self, name: &str) -> &mut Namespace {
        let ns = self.namespaces.entry(name.to_string()).or_default();
        // The builder is the only holder until the app starts; were it shared, the copy would
        // be edited (handlers are `Arc`s, so that is cheap) rather than panicking.
        Arc::make_mut(ns)
    }
}

impl EngineAppFactory for SocketIo {
    fn cluster_namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.namespaces.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    fn for_shard(&self, ctx: &ShardContext) -> Rc<dyn EngineApp> {
        let connect_deadlines = Rc::new(ConnectDeadlines::default());
        tokio::task::spawn_local(connect_deadlines.clone().enforce());
        Rc::new(SioShard {
            config: self.config.clone(),
            engine: ctx.engine.clone(),
            connect_deadlines,
            namespaces: Rc::new(
                self.namespaces
                    .iter()
                    .map(|(name, def)| {
                        let ns = NsShard {
                            name: name.clone(),
                            def: def.clone(),
                            ctx: ctx.clone(),
                            sockets: RefCell::new(HashMap::default()),
                            rooms: RefCell::new(RoomIndex::default()),
                            next_ack: Cell::new(0),
                            collectors: RefCell::new(HashMap::new()),
                            gatherings: RefCell::new(HashMap::new()),
                        };
                        (name.clone(), Rc::new(ns))
                    })
                    .collect(),
            ),
        })
    }
}

/// The Socket.IO state of one shard.
struct SioShard {
    config: SocketIoConfig,
    engine: Rc<EngineShard>,
    connect_deadlines: Rc<ConnectDeadlines>,
    /// Shared with every client of the shard (never copied per connection).
    namespaces: Rc<HashMap<String, Rc<NsShard>>>,
}

/// One namespace on one shard: its handlers, the sockets connected here and their rooms.
pub(crate) struct NsShard {
    pub(crate) name: String,
    def: Arc<Namespace>,
    ctx: ShardContext,
    sockets: RefCell<HashMap<Sid, Socket, rustc_hash::FxBuildHasher>>,
    rooms: RefCell<RoomIndex<Sid, Rc<Session>>>,
    next_ack: Cell<u64>,
    collectors: Collectors,
    gatherings: Gatherings,
}

/// What a broadcast reached: local sockets, other shards, and whether the bridge took it.
pub(crate) struct Sent {
    pub local: usize,
    pub shards: usize,
    pub bridged: bool,
}

impl NsShard {
    fn shard(&self) -> usize {
        self.ctx.engine.id
    }

    /// A server ack id, unique across the shards of this process: the low byte is the shard,
    /// so other shards can register a broadcast's id on their sockets without collisions.
    pub(crate) fn next_ack_id(&self) -> u64 {
        let n = self.next_ack.get();
        self.next_ack.set(n.wrapping_add(1) & ((1 << 44) - 1));
        (n << 8) | self.shard() as u64
    }

    /// Delivers frames to the selected local sockets; returns how many took them. With
    /// `ack = Some((id, origin))` each receiver owes an ack to `origin`.
    fn deliver(
        &self,
        opts: &BroadcastOpts,
        frames: &[OutFrame],
        ack: Option<(u64, ReplyTo)>,
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
        delivered
    }

    /// Delivers locally, sends one message to every other shard and, unless the broadcast is
    /// local, hands `packet` (the event and its unencoded payload) to the Redis bridge.
    fn broadcast(
        &self,
        opts: BroadcastOpts,
        frames: Vec<OutFrame>,
        ack: Option<(u64, Duration)>,
        packet: Option<(&str, Payload)>,
    ) -> Sent {
        let me = self.shard();
        let id = ack.map(|(id, _)| id);
        let local = self.deliver(&opts, &frames, id.map(|id| (id, ReplyTo::Shard(me))));
        let bridged = match packet {
            Some((event, data)) if !opts.local && self.ctx.has_bridge() => {
                self.ctx
                    .send_bridge(Box::new(ShardToBridge::Publish(PublishedBroadcast {
                        nsp: self.name.clone(),
                        event: event.to_owned(),
                        data,
                        opts: opts.clone(),
                        ack,
                    })))
            }
            _ => false,
        };
        let mut shards = 0;
        let count = self.ctx.engine.count;
        if count > 1 {
            let remote = Arc::new(RemoteBroadcast {
                nsp: self.name.clone(),
                opts,
                frames,
                ack: id,
            });
            for to in (0..count).filter(|&s| s != me) {
                let msg = Box::new(BusMessage::Broadcast(remote.clone()));
                if self.ctx.send_app(to, msg).is_ok() {
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

    /// Sends `msg` to whoever asked: a shard over the bus, or the bridge.
    pub(crate) fn reply(&self, to: ReplyTo, msg: BusMessage) {
        match to {
            ReplyTo::Shard(shard) if shard == self.shard() => self.on_reply(msg),
            ReplyTo::Shard(shard) => {
                let _ = self.ctx.send_app(shard, Box::new(msg));
            }
            ReplyTo::Bridge => {
                self.ctx.send_bridge(Box::new(ShardToBridge::Reply(msg)));
            }
        }
    }

    /// Routes a client's answer to a broadcast-with-ack to the collector of `origin`.
    pub(crate) fn route_broadcast_ack(&self, id: u64, origin: ReplyTo, payload: Payload) {
        let msg = BusMessage::Ack {
            nsp: self.name.clone(),
            id,
            payload,
        };
        self.reply(origin, msg);
    }

    /// Carries out `cmd` here, on every other shard, and with `remote`, on the other machines.
    pub(crate) fn tell(&self, cmd: Command, remote: bool) {
        self.apply(&cmd);
        for to in (0..self.ctx.engine.count).filter(|&s| s != self.shard()) {
            let msg = BusMessage::Command {
                nsp: self.name.clone(),
                cmd: cmd.clone(),
            };
            let _ = self.ctx.send_app(to, Box::new(msg));
        }
        if remote {
            self.tell_bridge(cmd);
        }
    }

    /// Hands `cmd` to the bridge for the other machines (dropped without a bridge).
    pub(crate) fn tell_bridge(&self, cmd: Command) {
        self.ctx.send_bridge(Box::new(ShardToBridge::Tell {
            nsp: self.name.clone(),
            cmd,
        }));
    }

    /// Starts `query` on every shard (unless only other machines answer it) and, with `remote`,
    /// on the other machines. The caller waits on the returned gathering (bounded) and removes
    /// it from `gatherings`.
    pub(crate) fn ask(
        &self,
        query: Query,
        remote: bool,
        timeout: Duration,
    ) -> (u64, Rc<Gathering>) {
        let id = self.next_ack_id();
        let gathering = Gathering::new(self.answer(&query));
        self.gatherings.borrow_mut().insert(id, gathering.clone());
        let mut expected = 0;
        if !matches!(query, Query::ServerSideEmit { .. }) {
            for to in (0..self.ctx.engine.count).filter(|&s| s != self.shard()) {
                let msg = BusMessage::Query {
                    nsp: self.name.clone(),
                    id,
                    query: query.clone(),
                };
                if self.ctx.send_app(to, Box::new(msg)).is_ok() {
                    expected += 1;
                }
            }
        }
        let ask = ShardToBridge::Ask {
            nsp: self.name.clone(),
            id,
            query,
            timeout,
        };
        if remote && self.ctx.send_bridge(Box::new(ask)) {
            expected += 1;
        }
        gathering.tally.borrow_mut().expect(expected);
        (id, gathering)
    }

    fn collect_ack(&self, id: u64, payload: Payload) {
        let collector = self.collectors.borrow().get(&id).cloned();
        if let Some(c) = collector {
            c.push(payload);
        }
    }

    fn on_bus(self: &Rc<Self>, from: ReplyTo, msg: BusMessage) {
        match msg {
            BusMessage::Broadcast(b) => {
                let count = self.deliver(&b.opts, &b.frames, b.ack.map(|id| (id, from)));
                if let Some(id) = b.ack {
                    let reply = BusMessage::AckCount {
                        nsp: self.name.clone(),
                        id,
                        count,
                    };
                    self.reply(from, reply);
                }
            }
            reply @ (BusMessage::AckCount { .. }
            | BusMessage::Ack { .. }
            | BusMessage::Answer { .. }) => self.on_reply(reply),
            BusMessage::Query { id, query, .. } => {
                let answer = BusMessage::Answer {
                    nsp: self.name.clone(),
                    id,
                    answer: self.answer(&query),
                    whole: true,
                };
                self.reply(from, answer);
            }
            BusMessage::Command { cmd, .. } => self.apply(&cmd),
            BusMessage::ServerSideEmit {
                event, data, ack, ..
            } => self.on_server_side_emit(&event, data, ack),
        }
    }

    /// A reply to something this shard started: a broadcast-with-ack or a query.
    fn on_reply(&self, msg: BusMessage) {
        match msg {
            BusMessage::AckCount { id, count, .. } => {
                let collector = self.collectors.borrow().get(&id).cloned();
                if let Some(c) = collector {
                    c.shard_reported(count);
                }
            }
            BusMessage::Ack { id, payload, .. } => self.collect_ack(id, payload),
            BusMessage::Answer {
                id, answer, whole, ..
            } => {
                let gathering = self.gatherings.borrow().get(&id).cloned();
                if let Some(g) = gathering {
                    g.add(answer, whole);
                }
            }
            _ => {}
        }
    }

    fn on_server_side_emit(self: &Rc<Self>, event: &str, data: Payload, ack: Option<u64>) {
        let ack = ack.map(|id| ServerSideAck {
            ns: self.clone(),
            id,
        });
        match &self.def.on_server_side_emit {
            Some(handler) => {
                let io = BroadcastOperator::new(self.clone(), BroadcastOpts::default());
                handler(&io, event, data, ack);
            }
            // Nobody listens here: say so at once rather than let the sender time out.
            None => {
                if let Some(ack) = ack {
                    ack.send(Value::Null);
                }
            }
        }
    }
}

impl SioShard {
    fn dispatch(&self, from: ReplyTo, msg: Box<dyn std::any::Any + Send>) {
        let Ok(msg) = msg.downcast::<BusMessage>() else {
            return;
        };
        if let Some(ns) = self.namespaces.get(msg.nsp()) {
            ns.on_bus(from, *msg);
        }
    }
}

impl EngineApp for SioShard {
    fn on_bus(&self, origin: usize, msg: Box<dyn std::any::Any + Send>) {
        self.dispatch(ReplyTo::Shard(origin), msg);
    }

    fn on_bridge(&self, msg: Box<dyn std::any::Any + Send>) {
        self.dispatch(ReplyTo::Bridge, msg);
    }

    fn open(&self, session: &Rc<Session>) -> Rc<dyn Connection> {
        let client = Rc::new_cyclic(|me| Client {
            me: me.clone(),
            namespaces: self.namespaces.clone(),
            engine: self.engine.clone(),
            max_attachments: self.config.max_attachments,
            sockets: RefCell::new(Vec::new()),
            pending: RefCell::new(None),
            connect_guard: RefCell::new(None),
        });
        let guard = Rc::new(ConnectGuard(Rc::downgrade(session)));
        self.connect_deadlines.push(
            tokio::time::Instant::now() + self.config.connect_timeout,
            Rc::downgrade(&guard),
        );
        *client.connect_guard.borrow_mut() = Some(guard);
        client
    }
}

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
struct ConnectDeadlines {
    queue: RefCell<VecDeque<ConnectDeadline>>,
    added: tokio::sync::Notify,
}

impl ConnectDeadlines {
    fn push(&self, at: tokio::time::Instant, guard: Weak<ConnectGuard>) {
        self.queue.borrow_mut().push_back((at, guard));
        self.added.notify_one();
    }

    /// Closes the connections whose deadline passed without a CONNECT; runs for the shard's life.
    async fn enforce(self: Rc<Self>) {
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

/// The Socket.IO side of one Engine.IO session: which namespaces it joined, and the binary
/// packet being assembled.
struct Client {
    me: Weak<Client>,
    namespaces: Rc<HashMap<String, Rc<NsShard>>>,
    engine: Rc<EngineShard>,
    max_attachments: usize,
    sockets: RefCell<Vec<Socket>>,
    pending: RefCell<Option<PendingBinary>>,
    /// Dropped at the first CONNECT: until then the shard's connect deadline applies.
    connect_guard: RefCell<Option<Rc<ConnectGuard>>>,
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
    fn on_text(&self, session: &Rc<Session>, text: &str) {
        if self.pending.borrow().is_some() {
            // A text packet while attachments are awaited.
            return session.close(CloseReason::ParseError);
        }
        let packet = match codec::decode(text, self.max_attachments) {
            Ok(p) => p,
            Err(_) => return session.close(CloseReason::ParseError),
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
        let socket = self
            .sockets
            .borrow()
            .iter()
            .find(|s| s.nsp() == nsp)
            .cloned();
        let Some(socket) = socket else {
            // "invalid state": a packet for a namespace this client has not joined.
            return session.close(CloseReason::ParseError);
        };
        match ty {
            PacketType::Event | PacketType::BinaryEvent => socket.on_event(data, bins, id),
            PacketType::Ack | PacketType::BinaryAck => socket.on_ack(id, data, bins),
            PacketType::Disconnect => {
                self.forget(&socket);
                socket.left(DisconnectReason::ClientNamespaceDisconnect);
            }
            PacketType::ConnectError | PacketType::Connect => {
                session.close(CloseReason::ParseError)
            }
        }
    }

    fn connect(&self, session: &Rc<Session>, nsp: &str, auth: Option<Value>) {
        self.connect_guard.borrow_mut().take();
        if self.sockets.borrow().iter().any(|s| s.nsp() == nsp) {
            return session.close(CloseReason::ParseError);
        }
        let Some(ns) = self.namespaces.get(nsp).cloned() else {
            let refusal = ConnectError::new("Invalid namespace").to_json();
            let _ = session.send(&[control_frame(PacketType::ConnectError, nsp, Some(&refusal))]);
            return;
        };
        let auth = auth.unwrap_or_else(|| json!({}));
        if let Some(authorize) = &ns.def.authorize {
            if let Err(e) = authorize(session.request(), &auth) {
                let _ = session.send(&[control_frame(
                    PacketType::ConnectError,
                    nsp,
                    Some(&e.to_json()),
                )]);
                return;
            }
        }
        let socket = Socket::new(
            self.engine.next_sid(),
            ns.clone(),
            session.clone(),
            self.me.clone(),
            auth,
        );
        let reply = json!({"sid": socket.id().as_str()});
        if session
            .send(&[control_frame(PacketType::Connect, nsp, Some(&reply))])
            .is_err()
        {
            return;
        }
        ns.sockets.borrow_mut().insert(socket.id(), socket.clone());
        // Every socket is in the room named by its own id.
        ns.rooms
            .borrow_mut()
            .join(socket.id(), session, socket.id().as_str());
        self.sockets.borrow_mut().push(socket.clone());
        if let Some(on_connect) = &ns.def.on_connect {
            on_connect(&socket);
        }
    }

    fn forget(&self, socket: &Socket) {
        self.sockets.borrow_mut().retain(|s| s.id() != socket.id());
    }
}

/// A CONNECT, CONNECT_ERROR or DISCONNECT packet as an Engine.IO message frame.
fn control_frame(ty: PacketType, nsp: &str, data: Option<&Value>) -> OutFrame {
    OutFrame::text(32 + nsp.len(), |b| {
        b.push(b'4');
        codec::encode_header(ty, nsp, None, 0, b);
        if let Some(data) = data {
            codec::write_json(data, b);
        }
    })
}
