//! The WebSocket transport: upgrade response, frame reader and batching writer of one session,
//! and the probe of a WebSocket that upgrades a polling session (§1.7).
//!
//! Memory: an idle connection holds no read buffer. Reads go into one scratch buffer per shard
//! thread, are parsed in place, and only an incomplete frame is copied into the connection's
//! own `partial` buffer (bounded by `max_payload`). Writes gather every queued frame into one
//! `writev` per loop turn.

use std::cell::RefCell;
use std::io::{self, Cursor, IoSlice};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::driver::{self, Heartbeat};
use super::{CloseReason, Engine, OutFrame, RequestInfo, Session, Transport};
use crate::protocol::engineio::{self, Packet, PacketType};

/// Size of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;
/// Frames gathered into one `writev`.
const WRITE_BATCH: usize = 64;
/// How long a closing connection may take to flush its last frames and see the client's close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How often a probing upgrade asks the pending polling GET to return a noop (Node's check
/// interval), so the client can pause polling and send the upgrade packet.
const NOOP_PERIOD: Duration = Duration::from_millis(100);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// A WebSocket connection carrying (or about to carry) a session.
pub(super) struct WsTransport {
    stream: TcpStream,
    reader: Reader,
}

impl WsTransport {
    /// `leftover`: bytes the client sent after the upgrade request, read with its head.
    fn new(stream: TcpStream, leftover: Vec<u8>, max_payload: usize) -> Self {
        WsTransport {
            stream,
            reader: Reader {
                partial: leftover,
                fragments: None,
                max_payload,
            },
        }
    }
}

/// The 101 answer to an upgrade request.
fn switching_protocols(key: &str, cookie: Option<&str>) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(cookie) = cookie {
        response.push_str("Set-Cookie: ");
        response.push_str(cookie);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    response.into_bytes()
}

/// Answers a handshake upgrade, opens the session, and drives it until it closes.
pub(super) async fn open(
    engine: &Rc<Engine>,
    mut stream: TcpStream,
    key: &str,
    request: RequestInfo,
    leftover: Vec<u8>,
) {
    let session = engine.open_session(request, Transport::WebSocket);
    let mut response = switching_protocols(key, engine.cookie(&session).as_deref());
    // The open packet rides in the same write as the 101.
    response.extend_from_slice(engine.open_packet(&session).wire());
    if stream.write_all(&response).await.is_ok() {
        engine.attach(&session);
        let ws = WsTransport::new(stream, leftover, engine.config.max_payload);
        // The driver gets a task of its own, sized for the session's life; the HTTP task, whose
        // future is sized for every kind of request, ends here and frees its memory.
        tokio::task::spawn_local(driver::drive(engine.clone(), session, Some(ws)));
    } else {
        session.close(CloseReason::TransportError);
        engine.ctx.engine.finish(&session);
    }
}

/// Runs a WebSocket that asks to upgrade a polling session: answers the probe, and on the
/// upgrade packet hands the connection to the session's driver. Anything else, or no upgrade
/// packet within `upgrade_timeout`, closes this WebSocket only; the session goes on polling.
pub(super) async fn upgrade(
    engine: &Rc<Engine>,
    mut stream: TcpStream,
    key: &str,
    session: Rc<Session>,
    leftover: Vec<u8>,
) {
    // Before any await: a second upgrade request for this sid is refused from now on.
    session.transport.set(Transport::Upgrading);
    if stream
        .write_all(&switching_protocols(key, None))
        .await
        .is_err()
    {
        end_candidate(&session);
        return;
    }
    let mut ws = WsTransport::new(stream, leftover, engine.config.max_payload);
    let upgraded = probe(engine, &session, &mut ws).await;
    if upgraded && session.is_open() {
        *session.upgraded.borrow_mut() = Some(Box::new(ws));
        session.events.notify_one();
        return;
    }
    end_candidate(&session);
    let _ = ws.stream.shutdown().await;
}

/// A candidate that did not upgrade leaves the session on polling, free to try again.
fn end_candidate(session: &Session) {
    if session.transport.get() == Transport::Upgrading {
        session.transport.set(Transport::Polling);
    }
}

/// The probe of §1.7 on a candidate WebSocket. Returns whether the upgrade completed.
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
            if ws.stream.write_all(&bytes).await.is_err() {
                return false;
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
    ws: WsTransport,
    heartbeat: &mut Heartbeat,
) -> Option<WsTransport> {
    let WsTransport { stream, mut reader } = ws;
    // Shared with the shard's flusher, which writes this socket between our turns.
    let stream = Rc::new(stream);
    *session.ws.borrow_mut() = Some(stream.clone());
    run_loop(session, &stream, &mut reader, heartbeat).await;
    session.ws.borrow_mut().take();
    session.dirty.set(false);
    // The flusher clones the socket only inside a synchronous write, so it is ours again.
    let stream = Rc::try_unwrap(stream).ok()?;
    Some(WsTransport { stream, reader })
}

async fn run_loop(
    session: &Rc<Session>,
    stream: &TcpStream,
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
        let flushed = match flush(stream, session) {
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

/// Writes as much of the queue as the socket takes without waiting. `Ok(true)`: all written.
pub(super) fn flush(stream: &TcpStream, session: &Session) -> io::Result<bool> {
    loop {
        let mut out = session.out.borrow_mut();
        if out.is_empty() {
            return Ok(true);
        }
        let written = {
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let n = out.slices(&mut slices);
            stream.try_write_vectored(&slices[..n])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Sends the close frame the reason calls for, flushes, and waits briefly for the client to
/// close its side, so that the last frames are not lost to a reset.
pub(super) async fn close(ws: WsTransport, session: &Session) {
    let mut stream = ws.stream;
    let reason = session.closing.get().unwrap_or(CloseReason::TransportClose);
    if matches!(reason, CloseReason::SlowConsumer) {
        return;
    }
    if let Some(code) = reason.ws_close_code() {
        session.out.borrow_mut().push_control(OutFrame::close(code));
    }
    let deadline = Instant::now() + CLOSE_LINGER;
    loop {
        match flush(&stream, session) {
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
    while let Ok(Ok(n)) = tokio::time::timeout_at(
        deadline,
        tokio::io::AsyncReadExt::read(&mut stream, &mut sink),
    )
    .await
    {
        if n == 0 {
            break;
        }
    }
}

/// Where the reader delivers what it decodes: the session, or a probing candidate.
trait FrameSink {
    /// Whether more frames are wanted (false once the session is closing).
    fn is_open(&self) -> bool;
    /// One complete data message.
    fn message(&mut self, text: bool, data: &[u8]) -> Result<(), CloseReason>;
    /// A control frame to send back (pong, close echo).
    fn control(&mut self, frame: OutFrame);
}

/// Delivers to an established session.
struct SessionSink<'a>(&'a Rc<Session>);

impl FrameSink for SessionSink<'_> {
    fn is_open(&self) -> bool {
        self.0.is_open()
    }

    fn message(&mut self, text: bool, data: &[u8]) -> Result<(), CloseReason> {
        deliver(self.0, text, data)
    }

    fn control(&mut self, frame: OutFrame) {
        self.0.out.borrow_mut().push_control(frame);
    }
}

/// Hands one complete WebSocket message to the Engine.IO layer.
fn deliver(session: &Rc<Session>, text: bool, data: &[u8]) -> Result<(), CloseReason> {
    if !text {
        return session.receive(Packet::Binary(data));
    }
    let text = std::str::from_utf8(data).map_err(|_| CloseReason::TransportError)?;
    let packet = engineio::decode_text(text).map_err(|_| CloseReason::ParseError)?;
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

    fn message(&mut self, text: bool, data: &[u8]) -> Result<(), CloseReason> {
        if self.upgraded {
            return deliver(self.session, text, data);
        }
        match (text, data) {
            (true, b"2probe") => {
                self.probed = true;
                self.replies.push(OutFrame::text(6, |b| {
                    engineio::encode_text(PacketType::Pong, "probe", b)
                }));
                Ok(())
            }
            (true, b"5") => {
                // From here the session is the WebSocket's: polling requests get 400, and the
                // pending GET (if any) returns a noop instead of packets.
                self.upgraded = true;
                self.session.transport.set(Transport::WebSocket);
                self.session.wake.notify_one();
                Ok(())
            }
            // Any other packet during the probe ends this candidate, not the session.
            _ => Err(CloseReason::TransportError),
        }
    }

    fn control(&mut self, frame: OutFrame) {
        if self.upgraded {
            self.session.out.borrow_mut().push_control(frame);
        } else {
            self.replies.push(frame);
        }
    }
}

/// Reads once, parsing frames straight out of the shard's scratch buffer. `Ok(true)` when the
/// read filled the buffer (more is probably waiting).
fn read_ready(
    stream: &TcpStream,
    reader: &mut Reader,
    sink: &mut impl FrameSink,
) -> Result<bool, CloseReason> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match stream.try_read(&mut scratch[..]) {
            Ok(0) => Err(CloseReason::TransportClose),
            Ok(n) => {
                reader.feed(&mut scratch[..n], sink)?;
                Ok(n == SCRATCH_LEN)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => Err(CloseReason::TransportError),
        }
    })
}

/// Incremental WebSocket frame reader of one connection.
struct Reader {
    /// An incomplete frame carried over to the next read; empty (no allocation) when idle.
    partial: Vec<u8>,
    /// A fragmented message being assembled: whether it is text, and its bytes so far.
    fragments: Option<(bool, Vec<u8>)>,
    max_payload: usize,
}

impl Reader {
    fn feed(&mut self, data: &mut [u8], sink: &mut impl FrameSink) -> Result<(), CloseReason> {
        if self.partial.is_empty() {
            let used = self.parse(data, sink)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.parse(&mut buf, sink)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
        }
        Ok(())
    }

    /// Handles every complete frame at the start of `buf`; returns the bytes consumed.
    fn parse(&mut self, buf: &mut [u8], sink: &mut impl FrameSink) -> Result<usize, CloseReason> {
        let mut pos = 0;
        while pos < buf.len() && sink.is_open() {
            let mut cursor = Cursor::new(&buf[pos..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(_) => return Err(CloseReason::TransportError),
            };
            let start = pos + cursor.position() as usize;
            let Some(mask) = header.mask else {
                return Err(CloseReason::TransportError); // clients must mask (RFC 6455 5.1)
            };
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(CloseReason::TransportError);
            }
            let is_control = matches!(header.opcode, OpCode::Control(_));
            if is_control && (len > 125 || !header.is_final) {
                return Err(CloseReason::TransportError);
            }
            let assembled = self.fragments.as_ref().map_or(0, |(_, f)| f.len());
            if !is_control && len.saturating_add(assembled as u64) > self.max_payload as u64 {
                return Err(CloseReason::MessageTooBig);
            }
            let end = start + len as usize;
            if end > buf.len() {
                break;
            }
            let payload = &mut buf[start..end];
            unmask(payload, mask);
            self.on_frame(header.opcode, header.is_final, payload, sink)?;
            pos = end;
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        sink: &mut impl FrameSink,
    ) -> Result<(), CloseReason> {
        match opcode {
            OpCode::Control(Control::Close) => {
                // Echo the client's code, then close.
                let code = match payload {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1000,
                };
                sink.control(OutFrame::close(code));
                Err(CloseReason::TransportClose)
            }
            OpCode::Control(Control::Ping) => {
                sink.control(OutFrame::pong(payload));
                Ok(())
            }
            OpCode::Control(Control::Pong) => Ok(()),
            OpCode::Data(Data::Continue) => {
                let Some((_, data)) = self.fragments.as_mut() else {
                    return Err(CloseReason::TransportError);
                };
                data.extend_from_slice(payload);
                if fin {
                    if let Some((text, data)) = self.fragments.take() {
                        sink.message(text, &data)?;
                    }
                }
                Ok(())
            }
            OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                if self.fragments.is_some() {
                    return Err(CloseReason::TransportError);
                }
                let text = kind == Data::Text;
                if fin {
                    sink.message(text, payload)
                } else {
                    self.fragments = Some((text, payload.to_vec()));
                    Ok(())
                }
            }
            _ => Err(CloseReason::TransportError),
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}
