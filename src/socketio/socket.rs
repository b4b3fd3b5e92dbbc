//! A socket: one client connected to one namespace, and what the server can do with it (emit,
//! acks, rooms, disconnect), and how cluster-wide queries describe it.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::sync::oneshot;

use super::NsShard;
use crate::bus::cluster::{BroadcastOpts, Origin, SocketInfo, SocketLocation};
use crate::engineio::{CloseReason, RequestInfo, SendError, Session, Sid};
use crate::protocol::adapter::js_date_string;
use crate::protocol::http::percent_decode;
use crate::protocol::socketio::{
    ack_frames, control_frame, event_frames, is_reserved_event, PacketType, Payload,
};

/// Why an emit did not go out.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The event name is reserved by Socket.IO (`connect`, `disconnect`, ...); pick another.
    #[error("reserved event name")]
    ReservedEvent,
    /// The socket is no longer connected; drop the message.
    #[error("socket disconnected")]
    Disconnected,
    /// The client reads too slowly; it is being disconnected.
    #[error("slow consumer")]
    SlowConsumer,
}

impl From<SendError> for EmitError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => EmitError::Disconnected,
            SendError::SlowConsumer => EmitError::SlowConsumer,
        }
    }
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The client did not answer in time.
    #[error("ack timed out")]
    Timeout,
    /// The client left before answering.
    #[error("socket disconnected before acknowledging")]
    Disconnected,
    /// The event could not be sent.
    #[error("emit failed: {0}")]
    Emit(#[from] EmitError),
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
    /// Socket.IO's reason string, as the client and Node's handlers see it.
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

    /// Whether a socket that left for this reason keeps its session for connection state
    /// recovery (Node's `RECOVERABLE_DISCONNECT_REASONS`): a lost or closed transport, a
    /// missed ping, a server shutting down or closing the connection, but not a namespace
    /// disconnect from either side.
    pub fn keeps_session(self) -> bool {
        matches!(
            self.as_str(),
            "transport error"
                | "transport close"
                | "forced close"
                | "ping timeout"
                | "server shutting down"
                | "forced server close"
        )
    }
}

/// Why a connection attempt to a namespace was refused: sent to the client as
/// `44<nsp>,{"message":..,"data":..}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// What the client sees as `err.message`.
    pub message: String,
    /// Optional details, `err.data` on the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data` to the refusal (the client sees it as `err.data`).
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub(super) fn to_json(&self) -> Value {
        match &self.data {
            Some(data) => json!({"message": self.message, "data": data}),
            None => json!({"message": self.message}),
        }
    }
}

/// A [`Socket`] that may be gone: [`WeakSocket::upgrade`] gives it back while it exists.
#[derive(Clone)]
pub struct WeakSocket(std::rc::Weak<SocketInner>);

impl WeakSocket {
    /// The socket, unless it is gone.
    pub fn upgrade(&self) -> Option<Socket> {
        self.0.upgrade().map(Socket)
    }
}

impl std::fmt::Debug for WeakSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakSocket")
    }
}

/// Typed values an application attaches to a socket, one per type (the gateway keeps the
/// grants of a client's token there).
#[derive(Default)]
pub struct Extensions(RefCell<Vec<Rc<dyn Any>>>);

impl Extensions {
    /// Stores `value`, replacing a value of the same type.
    pub fn insert<T: 'static>(&self, value: T) {
        let mut values = self.0.borrow_mut();
        values.retain(|v| !v.is::<T>());
        values.push(Rc::new(value));
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: 'static>(&self) -> Option<Rc<T>> {
        let values = self.0.borrow();
        let value = values.iter().find(|v| v.is::<T>())?.clone();
        value.downcast::<T>().ok()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({} values)", self.0.borrow().len())
    }
}

/// A client connected to a namespace. Cheap to clone; lives on the shard that owns it.
#[derive(Clone)]
pub struct Socket(Rc<SocketInner>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("nsp", &self.nsp())
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

struct SocketInner {
    id: Sid,
    ns: Rc<NsShard>,
    session: Rc<Session>,
    auth: Value,
    connected: Cell<bool>,
    acks: RefCell<HashMap<u64, AckWaiter>>,
    /// Node's `socket.data`: shown to cluster-wide queries.
    data: RefCell<Value>,
    extensions: Extensions,
    /// The private session id the client keeps for recovery, when recovery is on.
    pid: Option<Sid>,
    /// Whether this socket is a session recovered from an earlier connection.
    recovered: bool,
}

/// Who waits for an ack this socket owes.
enum AckWaiter {
    /// An `emit_with_ack` on this socket.
    Emit(oneshot::Sender<Payload>),
    /// A broadcast-with-ack collected by `origin` (a shard, or the bridge for a broadcast from
    /// another machine); forgotten after `expires`.
    Broadcast {
        origin: Origin,
        expires: tokio::time::Instant,
    },
}

/// How long a socket remembers that it owes an answer to a broadcast-with-ack: the origin
/// stops listening at its own timeout, this only bounds the socket's memory.
const BROADCAST_ACK_MEMORY: Duration = Duration::from_secs(120);

impl Socket {
    /// A socket `id` of `ns` on `session`; `pid` and `recovered` when recovery is on.
    pub(super) fn new(
        (id, pid): (Sid, Option<Sid>),
        ns: Rc<NsShard>,
        session: Rc<Session>,
        auth: Value,
        recovered: bool,
    ) -> Socket {
        Socket(Rc::new(SocketInner {
            id,
            ns,
            session,
            auth,
            connected: Cell::new(true),
            acks: RefCell::new(HashMap::new()),
            data: RefCell::new(json!({})),
            extensions: Extensions::default(),
            pid,
            recovered,
        }))
    }

    /// Whether the client came back within `--recovery-window` and got this socket's id,
    /// rooms and data back, with the packets it missed (socket.io's `socket.recovered`).
    pub fn recovered(&self) -> bool {
        self.0.recovered
    }

    /// The recovery session id given to the client, when recovery is on.
    pub(super) fn pid(&self) -> Option<Sid> {
        self.0.pid
    }

    /// The socket id (20 characters, distinct from the Engine.IO session id).
    pub fn id(&self) -> Sid {
        self.0.id
    }

    /// The namespace name, e.g. `/`.
    pub fn nsp(&self) -> &str {
        &self.0.ns.name
    }

    /// The CONNECT auth payload (`{}` when the client sent none).
    pub fn auth(&self) -> &Value {
        &self.0.auth
    }

    /// The HTTP request that opened the connection.
    pub fn request(&self) -> &RequestInfo {
        self.0.session.request()
    }

    /// The Engine.IO session id of the connection.
    pub fn session_id(&self) -> Sid {
        self.0.session.sid()
    }

    /// Whether the socket is still in its namespace.
    pub fn connected(&self) -> bool {
        self.0.connected.get()
    }

    /// Sends `event` with `data` to this client.
    pub fn emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        self.send_event(event, None, &data.into())
    }

    /// Sends `event` and waits up to `timeout` for the client's acknowledgement.
    pub fn emit_with_ack(
        &self,
        event: &str,
        data: impl Into<Payload>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Payload, AckError>> + 'static {
        let id = self.0.ns.next_ack_id();
        let (tx, rx) = oneshot::channel();
        self.0.acks.borrow_mut().insert(id, AckWaiter::Emit(tx));
        // Dropping the future (or its end) forgets the pending ack.
        let guard = PendingAck {
            socket: self.clone(),
            id,
        };
        let sent = self.send_event(event, Some(id), &data.into());
        async move {
            let _guard = guard;
            sent?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(payload)) => Ok(payload),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => Err(AckError::Timeout),
            }
        }
    }

    /// Removes the socket from its namespace: the client gets DISCONNECT for it, and the
    /// connection stays open for its other namespaces.
    pub fn disconnect(&self) {
        if !self.connected() {
            return;
        }
        let _ = self
            .0
            .session
            .send(&[control_frame(PacketType::Disconnect, self.nsp(), None)]);
        self.left(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the whole connection (every namespace of this client).
    pub fn close(&self) {
        self.0.session.close(CloseReason::ForcedClose);
    }

    fn send_event(&self, event: &str, ack: Option<u64>, data: &Payload) -> Result<(), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::ReservedEvent);
        }
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        if ack.is_none() {
            // With recovery on, Node sends a socket's own events as a broadcast to its room:
            // they carry an offset and are kept for the client.
            let to_me = || BroadcastOpts {
                rooms: vec![self.id().as_str().to_owned()],
                ..BroadcastOpts::default()
            };
            if self.0.ns.through_stream(&BroadcastOpts::default()) {
                self.0.ns.send_through_stream(event, data.clone(), to_me());
                return Ok(());
            }
            if let Some(packet) = self.0.ns.recoverable(event, data, to_me) {
                let sent = self.0.session.send(&packet.frames);
                self.0.ns.log_packet(&packet);
                return Ok(sent?);
            }
        }
        let frames = event_frames(self.nsp(), event, ack, data);
        Ok(self.0.session.send(&frames)?)
    }

    pub(super) fn on_event(&self, data: Option<Value>, bins: Vec<Bytes>, id: Option<u64>) {
        let Some(Value::Array(mut args)) = data else {
            return;
        };
        // The decoder guarantees a first element that is a string or a number.
        let name = match args.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let payload = Payload { args, bins };
        let ack = id.map(|id| AckSender {
            socket: self.clone(),
            id,
        });
        let def = &self.0.ns.def;
        if let Some(handler) = def.events.get(&name) {
            handler(self, payload, ack);
        } else if let Some(any) = &def.on_any {
            any(self, &name, payload, ack);
        }
    }

    pub(super) fn on_ack(&self, id: Option<u64>, data: Option<Value>, bins: Vec<Bytes>) {
        let Some(id) = id else {
            return;
        };
        let args = match data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        let payload = Payload { args, bins };
        let waiter = self.0.acks.borrow_mut().remove(&id);
        match waiter {
            Some(AckWaiter::Emit(tx)) => {
                let _ = tx.send(payload);
            }
            Some(AckWaiter::Broadcast { origin, .. }) => {
                self.0.ns.route_broadcast_ack(id, origin, payload);
            }
            None => {}
        }
    }

    /// Remembers that this socket owes `origin` an answer to broadcast `id`.
    pub(super) fn expect_broadcast_ack(&self, id: u64, origin: Origin) {
        let now = tokio::time::Instant::now();
        let mut acks = self.0.acks.borrow_mut();
        if acks.len() >= 16 {
            // Clients that never answer must not grow this map forever.
            acks.retain(
                |_, w| !matches!(w, AckWaiter::Broadcast { expires, .. } if *expires <= now),
            );
        }
        acks.insert(
            id,
            AckWaiter::Broadcast {
                origin,
                expires: now + BROADCAST_ACK_MEMORY,
            },
        );
    }

    /// Joins `room`; returns false if the socket was already in it.
    pub fn join(&self, room: &str) -> bool {
        self.connected() && self.0.ns.join_room(self.0.id, &self.0.session, room)
    }

    /// Leaves `room`; returns false if the socket was not in it.
    pub fn leave(&self, room: &str) -> bool {
        self.0.ns.leave_room(self.0.id, room)
    }

    /// Completes once other machines' broadcasts to the rooms this socket has joined so far
    /// reach it. With `--redis-subscribe rooms` a join is local at once, but a machine receives
    /// a room's broadcasts from Redis only once Redis has confirmed its subscription to the
    /// room's channel: this waits for that (usually one Redis round trip). At once without a
    /// Redis bridge, or with the pattern subscription (it receives every room all the time),
    /// or while Redis is away (the next connection subscribes every room before it receives
    /// anything). Bound the wait: a confirmation lost to a full shard inbox never comes.
    pub fn rooms_subscribed(&self) -> impl std::future::Future<Output = ()> + 'static {
        self.0.ns.rooms_subscribed()
    }

    /// The rooms this socket is in (its own id included).
    pub fn rooms(&self) -> Vec<String> {
        let rooms = self.0.ns.rooms.borrow();
        rooms
            .rooms_of(self.0.id)
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    /// How many rooms this socket is in (its own id included).
    pub fn room_count(&self) -> usize {
        self.0.ns.rooms.borrow().rooms_of(self.0.id).len()
    }

    /// The application's data for this socket (Node's `socket.data`, `{}` at first): what
    /// cluster-wide queries (`fetch_sockets`) show of it, here and on other servers.
    pub fn data(&self) -> Value {
        self.0.data.borrow().clone()
    }

    /// Replaces the socket's data.
    pub fn set_data(&self, data: Value) {
        *self.0.data.borrow_mut() = data;
    }

    /// Typed values the application keeps on the socket (not shown to other servers).
    pub fn extensions(&self) -> &Extensions {
        &self.0.extensions
    }

    /// Refuses the socket after it connected: the client gets CONNECT_ERROR with `err` (its
    /// `connect_error` event; socket.io-client then gives the socket up), and the socket leaves
    /// the namespace (the disconnect handler sees a server namespace disconnect).
    pub fn disconnect_with(&self, err: &ConnectError) {
        if !self.connected() {
            return;
        }
        let frame = control_frame(PacketType::ConnectError, self.nsp(), Some(&err.to_json()));
        let _ = self.0.session.send(&[frame]);
        self.left(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// This socket as `fetch_sockets` describes it.
    pub(super) fn describe(&self) -> SocketInfo {
        SocketInfo {
            id: self.id().as_str().to_owned(),
            handshake: self.handshake(),
            rooms: self.rooms(),
            data: self.data(),
            location: Some(SocketLocation {
                machine: self.0.ns.node.to_string(),
                shard: self.0.ns.shard(),
            }),
        }
    }

    /// Node's handshake object (docs/PROTOCOL.md §2.4), keys in Node's order.
    pub fn handshake(&self) -> Value {
        let request = self.request();
        let issued = request
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let headers: Map<String, Value> = request
            .headers()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        let query: Map<String, Value> = request
            .query()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), Value::from(percent_decode(v)))
            })
            .collect();
        json!({
            "headers": headers,
            "time": js_date_string(issued),
            "address": request.address.ip().to_string(),
            "xdomain": request.header("origin").is_some(),
            "secure": false,
            "issued": issued,
            "url": request.url(),
            "query": query,
            "auth": self.auth(),
        })
    }

    /// A handle that does not keep the socket (and its connection) alive.
    pub fn downgrade(&self) -> WeakSocket {
        WeakSocket(Rc::downgrade(&self.0))
    }

    /// The namespace state the socket belongs to.
    pub(super) fn ns(&self) -> &Rc<NsShard> {
        &self.0.ns
    }

    /// The server's counters.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        self.0.ns.link.metrics()
    }

    pub(super) fn session(&self) -> &Rc<Session> {
        &self.0.session
    }

    /// Leaves the namespace: unregisters, fails pending acks, runs the disconnect handler.
    pub(super) fn left(&self, reason: DisconnectReason) {
        if !self.0.connected.replace(false) {
            return;
        }
        self.0.ns.sockets.borrow_mut().remove(&self.0.id);
        if let Some(pid) = self.pid() {
            let start = self.0.ns.untrack_pid(pid);
            if reason.keeps_session() {
                let ns = &self.0.ns;
                ns.keep_session((pid, self.id()), self.rooms(), self.data(), start);
            }
        }
        self.0.ns.leave_all_rooms(self.0.id);
        self.0.acks.borrow_mut().clear();
        if let Some(handler) = &self.0.ns.def.on_disconnect {
            handler(self, reason);
        }
    }
}

struct PendingAck {
    socket: Socket,
    id: u64,
}

impl Drop for PendingAck {
    fn drop(&mut self) {
        self.socket.0.acks.borrow_mut().remove(&self.id);
    }
}

/// Answers one acknowledgement the client asked for. Consumed by `send`, so an ack is answered
/// at most once.
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    /// Sends the answer.
    pub fn send(self, data: impl Into<Payload>) -> Result<(), EmitError> {
        if !self.socket.connected() {
            return Err(EmitError::Disconnected);
        }
        let frames = ack_frames(self.socket.nsp(), self.id, &data.into());
        Ok(self.socket.0.session.send(&frames)?)
    }
}
