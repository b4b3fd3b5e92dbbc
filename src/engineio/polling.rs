//! The HTTP long-polling transport (docs/PROTOCOL.md §1.4): a GET is held until packets are queued
//! and answers them joined by `\x1e`; a POST carries the client's packets and is answered `ok`.
//! Each request runs on its connection's task; the session's driver keeps the heartbeat.
//!
//! Bounds: a POST body is at most `max_payload` bytes (413 beyond), read with an idle timeout
//! and in full within the body timeout (408 past it); a GET answers at most about
//! `max_payload` bytes, the rest waits for the next GET.

use std::cell::Cell;
use std::rc::Rc;

use super::driver;
use super::engine::{Engine, Handled, Reply};
use super::queue::OutQueue;
use super::request::RequestInfo;
use super::session::{Session, Transport};
use crate::connection;
use crate::net::Stream;
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::{self, EncodedPacket, Packet, PayloadPacket};
use crate::protocol::frame::FrameKind;
use crate::protocol::http::{BodyError, Refusal, RequestHead};

/// Serves the handshake GET of a new polling session: its open packet is the first packet
/// the GET delivers.
pub(super) async fn handshake(
    engine: &Rc<Engine>,
    stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
    address: std::net::SocketAddr,
) -> Handled {
    engine.shard.metrics().polling_request(true);
    let request = RequestInfo::from_head(head.clone(), address);
    let session = engine.open_session(request, Transport::Polling);
    // Fails only when `max_buffered_bytes` is tiny, and then the session closes as a slow
    // consumer: the GET below answers the close.
    let _ = session.send(&[engine.open_packet(&session)]);
    engine.attach(&session);
    tokio::task::spawn_local(driver::drive(engine.clone(), session.clone(), None));
    let cookie = engine.cookie(&session);
    session
        .run_in_span(get(engine, &session, stream, &head, leftover, cookie))
        .await
}

/// Serves a polling request on an existing session.
pub(super) async fn serve(
    engine: &Rc<Engine>,
    session: Rc<Session>,
    stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
) -> Handled {
    let metrics = engine.shard.metrics();
    match head.method.as_str() {
        "GET" => {
            metrics.polling_request(true);
            get(engine, &session, stream, &head, leftover, None).await
        }
        "POST" => {
            metrics.polling_request(false);
            post(engine, &session, stream, &head, leftover).await
        }
        // Node's polling transport answers any other method 500; the session lives on.
        _ => {
            engine
                .refuse(stream, &head, leftover, Refusal::PollingMethod)
                .await
        }
    }
}

/// Sets a flag for as long as it lives, so that it is cleared on every way out.
struct Pending<'a>(&'a Cell<bool>);

impl<'a> Pending<'a> {
    fn set(flag: &'a Cell<bool>) -> Self {
        flag.set(true);
        Pending(flag)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The long poll.
async fn get(
    engine: &Engine,
    session: &Rc<Session>,
    stream: Stream,
    head: &RequestHead,
    leftover: Vec<u8>,
    cookie: Option<String>,
) -> Handled {
    if session.poll.get_pending.get() {
        // The pending GET then answers `1`.
        return misuse(
            engine,
            session,
            stream,
            head,
            leftover,
            "overlap from client",
        )
        .await;
    }
    let body = {
        let _pending = Pending::set(&session.poll.get_pending);
        // A client that pipelined its next request cannot be told from one that left; only
        // watch for an abort when nothing else was sent.
        match wait_for_packets(
            session,
            &stream,
            leftover.is_empty(),
            engine.config.max_payload,
        )
        .await
        {
            Some(body) => body,
            None => {
                // "poll connection closed prematurely": the client gave up on the session.
                tracing::debug!(sid = %session.sid(), "long poll aborted");
                session.close(CloseReason::TransportError);
                return Handled::Done;
            }
        }
    };
    session.poll.noop_due.set(false);
    let mut headers = vec![("cache-control", "no-store".to_string())];
    if let Some(cookie) = cookie {
        headers.push(("Set-Cookie", cookie));
    }
    let reply = Reply::new(200, &body)
        .content_type("text/plain; charset=UTF-8")
        .headers(headers);
    engine.reply(stream, head, leftover, reply).await
}

/// Waits until the GET has something to answer. `None`: the client closed the connection.
async fn wait_for_packets(
    session: &Session,
    stream: &Stream,
    mut watch_abort: bool,
    max_payload: usize,
) -> Option<Vec<u8>> {
    loop {
        if let Some(body) = next_body(session, max_payload) {
            return Some(body);
        }
        tokio::select! {
            _ = session.wake.notified() => {}
            peeked = stream.sent_or_closed(), if watch_abort => match peeked {
                Ok(0) | Err(_) => return None,
                // The next request, pipelined: it waits for this response.
                Ok(_) => watch_abort = false,
            },
        }
    }
}

/// What a GET answers now, if anything.
fn next_body(session: &Session, max_payload: usize) -> Option<Vec<u8>> {
    if session.transport.get() == Transport::WebSocket {
        // Upgraded while this GET waited: end it cleanly; the packets go on the WebSocket.
        return Some(vec![engineio::PacketType::Noop.digit()]);
    }
    if let Some(reason) = session.closing.get() {
        let mut body = Vec::new();
        if reason.flushes_queue() {
            body = take_batch(&mut session.out.borrow_mut(), max_payload);
        }
        // A client that asked to close gets a noop (§1.4); otherwise it is told to close.
        let last = if reason == CloseReason::TransportClose {
            engineio::PacketType::Noop
        } else {
            engineio::PacketType::Close
        };
        engineio::append_to_payload(&mut body, EncodedPacket::Text(&[last.digit()]));
        session.poll.close_delivered.set(true);
        session.events.notify_one();
        return Some(body);
    }
    let body = take_batch(&mut session.out.borrow_mut(), max_payload);
    if !body.is_empty() {
        return Some(body);
    }
    if session.poll.noop_due.replace(false) {
        return Some(vec![engineio::PacketType::Noop.digit()]);
    }
    None
}

/// Takes queued packets off the front as one payload: at least one packet, then as many as
/// keep the payload within `max_payload` bytes.
fn take_batch(out: &mut OutQueue, max_payload: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(frame) = out.front().cloned() {
        let packet = match frame.kind() {
            FrameKind::Text => EncodedPacket::Text(frame.payload()),
            FrameKind::Binary => EncodedPacket::Binary(frame.payload()),
            // WebSocket control frames mean nothing on polling.
            FrameKind::Control => {
                out.pop_front();
                continue;
            }
        };
        if !body.is_empty() && body.len() + 1 + packet.payload_len() > max_payload {
            break;
        }
        engineio::append_to_payload(&mut body, packet);
        out.pop_front();
    }
    body
}

/// A request that breaks the polling rules (`what`: Node's error message) is answered 400 and
/// ends the session.
async fn misuse(
    engine: &Engine,
    session: &Session,
    stream: Stream,
    head: &RequestHead,
    leftover: Vec<u8>,
    what: &str,
) -> Handled {
    tracing::debug!(sid = %session.sid(), what, "polling request refused");
    session.close(CloseReason::TransportError);
    engine
        .refuse(stream, head, leftover, Refusal::PollingMisuse)
        .await
}

/// The client's packets.
async fn post(
    engine: &Engine,
    session: &Rc<Session>,
    mut stream: Stream,
    head: &RequestHead,
    leftover: Vec<u8>,
) -> Handled {
    let binary = head
        .header("content-type")
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"));
    if binary {
        // v4 carries binary as base64 text.
        return misuse(engine, session, stream, head, leftover, "invalid content").await;
    }
    if session.poll.post_pending.get() {
        let what = "data request overlap from client";
        return misuse(engine, session, stream, head, leftover, what).await;
    }
    let read = {
        let _pending = Pending::set(&session.poll.post_pending);
        let (limit, timeout) = (engine.config.max_payload, engine.shard.http.body_timeout);
        connection::read_body(&mut stream, head, leftover, limit, timeout).await
    };
    let (body, rest) = match read {
        Ok(read) => read,
        Err(err @ (BodyError::TooLarge | BodyError::Malformed)) => {
            tracing::debug!(sid = %session.sid(), %err, "POST body refused");
            // The session lives on, as in Node; the connection cannot be reused.
            return engine
                .refuse(stream, head, Vec::new(), Refusal::Body(err))
                .await;
        }
        Err(BodyError::TimedOut) => {
            // The packets sent so far cannot be taken without the rest: the session ends, and
            // the connection is answered 408 and closed.
            tracing::debug!(sid = %session.sid(), "POST body past the body timeout");
            session.close(CloseReason::TransportError);
            return engine
                .refuse(stream, head, Vec::new(), Refusal::Body(BodyError::TimedOut))
                .await;
        }
        Err(BodyError::Closed) => {
            // "data request connection closed prematurely"
            tracing::debug!(sid = %session.sid(), "POST aborted");
            session.close(CloseReason::TransportError);
            return Handled::Done;
        }
    };
    receive_payload(session, &body);
    let reply = Reply::new(200, b"ok")
        .content_type("text/html")
        .headers(vec![("cache-control", "no-store".to_string())])
        .body_read();
    engine.reply(stream, head, rest, reply).await
}

/// Hands the packets of a POST body to the session, in order, stopping at the first bad one
/// (which closes the session, as in Node; the POST itself is still answered `ok`).
fn receive_payload(session: &Rc<Session>, body: &[u8]) {
    let Ok(text) = std::str::from_utf8(body) else {
        return session.close(CloseReason::ParseError);
    };
    for packet in engineio::payload_packets(text) {
        if !session.is_open() {
            return;
        }
        let result = match &packet {
            Ok(PayloadPacket::Text(ty, data)) => session.receive(Packet::Text(*ty, data)),
            Ok(PayloadPacket::Binary(data)) => session.receive(Packet::Binary(data)),
            Err(_) => Err(CloseReason::ParseError),
        };
        if let Err(reason) = result {
            return session.close(reason);
        }
    }
}
