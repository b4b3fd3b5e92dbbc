//! Engine.IO v4 sessions (SOCKETIO.md §1): the handshake, the session table of one shard,
//! the per-session outbound queue and the transports. Usable on its own, without Socket.IO:
//! an [`EngineApp`] receives raw Engine.IO messages.

pub mod frame;
mod queue;
pub mod sid;
mod websocket;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::bus::{Bus, BusMsg, Refused};
use crate::metrics::{Metrics, ShardMetrics};
use crate::protocol::engineio::HandshakeError;
use crate::protocol::http::{self, RequestHead};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_buffered_bytes: 1 << 20,
        }
    }
}

/// Why a session closed. Socket.IO maps these to its disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the connection (TCP close, WebSocket close, or a `1` packet).
    TransportClose,
    /// A read or write failed, or the client broke the WebSocket protocol.
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
    /// Path and query, as requested.
    pub url: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub time: SystemTime,
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

/// One Engine.IO session, owned by the shard that opened it.
pub struct Session {
    sid: Sid,
    request: RequestInfo,
    out: RefCell<OutQueue>,
    /// Wakes the transport when the queue goes from empty to non-empty, or on close.
    wake: Notify,
    closing: Cell<Option<CloseReason>>,
    conn: RefCell<Option<Rc<dyn Connection>>>,
}

impl Session {
    fn new(sid: Sid, request: RequestInfo, max_buffered_bytes: usize) -> Self {
        Session {
            sid,
            request,
            out: RefCell::new(OutQueue::new(max_buffered_bytes)),
            wake: Notify::new(),
            closing: Cell::new(None),
            conn: RefCell::new(None),
        }
    }

    pub fn sid(&self) -> Sid {
        self.sid
    }

    pub fn request(&self) -> &RequestInfo {
        &self.request
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
            self.wake.notify_one();
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
            self.wake.notify_one();
        }
        true
    }

    /// Asks the transport to close the session. Idempotent; the first reason wins. The
    /// connection's `on_close` runs later, from the transport, never from inside this call.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.get().is_none() {
            self.closing.set(Some(reason));
            self.wake.notify_one();
        }
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
        }
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
        if reason == CloseReason::SlowConsumer {
            self.metrics().slow_consumer();
        }
        if let Some(conn) = session.conn.borrow_mut().take() {
            conn.on_close(session, reason);
        }
        session.out.borrow_mut().clear();
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
    /// The response was written; the connection may carry another request.
    KeepAlive(TcpStream),
    /// The connection was taken over (WebSocket) or closed.
    Done,
}

impl Engine {
    /// Serves one Engine.IO request whose head has been read (`leftover`: bytes read past it).
    /// Follows the order of checks of Node's `verify()` and `handshake()` (§1.5).
    pub async fn handle(
        self: &Rc<Self>,
        mut stream: TcpStream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
    ) -> Handled {
        let upgrade = head.is_websocket_upgrade();
        match self.verify(&head, upgrade) {
            Err(err) => {
                let keep = !upgrade && head.keep_alive();
                if write_handshake_error(&mut stream, err, upgrade)
                    .await
                    .is_ok()
                    && keep
                {
                    Handled::KeepAlive(stream)
                } else {
                    Handled::Done
                }
            }
            Ok(()) => {
                let Some(key) = head.header("sec-websocket-key").map(str::to_owned) else {
                    let _ =
                        write_handshake_error(&mut stream, HandshakeError::BadRequest, true).await;
                    return Handled::Done;
                };
                if head.header("sec-websocket-version") != Some("13") {
                    let _ =
                        write_handshake_error(&mut stream, HandshakeError::BadRequest, true).await;
                    return Handled::Done;
                }
                let request = RequestInfo {
                    address,
                    url: if head.query.is_empty() {
                        head.path.clone()
                    } else {
                        format!("{}?{}", head.path, head.query)
                    },
                    query: head.query,
                    headers: head.headers,
                    time: SystemTime::now(),
                };
                websocket::open(self, stream, &key, request, leftover).await;
                Handled::Done
            }
        }
    }

    fn verify(&self, head: &RequestHead, upgrade: bool) -> Result<(), HandshakeError> {
        // Only the WebSocket transport exists so far; polling is refused as an unknown
        // transport, as Node does when `transports: ["websocket"]`.
        if head.query_param("transport").as_deref() != Some("websocket") {
            return Err(HandshakeError::UnknownTransport);
        }
        if head.query_param("sid").is_some() {
            // No polling session can exist to be upgraded.
            return Err(HandshakeError::UnknownSid);
        }
        if head.method != "GET" {
            return Err(HandshakeError::BadHandshakeMethod);
        }
        if !upgrade {
            return Err(HandshakeError::BadRequest);
        }
        if head.query_param("EIO").as_deref() != Some("4") {
            return Err(HandshakeError::UnsupportedProtocolVersion);
        }
        Ok(())
    }

    /// Registers a new session and lets the app attach its handler.
    fn open_session(self: &Rc<Self>, request: RequestInfo) -> Rc<Session> {
        let session = Rc::new(Session::new(
            self.ctx.engine.next_sid(),
            request,
            self.config.max_buffered_bytes,
        ));
        self.ctx.engine.insert(session.clone());
        session
    }

    fn attach(&self, session: &Rc<Session>) {
        let conn = self.app.open(session);
        *session.conn.borrow_mut() = Some(conn);
    }
}

/// Answers a refused handshake: JSON `{"code","message"}` for plain HTTP (§1.5), the raw
/// `abortUpgrade` response for WebSocket upgrades.
async fn write_handshake_error(
    stream: &mut TcpStream,
    err: HandshakeError,
    upgrade: bool,
) -> std::io::Result<()> {
    let bytes = if upgrade {
        http::response(
            400,
            &[("Connection", "close"), ("Content-type", "text/html")],
            err.message().as_bytes(),
        )
    } else {
        http::response(
            err.status(),
            &[("Content-Type", "application/json")],
            err.json_body().as_bytes(),
        )
    };
    stream.write_all(&bytes).await?;
    if upgrade {
        let _ = stream.shutdown().await;
    }
    Ok(())
}
