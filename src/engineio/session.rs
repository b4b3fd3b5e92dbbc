//! One Engine.IO session: its state (outbound queue, close flag, transport state, heartbeat
//! deadline) and what the transports and the app do with it. A session is state only; its
//! driver task (`driver.rs`) owns its lifetime.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use crate::net::Stream;
use thiserror::Error;
use tokio::sync::Notify;

use super::flusher::{Flush, Flusher};
use super::queue::{Compressed, OutQueue};
use super::request::RequestInfo;
use super::sid::Sid;
use super::span::{InSpan, SessionSpan};
use super::ws_reader::WsTransport;
use crate::metrics::{Metrics, ShardMetrics, TransportKind};
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::{Packet, PacketType};
use crate::protocol::frame::{FrameKind, OutFrame};

/// A message received on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (an Engine.IO `4` packet's data).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Receives the messages of one session. Methods take `&self`: the handler may be re-entered
/// from its own callbacks' effects, so keep interior state in short `RefCell` borrows.
pub trait Connection {
    /// A message from the client.
    fn on_message(&self, session: &Rc<Session>, message: Message<'_>);
    /// The session closed; runs once, from the transport, never from inside `Session::close`.
    fn on_close(&self, session: &Rc<Session>, reason: CloseReason);
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
pub(super) enum Transport {
    Polling,
    /// Polling, while a candidate WebSocket probes (§1.7).
    Upgrading,
    WebSocket,
}

impl Transport {
    /// The transport as the counters split sessions (an upgrading session is polling).
    pub(super) fn kind(self) -> TransportKind {
        match self {
            Transport::Polling | Transport::Upgrading => TransportKind::Polling,
            Transport::WebSocket => TransportKind::WebSocket,
        }
    }

    /// The `transport` query value of requests this session accepts (without an upgrade).
    pub(super) fn name(self) -> &'static str {
        match self {
            Transport::Polling | Transport::Upgrading => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// What the polling requests of a session are doing.
#[derive(Default)]
pub(super) struct PollState {
    /// A long-poll GET is waiting for packets.
    pub(super) get_pending: Cell<bool>,
    /// A POST is reading its body.
    pub(super) post_pending: Cell<bool>,
    /// An upgrade probe asks the pending GET to return a noop so the client can pause polling.
    pub(super) noop_due: Cell<bool>,
    /// A GET carried the close packet of a closing session to the client.
    pub(super) close_delivered: Cell<bool>,
}

/// What the sessions of one shard share: the shard's WebSocket writer and its counters.
pub(super) struct Home {
    pub(super) flusher: Rc<Flusher<Session>>,
    metrics: Arc<Metrics>,
    shard: usize,
}

impl Home {
    pub(super) fn new(metrics: Arc<Metrics>, shard: usize) -> Self {
        Home {
            flusher: Rc::default(),
            metrics,
            shard,
        }
    }

    /// The shard's counters.
    pub(super) fn metrics(&self) -> &ShardMetrics {
        &self.metrics.shards()[self.shard]
    }
}

/// The Engine.IO messages among `frames` (data packets, not pings or control frames) and
/// their bytes.
fn messages(frames: &[OutFrame]) -> (u64, u64) {
    frames
        .iter()
        .filter(|f| match f.kind() {
            FrameKind::Binary => true,
            FrameKind::Text => f.payload().first() == Some(&b'4'),
            FrameKind::Control => false,
        })
        .fold((0, 0), |(n, bytes), f| {
            (n + 1, bytes + f.payload().len() as u64)
        })
}

/// One Engine.IO session, owned by the shard that opened it.
///
/// `repr(C)` keeps the fields in this order: a broadcast touches only the first group (the
/// queue and the flags beside it) of each of thousands of sessions, so they share the cache
/// lines right after the `Rc` counts instead of being spread over the whole struct. The
/// transports of this folder (`polling.rs`, `websocket.rs`, `driver.rs`) work on its fields.
#[repr(C)]
pub struct Session {
    pub(super) out: RefCell<OutQueue>,
    pub(super) closing: Cell<Option<CloseReason>>,
    /// Listed in the flusher, not written yet.
    pub(super) dirty: Cell<bool>,
    /// The socket while the WebSocket loop runs, so the shard's flusher can write to it.
    pub(super) ws: RefCell<Option<Rc<Stream>>>,
    me: Weak<Session>,
    home: Rc<Home>,
    // The rest is touched per request or per heartbeat, not per message.
    sid: Sid,
    /// The endpoint (path) that opened it: its requests must come to the same one.
    pub(super) endpoint: usize,
    request: RequestInfo,
    /// Wakes whoever delivers the queue (the WebSocket loop, or the pending GET) when the queue
    /// goes from empty to non-empty, on close, and for an upgrade noop.
    pub(super) wake: Notify,
    pub(super) conn: RefCell<Option<Rc<dyn Connection>>>,
    pub(super) transport: Cell<Transport>,
    /// A pong arrived since the driver last looked.
    pong: Cell<bool>,
    /// The session is dead after this instant unless a pong arrives first: the next (or the
    /// outstanding) ping's time plus `ping_timeout`. Kept by the heartbeat.
    pub(super) alive_until: Cell<tokio::time::Instant>,
    /// When the session opened: the heartbeat counts from here, as Node's does, not from
    /// whenever its driver task first runs.
    pub(super) opened_at: tokio::time::Instant,
    /// Wakes the driver of a polling session: a pong, a close, a finished upgrade, a delivered
    /// close packet.
    pub(super) events: Notify,
    pub(super) poll: PollState,
    /// The WebSocket of a finished upgrade, until the driver takes it over.
    pub(super) upgraded: RefCell<Option<Box<WsTransport>>>,
    /// The session's tracing span (`sid`, `shard`), made when the session first logs
    /// (`span.rs`). Its driver runs in it, and so does every request served for it: their log
    /// lines carry both.
    span: SessionSpan,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("transport", &self.transport.get())
            .field("closing", &self.closing.get())
            .field("queued_bytes", &self.queued_bytes())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(super) fn new(
        sid: Sid,
        endpoint: usize,
        request: RequestInfo,
        max_buffered_bytes: usize,
        transport: Transport,
        first_ping_window: Duration,
        (me, home): (Weak<Session>, Rc<Home>),
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
            home,
            span: SessionSpan::new(sid),
        }
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// Runs `f` in the session's span: what it logs carries the session's `sid` and `shard`.
    pub(super) fn in_span<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span.scope(self.sid, f)
    }

    /// `work`, polled in the session's span.
    pub(super) fn run_in_span<F: std::future::Future>(&self, work: F) -> InSpan<'_, F> {
        self.span.run(self.sid, work)
    }

    /// The request that opened the session.
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
        let (was_empty, compressed) = {
            let mut out = self.out.borrow_mut();
            let was_empty = out.is_empty();
            let Some(compressed) = out.push_all(frames) else {
                drop(out);
                self.close(CloseReason::SlowConsumer);
                return Err(SendError::SlowConsumer);
            };
            (was_empty, compressed)
        };
        self.count_sent(frames, compressed);
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
        let Some(compressed) = out.push_all(frames) else {
            self.home.metrics().volatile_dropped();
            return false;
        };
        drop(out);
        self.count_sent(frames, compressed);
        if was_empty {
            self.wake_writer();
        }
        true
    }

    /// Counts a compressed message received.
    pub(super) fn count_inflated(&self) {
        self.home.metrics().received_compressed();
    }

    /// Counts queued frames: the messages among them, and what went compressed.
    fn count_sent(&self, frames: &[OutFrame], compressed: Compressed) {
        let metrics = self.home.metrics();
        let (n, bytes) = messages(frames);
        metrics.sent(n, bytes);
        if compressed.messages > 0 {
            metrics.sent_compressed(compressed.messages, compressed.saved);
        }
    }

    /// Something was queued on an empty queue: a WebSocket session is listed for the shard's
    /// flusher; a polling session wakes its pending GET.
    fn wake_writer(&self) {
        if self.ws.borrow().is_none() {
            self.wake.notify_one();
        } else if !self.dirty.replace(true) {
            if let Some(me) = self.me.upgrade() {
                self.home.flusher.push(me);
            }
        }
    }

    /// Writes as much of the queue to `stream` as it takes without waiting. `Ok(true)`: all
    /// written.
    pub(super) fn write_queue(&self, stream: &Stream) -> io::Result<bool> {
        self.out.borrow_mut().write_to(stream)
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
    pub(super) fn takes_requests(&self) -> bool {
        // A pong the driver has not seen yet may have saved it: the driver decides then.
        if !self.pong.get() && tokio::time::Instant::now() >= self.alive_until.get() {
            self.close(CloseReason::PingTimeout);
        }
        self.closing.get().is_none_or(CloseReason::flushes_queue)
    }

    /// The upgrade completed: the session is the WebSocket's from now on.
    pub(super) fn upgraded_to_websocket(&self) {
        self.transport.set(Transport::WebSocket);
        self.home.metrics().session_upgraded();
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
    pub(super) fn receive(self: &Rc<Self>, packet: Packet<'_>) -> Result<(), CloseReason> {
        match packet {
            Packet::Text(PacketType::Message, data) => {
                // With its type byte, as the bytes out count it.
                self.home.metrics().message_in(data.len() + 1);
                self.dispatch(Message::Text(data));
            }
            Packet::Binary(data) => {
                self.home.metrics().message_in(data.len());
                self.dispatch(Message::Binary(data));
            }
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
    pub(super) fn take_pong(&self) -> bool {
        self.pong.replace(false)
    }
}

impl Flush for Session {
    fn queued_bytes(&self) -> usize {
        Session::queued_bytes(self)
    }

    /// Writes what the socket takes now; a full socket is left to the session's own task,
    /// which waits for it to drain.
    fn flush_now(&self) {
        self.dirty.set(false);
        let stream = self.ws.borrow().clone();
        if let Some(stream) = stream {
            match self.write_queue(&stream) {
                Ok(true) => {}
                Ok(false) => self.wake.notify_one(),
                Err(_) => self.close(CloseReason::TransportError),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session keeps this struct for its life (behind an `Rc`): 392 bytes, of which the
    /// outbound queue 64, the request that opened it 72 (its text in one allocation), the two
    /// `Notify`s 64, the id 20, the heartbeat's instants 32, the socket and a finished
    /// upgrade's WebSocket 32, the connection 24, the span 32 (a made span's id and
    /// subscriber; nothing is allocated until the session logs).
    /// Past this bound, say why in the comment and raise it, or move the new state out of the
    /// idle path (boxed, made when needed).
    #[test]
    fn a_session_stays_small() {
        let size = std::mem::size_of::<Session>();
        assert!(size <= 400, "Session grew to {size} bytes");
    }

    #[test]
    fn a_send_touches_only_the_first_two_cache_lines() {
        // The Rc counts (16 bytes) come first in the allocation, then these.
        assert!(16 + std::mem::offset_of!(Session, home) + 8 <= 128);
    }
}
