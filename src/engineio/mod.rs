//! Engine.IO v4 sessions (SOCKETIO.md §1): the handshake, the session table of one shard,
//! the per-session outbound queue and the transports. Usable on its own, without Socket.IO:
//! an [`EngineApp`] receives raw Engine.IO messages.
//!
//! Structure: a [`Session`] is state only (queue, close flag, transport state). One driver
//! task per session (`driver.rs`) owns its heartbeat and its lifetime: it runs the WebSocket
//! loop itself, or, for a polling session, waits while HTTP requests (`polling.rs`) served by
//! the connections' own tasks move packets in and out, until an upgrade hands it a WebSocket.
//! A request for a session another shard owns is handed to that shard over the bus.

mod driver;
mod flusher;
pub mod frame;
mod polling;
mod queue;
pub mod sid;
mod websocket;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::bus::{Bus, BusMsg, Handoff, Refused};
use crate::metrics::{Metrics, ShardMetrics};
use crate::protocol::cors::CorsPolicy;
use crate::protocol::engineio::{HandshakeError, Packet, PacketType};
use crate::protocol::http::{self, BodyFraming, RequestHead};

use flusher::Flusher;
pub use frame::{FrameKind, OutFrame};
use queue::OutQueue;
pub use sid::{Sid, SidGenerator};

/// Engine.IO settings of one endpoint. Defaults are Node's (§1.2).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the server pings (ms on the wire). Default 25 s.
    pub ping_interval: Duration,
    /// How long a pong may take before the session closes. Default 20 s.
    pub ping_timeout: Duration,
    /// The largest message a client may send, in bytes (advertised as `maxPayload`). Default 1 MB.
    pub max_payload: usize,
    /// Outbound bytes queued for one session before it is disconnected as a slow consumer.
    /// Default 1 MiB.
    pub max_buffered_bytes: usize,
    /// How long a WebSocket upgrading a polling session may take to send the upgrade packet
    /// before that candidate WebSocket (only) is closed. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Cross-origin policy of the endpoint's responses. Default none (off, as in Node).
    pub cors: Option<CorsPolicy>,
    /// Name of a cookie set to the sid on the handshake response, for load balancers that stick
    /// by cookie. Default none.
    pub cookie: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_buffered_bytes: 1 << 20,
            upgrade_timeout: Duration::from_millis(10_000),
            cors: None,
            cookie: None,
        }
    }
}

/// Why a session closed. Socket.IO maps these to its disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection (TCP close, WebSocket close, or a `1` packet).
    TransportClose,
    /// The transport broke: a read or write failed, the client broke the WebSocket protocol,
    /// or it misused polling (overlapping requests, an aborted long poll, binary content).
    TransportError,
    /// No pong within `ping_timeout`.
    PingTimeout,
    /// The client sent something that does not decode.
    ParseError,
    /// The client sent a message over `max_payload`.
    MessageTooBig,
    /// The outbound queue passed `max_buffered_bytes`.
    SlowConsumer,
    /// The server closed the session (an app decision).
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// The reason string Node's engine.io and socket.io use.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError | CloseReason::MessageTooBig => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }

    /// The WebSocket close code sent for this reason, if a close frame can be sent at all.
    fn ws_close_code(self) -> Option<u16> {
        match self {
            CloseReason::ServerShutdown => Some(1001),
            CloseReason::MessageTooBig => Some(1009),
            CloseReason::TransportError => Some(1002),
            CloseReason::ParseError | CloseReason::PingTimeout | CloseReason::ForcedClose => {
                Some(1000)
            }
            CloseReason::TransportClose | CloseReason::SlowConsumer => None,
        }
    }

    /// Whether the packets already queued are still delivered before the close: when the
    /// server chose to close, as Node drains its write buffer first; not when the transport
    /// failed or the client left.
    fn flushes_queue(self) -> bool {
        matches!(self, CloseReason::ForcedClose | CloseReason::ServerShutdown)
    }
}

/// A message received on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// The application on top of Engine.IO, one instance per shard.
pub trait EngineApp {
    /// A session was opened; returns the handler of its messages.
    fn open(&self, session: &Rc<Session>) -> Rc<dyn Connection>;

    /// A message another shard's instance of this app sent over the bus.
    fn on_bus(&self, origin: usize, msg: Box<dyn Any + Send>) {
        let _ = (origin, msg);
    }

    /// A message the Redis bridge sent to this app.
    fn on_bridge(&self, msg: Box<dyn Any + Send>) {
        let _ = msg;
    }
}

/// Receives the messages of one session. Methods take `&self`: the handler may be re-entered
/// from its own callbacks' effects, so keep interior state in short `RefCell` borrows.
pub trait Connection {
    fn on_message(&self, session: &Rc<Session>, message: Message<'_>);
    fn on_close(&self, session: &Rc<Session>, reason: CloseReason);
}

/// Builds the per-shard app; shared by all shard threads.
pub trait EngineAppFactory: Send + Sync + 'static {
    fn for_shard(&self, ctx: &ShardContext) -> Rc<dyn EngineApp>;

    /// The Socket.IO namespaces this app shares with other machines through the Redis bridge;
    /// empty for apps that take no part (raw Engine.IO apps).
    fn cluster_namespaces(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What an app instance knows of its shard: the shard's sessions and ids, the bus to the other
/// shards, and which endpoint it serves (bus messages are addressed by endpoint).
#[derive(Clone)]
pub struct ShardContext {
    pub engine: Rc<EngineShard>,
    pub bus: Bus,
    pub endpoint: usize,
    /// Whether this endpoint is the one the Redis bridge serves.
    pub bridge: bool,
}

impl ShardContext {
    /// Hands a connection to shard `to`, which owns the session it asks for. A refusal (the
    /// inbox is full, or the shard is stopping) hands the message, and so the connection, back.
    pub fn hand_off(&self, to: usize, handoff: Handoff) -> Result<(), Refused> {
        self.bus
            .send(self.engine.id, to, BusMsg::Handoff(Box::new(handoff)))?;
        self.engine.metrics().handoff_sent();
        Ok(())
    }

    /// Sends an app message to this endpoint's app on shard `to`.
    pub fn send_app(&self, to: usize, msg: Box<dyn Any + Send>) -> Result<(), Refused> {
        let msg = BusMsg::App {
            origin: self.engine.id,
            endpoint: self.endpoint,
            msg,
        };
        self.bus.send(self.engine.id, to, msg)
    }

    /// Whether this endpoint's app is connected to the Redis bridge.
    pub fn has_bridge(&self) -> bool {
        self.bridge && self.bus.has_bridge()
    }

    /// Queues an app message for the Redis bridge; false when it was not queued (no bridge, or
    /// its queue is full: counted and logged).
    pub fn send_bridge(&self, msg: Box<dyn Any + Send>) -> bool {
        self.has_bridge() && self.bus.to_bridge(self.engine.id, self.endpoint, msg)
    }
}

/// What the session remembers of the request that opened it (Socket.IO's handshake object).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub address: SocketAddr,
    pub time: SystemTime,
    /// The request target, then one `name:value` line per header, in ONE allocation: every
    /// session keeps this for its whole life, so it must be small.
    raw: Box<str>,
    url_len: usize,
}

impl RequestInfo {
    pub fn new(
        address: SocketAddr,
        url: &str,
        headers: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    ) -> Self {
        let mut raw = String::from(url);
        for (name, value) in headers {
            raw.push('\n');
            raw.push_str(name.as_ref());
            raw.push(':');
            raw.push_str(value.as_ref());
        }
        RequestInfo {
            address,
            time: SystemTime::now(),
            raw: raw.into_boxed_str(),
            url_len: url.len(),
        }
    }

    /// Path and query, as requested.
    pub fn url(&self) -> &str {
        &self.raw[..self.url_len]
    }

    /// The query string, without `?`.
    pub fn query(&self) -> &str {
        self.url().split_once('?').map_or("", |(_, q)| q)
    }

    /// The request headers, names in lower case, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw[self.url_len..]
            .split('\n')
            .skip(1)
            .filter_map(|line| line.split_once(':'))
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Why a packet could not be queued.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is closing or closed; nothing more is sent.
    #[error("session closed")]
    Closed,
    /// The queue passed `max_buffered_bytes`; the session is being disconnected.
    #[error("slow consumer")]
    SlowConsumer,
}

/// Which transport carries a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    /// Polling, while a candidate WebSocket probes (§1.7).
    Upgrading,
    WebSocket,
}

impl Transport {
    /// The `transport` query value of requests this session accepts (without an upgrade).
    fn name(self) -> &'static str {
        match self {
            Transport::Polling | Transport::Upgrading => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// What the polling requests of a session are doing.
#[derive(Default)]
struct PollState {
    /// A long-poll GET is waiting for packets.
    get_pending: Cell<bool>,
    /// A POST is reading its body.
    post_pending: Cell<bool>,
    /// An upgrade probe asks the pending GET to return a noop so the client can pause polling.
    noop_due: Cell<bool>,
    /// A GET carried the close packet of a closing session to the client.
    close_delivered: Cell<bool>,
}

/// One Engine.IO session, owned by the shard that opened it.
///
/// `repr(C)` keeps the fields in this order: a broadcast touches only the first group (the
/// queue and the flags beside it) of each of thousands of sessions, so they share the cache
/// lines right after the `Rc` counts instead of being spread over the whole struct.
#[repr(C)]
pub struct Session {
    out: RefCell<OutQueue>,
    closing: Cell<Option<CloseReason>>,
    /// Listed in the flusher, not written yet.
    dirty: Cell<bool>,
    /// The socket while the WebSocket loop runs, so the shard's flusher can write to it.
    ws: RefCell<Option<Rc<TcpStream>>>,
    me: Weak<Session>,
    flusher: Rc<Flusher>,
    // The rest is touched per request or per heartbeat, not per message.
    sid: Sid,
    /// The endpoint (path) that opened it: its requests must come to the same one.
    endpoint: usize,
    request: RequestInfo,
    /// Wakes whoever delivers the queue (the WebSocket loop, or the pending GET) when the queue
    /// goes from empty to non-empty, on close, and for an upgrade noop.
    wake: Notify,
    conn: RefCell<Option<Rc<dyn Connection>>>,
    transport: Cell<Transport>,
    /// A pong arrived since the driver last looked.
    pong: Cell<bool>,
    /// The session is dead after this instant unless a pong arrives first: the next (or the
    /// outstanding) ping's time plus `ping_timeout`. Kept by the heartbeat.
    alive_until: Cell<tokio::time::Instant>,
    /// When the session opened: the heartbeat counts from here, as Node's does, not from
    /// whenever its driver task first runs.
    opened_at: tokio::time::Instant,
    /// Wakes the driver of a polling session: a pong, a close, a finished upgrade, a delivered
    /// close packet.
    events: Notify,
    poll: PollState,
    /// The WebSocket of a finished upgrade, until the driver takes it over.
    upgraded: RefCell<Option<Box<websocket::WsTransport>>>,
}

impl Session {
    fn new(
        sid: Sid,
        endpoint: usize,
        request: RequestInfo,
        max_buffered_bytes: usize,
        transport: Transport,
        first_ping_window: Duration,
        (me, flusher): (Weak<Session>, Rc<Flusher>),
    ) -> Self {
        let opened_at = tokio::time::Instant::now();
        Session {
            sid,
            endpoint,
            request,
            out: RefCell::new(OutQueue::new(max_buffered_bytes)),
            wake: Notify::new(),
            closing: Cell::new(None),
            conn: RefCell::new(None),
            transport: Cell::new(transport),
            pong: Cell::new(false),
            alive_until: Cell::new(opened_at + first_ping_window),
            opened_at,
            events: Notify::new(),
            poll: PollState::default(),
            upgraded: RefCell::new(None),
            me,
            ws: RefCell::new(None),
            dirty: Cell::new(false),
            flusher,
        }
    }

    pub fn sid(&self) -> Sid {
        self.sid
    }

    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// Bytes queued and not written yet (0 once closed). It reads what a send reads, so a
    /// broadcast calls it on a batch of sessions to bring them into the cache together.
    pub fn queued_bytes(&self) -> usize {
        if self.is_open() {
            self.out.borrow().bytes()
        } else {
            0
        }
    }

    /// Whether the session is still open for sending.
    pub fn is_open(&self) -> bool {
        self.closing.get().is_none()
    }

    /// Queues frames to be sent together (a text packet and its attachments). A session whose
    /// queue passes its byte limit is closed as a slow consumer.
    pub fn send(&self, frames: &[OutFrame]) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        let was_empty = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            if !out.push_all(frames) {
                drop(out);
                self.close(CloseReason::SlowConsumer);
                return Err(SendError::SlowConsumer);
            }
            was_empty
        };
        if was_empty {
            self.wake_writer();
        }
        Ok(())
    }

    /// Queues frames unless the queue would pass its limit, in which case they are dropped
    /// (Socket.IO's volatile flag). Returns whether they were queued.
    pub fn send_volatile(&self, frames: &[OutFrame]) -> bool {
        if !self.is_open() {
            return false;
        }
        let mut out = self.out.borrow_mut();
        let was_empty = out.is_empty();
        if !out.push_all(frames) {
            return false;
        }
        drop(out);
        if was_empty {
            self.wake_writer();
        }
        true
    }

    /// Something was queued on an empty queue: a WebSocket session is listed for the shard's
    /// flusher; a polling session wakes its pending GET.
    fn wake_writer(&self) {
        if self.ws.borrow().is_none() {
            self.wake.notify_one();
        } else if !self.dirty.replace(true) {
            if let Some(me) = self.me.upgrade() {
                self.flusher.push(me);
            }
        }
    }

    /// Called by the flusher: writes what the socket takes now; a full socket is left to the
    /// session's own task, which waits for it to drain.
    fn flush_now(&self) {
        self.dirty.set(false);
        let stream = self.ws.borrow().clone();
        if let Some(stream) = stream {
            match websocket::flush(&stream, self) {
                Ok(true) => {}
                Ok(false) => self.wake.notify_one(),
                Err(_) => self.close(CloseReason::TransportError),
            }
        }
    }

    /// Asks the transport to close the session. Idempotent; the first reason wins. The
    /// connection's `on_close` runs later, from the transport, never from inside this call.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.get().is_none() {
            self.closing.set(Some(reason));
            self.wake.notify_one();
            self.events.notify_one();
        }
    }

    /// Whether a new request may still find this session. A session closing for a reason that
    /// leaves nothing to deliver is gone at once, as Node drops it from its table; so is one
    /// whose pong is overdue even if its driver has not run yet, so that what a client sees
    /// does not depend on the order in which the shard runs its tasks.
    fn takes_requests(&self) -> bool {
        // A pong the driver has not seen yet may have saved it: the driver decides then.
        if !self.pong.get() && tokio::time::Instant::now() >= self.alive_until.get() {
            self.close(CloseReason::PingTimeout);
        }
        self.closing.get().is_none_or(CloseReason::flushes_queue)
    }

    /// Whether the session is carried by a WebSocket now (it started on one, or upgraded).
    pub fn is_websocket(&self) -> bool {
        self.transport.get() == Transport::WebSocket
    }

    fn connection(&self) -> Option<Rc<dyn Connection>> {
        self.conn.borrow().clone()
    }

    /// Hands a received message to the connection handler.
    fn dispatch(self: &Rc<Self>, message: Message<'_>) {
        if let Some(conn) = self.connection() {
            conn.on_message(self, message);
        }
    }

    /// Acts on one packet from the client, whichever transport brought it. An error is the
    /// reason the session must close.
    fn receive(self: &Rc<Self>, packet: Packet<'_>) -> Result<(), CloseReason> {
        match packet {
            Packet::Text(PacketType::Message, data) => self.dispatch(Message::Text(data)),
            Packet::Binary(data) => self.dispatch(Message::Binary(data)),
            Packet::Text(PacketType::Pong, _) => {
                self.pong.set(true);
                self.events.notify_one();
            }
            // v4: only the server pings ("invalid heartbeat direction").
            Packet::Text(PacketType::Ping, _) => return Err(CloseReason::ParseError),
            Packet::Text(PacketType::Close, _) => return Err(CloseReason::TransportClose),
            // Open, upgrade (outside a probe) and noop mean nothing from a client.
            Packet::Text(_, _) => {}
        }
        Ok(())
    }

    /// Whether a pong arrived since the last call.
    fn take_pong(&self) -> bool {
        self.pong.replace(false)
    }
}

/// The Engine.IO state of one shard: its sessions and its id generator.
pub struct EngineShard {
    /// This shard's index, `0..count`; also the shard byte of the ids it issues.
    pub id: usize,
    /// How many shards the server runs.
    pub count: usize,
    sessions: RefCell<HashMap<Sid, Rc<Session>>>,
    sids: RefCell<SidGenerator>,
    all_metrics: Arc<Metrics>,
    /// Signalled when the last session goes away.
    drained: Notify,
    flusher: Rc<Flusher>,
}

impl EngineShard {
    pub fn new(id: usize, count: usize, metrics: Arc<Metrics>) -> Self {
        EngineShard {
            id,
            count,
            sessions: RefCell::new(HashMap::new()),
            sids: RefCell::new(SidGenerator::new(id)),
            all_metrics: metrics,
            drained: Notify::new(),
            flusher: Rc::default(),
        }
    }

    /// The shard's WebSocket writer; the shard runs it for its whole life.
    pub fn run_flusher(&self) -> impl std::future::Future<Output = ()> + 'static {
        self.flusher.clone().run()
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.all_metrics.shards()[self.id]
    }

    /// A fresh id owned by this shard (sessions and Socket.IO sockets use the same kind).
    pub fn next_sid(&self) -> Sid {
        self.sids.borrow_mut().next_sid()
    }

    pub fn session(&self, sid: &Sid) -> Option<Rc<Session>> {
        self.sessions.borrow().get(sid).cloned()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Asks every session to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        let sessions: Vec<_> = self.sessions.borrow().values().cloned().collect();
        for s in sessions {
            s.close(reason);
        }
    }

    /// Waits until no session is left.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.sessions.borrow().is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn insert(&self, session: Rc<Session>) {
        self.sessions.borrow_mut().insert(session.sid, session);
        self.metrics().session_opened();
    }

    /// Removes a closed session, runs its connection's `on_close` and breaks the
    /// session <-> connection cycle.
    fn finish(&self, session: &Rc<Session>) {
        let reason = session.closing.get().unwrap_or(CloseReason::TransportClose);
        session.closing.set(Some(reason));
        tracing::debug!(
            sid = %session.sid,
            reason = reason.as_str(),
            transport = session.transport.get().name(),
            "session closed"
        );
        if reason == CloseReason::SlowConsumer {
            self.metrics().slow_consumer();
        }
        if let Some(conn) = session.conn.borrow_mut().take() {
            conn.on_close(session, reason);
        }
        session.out.borrow_mut().clear();
        session.upgraded.borrow_mut().take();
        let mut sessions = self.sessions.borrow_mut();
        if sessions.remove(&session.sid).is_some() {
            self.metrics().session_closed();
        }
        if sessions.is_empty() {
            self.drained.notify_waiters();
        }
    }
}

/// One Engine.IO endpoint (a path) on one shard.
pub struct Engine {
    pub config: EngineConfig,
    pub app: Rc<dyn EngineApp>,
    pub ctx: ShardContext,
}

/// What became of a connection after `Engine::handle`.
pub enum Handled {
    /// The response was written; the connection may carry another request, which starts with
    /// these bytes already read.
    KeepAlive(TcpStream, Vec<u8>),
    /// The connection was taken over (WebSocket, another shard) or closed.
    Done,
}

/// How long writing one HTTP response may take before the connection is dropped: a client
/// that does not read must not hold a task forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    Polling,
    WebSocket,
}

impl Engine {
    /// Serves one Engine.IO request whose head has been read (`leftover`: bytes read past it).
    /// Follows the order of checks of Node's `verify()` and `handshake()` (§1.5); a request
    /// for a session another shard owns goes to that shard first, which then checks it.
    pub async fn handle(
        self: &Rc<Self>,
        stream: TcpStream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
    ) -> Handled {
        let upgrade = head.is_websocket_upgrade();
        if !upgrade && head.method == "OPTIONS" {
            if let Some(cors) = &self.config.cors {
                // The cors middleware answers every OPTIONS itself, before Engine.IO looks.
                let headers = cors.preflight_headers(
                    head.header("origin"),
                    head.header("access-control-request-headers"),
                );
                let reply = Reply::new(204, b"").headers(headers).cors_included();
                return self.reply(stream, &head, leftover, reply).await;
            }
        }
        let requested = match head.query_param("transport").as_deref() {
            Some("polling") => Requested::Polling,
            Some("websocket") => Requested::WebSocket,
            _ => {
                return self
                    .refuse(stream, &head, leftover, HandshakeError::UnknownTransport)
                    .await
            }
        };
        let Some(sid) = head.query_param("sid") else {
            return self
                .handshake(stream, head, leftover, address, requested)
                .await;
        };
        let sid = Sid::parse(&sid);
        let engine = &self.ctx.engine;
        if let Some(owner) = sid
            .map(|s| s.shard())
            .filter(|&s| s != engine.id && s < engine.count)
        {
            return self.hand_off(owner, stream, head, leftover, address).await;
        }
        let session = sid
            .and_then(|sid| engine.session(&sid))
            .filter(|s| s.endpoint == self.ctx.endpoint && s.takes_requests());
        let Some(session) = session else {
            return self
                .refuse(stream, &head, leftover, HandshakeError::UnknownSid)
                .await;
        };
        if upgrade {
            // One upgrade per session: a second WebSocket (during or after the upgrade) is
            // refused (`client.upgrading || client.upgraded`).
            if requested != Requested::WebSocket || session.transport.get() != Transport::Polling {
                return self
                    .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                    .await;
            }
            let Some(key) = websocket_key(&head) else {
                return self
                    .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                    .await;
            };
            websocket::upgrade(self, stream, &key, session, leftover).await;
            return Handled::Done;
        }
        if requested != Requested::Polling || session.is_websocket() {
            // TRANSPORT_MISMATCH: e.g. polling on a session that upgraded to WebSocket.
            return self
                .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                .await;
        }
        polling::serve(self, session, stream, head, leftover).await
    }

    /// A request without a sid: a new session, if `handshake()` agrees.
    async fn handshake(
        self: &Rc<Self>,
        stream: TcpStream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
        requested: Requested,
    ) -> Handled {
        let upgrade = head.is_websocket_upgrade();
        let refused = if head.method != "GET" {
            Some(HandshakeError::BadHandshakeMethod)
        } else if requested == Requested::WebSocket && !upgrade {
            Some(HandshakeError::BadRequest)
        } else if head.query_param("EIO").as_deref() != Some("4") {
            Some(HandshakeError::UnsupportedProtocolVersion)
        } else if requested == Requested::Polling && upgrade {
            Some(HandshakeError::BadRequest)
        } else {
            None
        };
        if let Some(err) = refused {
            return self.refuse(stream, &head, leftover, err).await;
        }
        if requested == Requested::Polling {
            return polling::handshake(self, stream, head, leftover, address).await;
        }
        let Some(key) = websocket_key(&head) else {
            return self
                .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                .await;
        };
        websocket::open(self, stream, &key, request_info(head, address), leftover).await;
        Handled::Done
    }

    /// Sends the connection to the shard that owns the session, with what was read of it.
    async fn hand_off(
        &self,
        owner: usize,
        stream: TcpStream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
    ) -> Handled {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "could not detach a connection to hand it over");
                return Handled::Done;
            }
        };
        let handoff = Handoff {
            endpoint: self.ctx.endpoint,
            stream,
            head,
            leftover,
            address,
        };
        let Err(Refused(BusMsg::Handoff(handoff))) = self.ctx.hand_off(owner, handoff) else {
            return Handled::Done;
        };
        // The owner cannot take it now (inbox full, or stopping): the client may retry.
        let Handoff { stream, head, .. } = *handoff;
        let Ok(stream) = TcpStream::from_std(stream) else {
            return Handled::Done;
        };
        if head.is_websocket_upgrade() {
            abort_upgrade(stream, 503, http::reason(503)).await;
            return Handled::Done;
        }
        let reply = Reply::new(503, b"").closing();
        self.reply(stream, &head, Vec::new(), reply).await
    }

    /// Answers a request Engine.IO refuses: JSON `{"code","message"}` for plain HTTP (§1.5),
    /// the raw `abortUpgrade` response for WebSocket upgrades.
    async fn refuse(
        &self,
        stream: TcpStream,
        head: &RequestHead,
        leftover: Vec<u8>,
        err: HandshakeError,
    ) -> Handled {
        tracing::debug!(
            method = %head.method,
            query = %head.query,
            error = err.message(),
            "request refused"
        );
        if head.is_websocket_upgrade() {
            abort_upgrade(stream, 400, err.message()).await;
            return Handled::Done;
        }
        let body = err.json_body();
        let reply = Reply::new(err.status(), body.as_bytes()).content_type("application/json");
        self.reply(stream, head, leftover, reply).await
    }

    /// Writes an HTTP response with the endpoint's CORS headers. The connection is kept for
    /// another request when the client wants it and the request's body is not left unread.
    async fn reply(
        &self,
        mut stream: TcpStream,
        head: &RequestHead,
        rest: Vec<u8>,
        reply: Reply<'_>,
    ) -> Handled {
        let body_unread =
            reply.body_unread && !matches!(head.body_framing(), Ok(BodyFraming::None));
        let keep = head.keep_alive() && !reply.close && !body_unread;
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
        if let Some(content_type) = reply.content_type {
            headers.push(("Content-Type", content_type));
        }
        headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let cors = match &self.config.cors {
            Some(cors) if !reply.cors_included => cors.response_headers(head.header("origin")),
            _ => Vec::new(),
        };
        headers.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
        if !keep {
            headers.push(("Connection", "close"));
        } else if head.http10 {
            headers.push(("Connection", "keep-alive"));
        }
        let bytes = http::response(reply.status, &headers, reply.body);
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await {
            Ok(Ok(())) if keep => Handled::KeepAlive(stream, rest),
            Ok(Ok(())) => {
                let _ = stream.shutdown().await;
                Handled::Done
            }
            _ => Handled::Done,
        }
    }

    /// Registers a new session and lets the app attach its handler.
    fn open_session(self: &Rc<Self>, request: RequestInfo, transport: Transport) -> Rc<Session> {
        let session = Rc::new_cyclic(|me| {
            Session::new(
                self.ctx.engine.next_sid(),
                self.ctx.endpoint,
                request,
                self.config.max_buffered_bytes,
                transport,
                self.config.ping_interval + self.config.ping_timeout,
                (me.clone(), self.ctx.engine.flusher.clone()),
            )
        });
        self.ctx.engine.insert(session.clone());
        session
    }

    fn attach(&self, session: &Rc<Session>) {
        let conn = self.app.open(session);
        *session.conn.borrow_mut() = Some(conn);
    }

    /// The open packet of a new session (§1.2): polling advertises the WebSocket upgrade.
    fn open_packet(&self, session: &Session) -> OutFrame {
        let upgrades: &[&str] = match session.transport.get() {
            Transport::WebSocket => &[],
            Transport::Polling | Transport::Upgrading => &["websocket"],
        };
        let cfg = &self.config;
        let open = crate::protocol::engineio::open_packet(
            session.sid().as_str(),
            upgrades,
            cfg.ping_interval.as_millis() as u64,
            cfg.ping_timeout.as_millis() as u64,
            cfg.max_payload as u64,
        );
        OutFrame::text(open.len(), |b| b.extend_from_slice(open.as_bytes()))
    }

    /// The `Set-Cookie` value of a handshake response, when `cookie` is configured.
    fn cookie(&self, session: &Session) -> Option<String> {
        let name = self.config.cookie.as_deref()?;
        Some(format!(
            "{name}={}; Path=/; HttpOnly; SameSite=Lax",
            session.sid()
        ))
    }
}

/// An HTTP response of the Engine.IO endpoint, before the CORS and connection headers.
struct Reply<'a> {
    status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: &'a [u8],
    /// The request's body (if it has one) was not read: the connection cannot be reused.
    body_unread: bool,
    /// Close the connection after this response whatever the client asked.
    close: bool,
    /// `headers` already hold the CORS headers (a preflight answer).
    cors_included: bool,
}

impl<'a> Reply<'a> {
    fn new(status: u16, body: &'a [u8]) -> Self {
        Reply {
            status,
            content_type: None,
            headers: Vec::new(),
            body,
            body_unread: true,
            close: false,
            cors_included: false,
        }
    }

    fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    fn headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// The request's body has been read completely.
    fn body_read(mut self) -> Self {
        self.body_unread = false;
        self
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn cors_included(mut self) -> Self {
        self.cors_included = true;
        self
    }
}

/// The `Sec-WebSocket-Key` of a valid version-13 upgrade request.
fn websocket_key(head: &RequestHead) -> Option<String> {
    if head.header("sec-websocket-version") != Some("13") {
        return None;
    }
    head.header("sec-websocket-key").map(str::to_owned)
}

fn request_info(head: RequestHead, address: SocketAddr) -> RequestInfo {
    let url = if head.query.is_empty() {
        head.path
    } else {
        format!("{}?{}", head.path, head.query)
    };
    RequestInfo::new(address, &url, head.headers)
}

/// Node's `abortUpgrade`: a raw response, then the connection is closed.
async fn abort_upgrade(mut stream: TcpStream, status: u16, message: &str) {
    let bytes = http::response(
        status,
        &[("Connection", "close"), ("Content-type", "text/html")],
        message.as_bytes(),
    );
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_touches_only_the_first_two_cache_lines() {
        // The Rc counts (16 bytes) come first in the allocation, then these.
        assert!(16 + std::mem::offset_of!(Session, flusher) + 8 <= 128);
    }

    #[test]
    fn request_info_keeps_url_query_and_headers_in_one_block() {
        let info = RequestInfo::new(
            "127.0.0.1:9".parse().unwrap(),
            "/socket.io/?EIO=4&transport=polling",
            [("host", "x:1"), ("cookie", "a=b; c=d"), ("empty", "")],
        );
        assert_eq!(info.url(), "/socket.io/?EIO=4&transport=polling");
        assert_eq!(info.query(), "EIO=4&transport=polling");
        let headers: Vec<_> = info.headers().collect();
        assert_eq!(
            headers,
            vec![("host", "x:1"), ("cookie", "a=b; c=d"), ("empty", "")]
        );
        assert_eq!(info.header("cookie"), Some("a=b; c=d"));
        let bare = RequestInfo::new(
            "127.0.0.1:9".parse().unwrap(),
            "/x",
            Vec::<(String, String)>::new(),
        );
        assert_eq!((bare.query(), bare.headers().count()), ("", 0));
    }
}
