//! The WebSocket transport of one session: the upgrade response, the read/write loop, the
//! close, and the probe of a WebSocket that upgrades a polling session (docs/PROTOCOL.md
//! §1.7). Frames are read by `ws_reader.rs`; queued frames are written in one `writev` per
//! loop turn (by this loop, or by the shard's flusher between turns).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::net::Stream;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::engine::Engine;
use super::heartbeat::Heartbeat;
use super::queue::OutQueue;
use super::request::RequestInfo;
use super::session::{Session, Transport};
use super::ws_reader::{read_ready, FrameSink, Reader, WsMessage, WsTransport};
use crate::connection;
use crate::protocol::close::CloseReason;
use crate::protocol::deflate::{self, Agreement};
use crate::protocol::engineio::{self, Packet, PacketType};
use crate::protocol::frame::OutFrame;
use crate::protocol::http::RequestHead;

/// How long a closing connection may take to flush its last frames and see the client's close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection reads (and drops) while it waits for the client's close: a
/// close frame comes at once; a client still flooding is cut off, not read for the whole linger.
const CLOSE_DRAIN: usize = 64 * 1024;
/// How often a probing upgrade asks the pending polling GET to return a noop (Node's check
/// interval), so the client can pause polling and send the upgrade packet.
const NOOP_PERIOD: Duration = Duration::from_millis(100);

/// The 101 answer to an upgrade request, with the permessage-deflate agreement if any.
pub(super) fn switching_protocols(
    key: &str,
    cookie: Option<&str>,
    deflate: Option<&Agreement>,
) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(deflate) = deflate {
        response.push_str("Sec-WebSocket-Extensions: ");
        response.push_str(&deflate.response());
        response.push_str("\r\n");
    }
    if let Some(cookie) = cookie {
        response.push_str("Set-Cookie: ");
        response.push_str(cookie);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    response.into_bytes()
}

/// The `Sec-WebSocket-Key` of a valid version-13 upgrade request.
pub(super) fn websocket_key(head: &RequestHead) -> Option<String> {
    if head.header("sec-websocket-version") != Some("13") {
        return None;
    }
    head.header("sec-websocket-key").map(str::to_owned)
}

/// The permessage-deflate agreement of a WebSocket handshake (docs/PROTOCOL.md §1.11): the
/// client's first offer shardio can honour, when the endpoint has compression on. Counted.
pub(super) fn negotiate_deflate(engine: &Engine, head: &RequestHead) -> Option<Agreement> {
    if !engine.config.websocket_compression {
        return None;
    }
    let offers = head
        .headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-extensions")
        .map(|(_, value)| value.as_str());
    let agreement = deflate::negotiate(offers)?;
    engine.shard.metrics().deflate_agreed();
    Some(agreement)
}

/// Answers a handshake upgrade and opens the session; returns it with its WebSocket, for the
/// caller to start the session's driver. `None`: the 101 could not be written.
pub(super) async fn open(
    engine: &Rc<Engine>,
    mut stream: Stream,
    (key, deflate): (&str, Option<Agreement>),
    request: RequestInfo,
    leftover: Vec<u8>,
) -> Option<(Rc<Session>, WsTransport)> {
    let session = engine.open_session(request, Transport::WebSocket);
    let cookie = engine.cookie(&session);
    let mut response = switching_protocols(key, cookie.as_deref(), deflate.as_ref());
    // The open packet rides in the same write as the 101.
    response.extend_from_slice(engine.open_packet(&session).wire());
    if connection::write_raw(&mut stream, &response).await {
        engine.attach(&session);
        Some((
            session,
            WsTransport::new(stream, leftover, engine.frame_limits.clone(), deflate),
        ))
    } else {
        session.close(CloseReason::TransportError);
        engine.shard.finish(&session);
        None
    }
}

/// Runs a WebSocket that asks to upgrade a polling session: answers the probe, and on the
/// upgrade packet hands the connection to the session's driver. Anything else, or no upgrade
/// packet within `upgrade_timeout`, closes this WebSocket only; the session goes on polling.
pub(super) async fn upgrade(
    engine: &Rc<Engine>,
    mut stream: Stream,
    (key, deflate): (&str, Option<Agreement>),
    session: Rc<Session>,
    leftover: Vec<u8>,
) {
    // Before any await: a second upgrade request for this sid is refused from now on.
    session.transport.set(Transport::Upgrading);
    let response = switching_protocols(key, None, deflate.as_ref());
    if !connection::write_raw(&mut stream, &response).await {
        end_candidate(&session);
        return;
    }
    let mut ws = WsTransport::new(stream, leftover, engine.frame_limits.clone(), deflate);
    let upgraded = probe(engine, &session, &mut ws).await;
    if upgraded && session.is_open() {
        *session.upgraded.borrow_mut() = Some(Box::new(ws));
        session.events.notify_one();
        return;
    }
    end_candidate(&session);
    let _ = ws.stream.shutdown().await;
}

/// Accepts a WebSocket that cannot carry its session (the session has upgraded already, or a
/// candidate is probing, or the request names the polling transport) and closes it at once, as
/// Node's engine.io does: `101`, then a close frame without a status code (docs/PROTOCOL.md
/// §1.7). The client sees a close, not a failed handshake; the session is not touched.
pub(super) async fn accept_and_close(mut stream: Stream, key: &str) {
    if connection::write_raw(&mut stream, &switching_protocols(key, None, None)).await {
        let out = RefCell::new(OutQueue::new(0));
        out.borrow_mut().push_close(OutFrame::close_without_code());
        linger(stream, &out).await;
    }
}

/// A candidate that did not upgrade leaves the session on polling, free to try again.
fn end_candidate(session: &Session) {
    if session.transport.get() == Transport::Upgrading {
        session.transport.set(Transport::Polling);
    }
}

/// The probe of docs/PROTOCOL.md §1.7 on a candidate WebSocket. Returns whether the upgrade completed.
async fn probe(engine: &Engine, session: &Rc<Session>, ws: &mut WsTransport) -> bool {
    let deadline = Instant::now() + engine.config.upgrade_timeout;
    let mut noop = tokio::time::interval(NOOP_PERIOD);
    let mut sink = ProbeSink {
        session,
        replies: Vec::new(),
        probed: false,
        upgraded: false,
    };
    let mut result = ws.reader.feed(&mut [], &mut sink);
    loop {
        if !sink.replies.is_empty() {
            let mut bytes = Vec::new();
            for frame in sink.replies.drain(..) {
                bytes.extend_from_slice(frame.wire());
            }
            // Within the probe's deadline: a client that pings and never reads must not hold
            // the connection.
            let writing = async {
                ws.stream.write_all(&bytes).await?;
                ws.stream.flush().await
            };
            match tokio::time::timeout_at(deadline, writing).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
        if result.is_err() || !session.is_open() {
            return false;
        }
        if sink.upgraded {
            return true;
        }
        tokio::select! {
            ready = ws.stream.readable() => {
                result = ready
                    .map_err(|_| CloseReason::TransportError)
                    .and_then(|()| read_ready(&ws.stream, &mut ws.reader, &mut sink))
                    .map(|_| ());
            }
            _ = noop.tick() => {
                if sink.probed && session.poll.get_pending.get() {
                    session.poll.noop_due.set(true);
                    session.wake.notify_one();
                }
            }
            _ = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// The session's WebSocket loop: read, write, heartbeat, until the session is asked to close.
/// Returns the transport for the close, unless the socket could not be taken back.
pub(super) async fn run(
    session: &Rc<Session>,
    ws: Box<WsTransport>,
    heartbeat: &mut Heartbeat,
) -> Option<WsTransport> {
    // Out of its box now: a box moved out of is freed only when its variable goes out of
    // scope, here at the session's end.
    let WsTransport {
        stream,
        mut reader,
        deflate,
    } = unbox(ws);
    // What is queued from now on goes out compressed where the handshake agreed to it.
    session.out.borrow_mut().set_deflate(deflate);
    // Shared with the shard's flusher, which writes this socket between our turns.
    let stream = Rc::new(stream);
    *session.ws.borrow_mut() = Some(stream.clone());
    run_loop(session, &stream, &mut reader, heartbeat).await;
    session.ws.borrow_mut().take();
    session.dirty.set(false);
    // The flusher clones the socket only inside a synchronous write, so it is ours again.
    let stream = Rc::try_unwrap(stream).ok()?;
    Some(WsTransport {
        stream,
        reader,
        deflate,
    })
}

async fn run_loop(
    session: &Rc<Session>,
    stream: &Stream,
    reader: &mut Reader,
    heartbeat: &mut Heartbeat,
) {
    let mut sink = SessionSink(session);
    if let Err(reason) = reader.feed(&mut [], &mut sink) {
        session.close(reason);
    }
    loop {
        if session.take_pong() {
            heartbeat.on_pong(session);
        }
        let flushed = match session.write_queue(stream) {
            Ok(flushed) => flushed,
            Err(_) => {
                session.close(CloseReason::TransportError);
                true
            }
        };
        if !session.is_open() {
            return;
        }
        tokio::select! {
            biased;
            ready = stream.readable() => {
                let result = ready.map_err(|_| CloseReason::TransportError)
                    .and_then(|()| read_ready(stream, reader, &mut sink));
                match result {
                    // A full buffer means more is waiting: let the writers this read fed
                    // run first, so one fast sender cannot pile up everybody's queues.
                    Ok(true) => tokio::task::yield_now().await,
                    Ok(false) => {}
                    Err(reason) => session.close(reason),
                }
            }
            ready = stream.writable(), if !flushed => {
                if ready.is_err() {
                    session.close(CloseReason::TransportError);
                }
            }
            // Also while blocked on a full socket: a close (slow consumer) must end the loop.
            _ = session.wake.notified() => {}
            _ = heartbeat.due() => heartbeat.fire(session),
        }
    }
}

#[allow(
    clippy::boxed_local,
    reason = "the point: the box is freed when this returns, not when the caller's scope ends"
)]
fn unbox(ws: Box<WsTransport>) -> WsTransport {
    *ws
}

/// Sends the close frame the reason calls for, flushes, and waits briefly for the client to
/// close its side, so that the last frames are not lost to a reset.
pub(super) async fn close(ws: WsTransport, session: &Session) {
    let reason = session.closing.get().unwrap_or(CloseReason::TransportClose);
    if matches!(reason, CloseReason::SlowConsumer) {
        return;
    }
    if let Some(code) = reason.ws_close_code() {
        session.out.borrow_mut().push_close(OutFrame::close(code));
    }
    linger(ws.stream, &session.out).await;
}

/// Writes what `out` holds (ending with a close frame), closes our side, and waits briefly for
/// the client to close its side, so that the last frames are not lost to a reset.
pub(super) async fn linger(mut stream: Stream, out: &RefCell<OutQueue>) {
    let deadline = Instant::now() + CLOSE_LINGER;
    loop {
        let written = out.borrow_mut().write_to(&stream);
        match written {
            Ok(true) => break,
            Ok(false) => {
                if tokio::time::timeout_at(deadline, stream.writable())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let mut drained = 0;
    while let Ok(Ok(n)) = tokio::time::timeout_at(
        deadline,
        tokio::io::AsyncReadExt::read(&mut stream, &mut sink),
    )
    .await
    {
        drained += n;
        if n == 0 || drained > CLOSE_DRAIN {
            break;
        }
    }
}

/// Delivers to an established session.
struct SessionSink<'a>(&'a Rc<Session>);

impl FrameSink for SessionSink<'_> {
    fn is_open(&self) -> bool {
        self.0.is_open()
    }

    fn message(&mut self, message: WsMessage<'_>) -> Result<(), CloseReason> {
        deliver(self.0, message)
    }

    fn control(&mut self, frame: OutFrame) -> Result<(), CloseReason> {
        push_control(self.0, frame)
    }

    fn inflated(&mut self) {
        self.0.count_inflated();
    }
}

/// Queues a control frame on the session; one that does not fit makes it a slow consumer.
fn push_control(session: &Session, frame: OutFrame) -> Result<(), CloseReason> {
    if session.out.borrow_mut().push_control(frame) {
        Ok(())
    } else {
        Err(CloseReason::SlowConsumer)
    }
}

/// Hands one complete WebSocket message to the Engine.IO layer.
fn deliver(session: &Rc<Session>, message: WsMessage<'_>) -> Result<(), CloseReason> {
    let packet = match message {
        WsMessage::Binary(data) => Packet::Binary(data),
        WsMessage::Text(text) => {
            engineio::decode_text(text).map_err(|_| CloseReason::ParseError)?
        }
    };
    session.receive(packet)
}

/// A candidate WebSocket during the probe: its replies are written to it directly (the
/// session's queue still belongs to polling). After the upgrade packet, the rest of what was
/// read goes to the session.
struct ProbeSink<'a> {
    session: &'a Rc<Session>,
    replies: Vec<OutFrame>,
    probed: bool,
    upgraded: bool,
}

impl FrameSink for ProbeSink<'_> {
    fn is_open(&self) -> bool {
        self.session.is_open()
    }

    fn message(&mut self, message: WsMessage<'_>) -> Result<(), CloseReason> {
        if self.upgraded {
            return deliver(self.session, message);
        }
        match message {
            WsMessage::Text("2probe") => {
                self.probed = true;
                self.replies.push(OutFrame::text(6, |b| {
                    engineio::encode_text(PacketType::Pong, "probe", b)
                }));
                Ok(())
            }
            WsMessage::Text("5") => {
                // From here the session is the WebSocket's: polling requests get 400, and the
                // pending GET (if any) returns a noop instead of packets.
                self.upgraded = true;
                self.session.upgraded_to_websocket();
                self.session.wake.notify_one();
                Ok(())
            }
            // Any other packet during the probe ends this candidate, not the session.
            _ => Err(CloseReason::TransportError),
        }
    }

    fn control(&mut self, frame: OutFrame) -> Result<(), CloseReason> {
        if self.upgraded {
            return push_control(self.session, frame);
        }
        self.replies.push(frame);
        Ok(())
    }
}
