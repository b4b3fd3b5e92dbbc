//! The WebSocket transport: upgrade response, frame reader and batching writer of one session.
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

use super::{CloseReason, Engine, Message, OutFrame, RequestInfo, Session};
use crate::protocol::engineio::{self, Packet, PacketType};

/// Size of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;
/// Frames gathered into one `writev`.
const WRITE_BATCH: usize = 64;
/// How long a closing connection may take to flush its last frames and see the client's close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Answers the upgrade, opens the session, and runs it until it closes.
pub(super) async fn open(
    engine: &Rc<Engine>,
    mut stream: TcpStream,
    key: &str,
    request: RequestInfo,
    leftover: Vec<u8>,
) {
    let session = engine.open_session(request);
    let cfg = &engine.config;
    let open = engineio::open_packet(
        session.sid().as_str(),
        &[],
        cfg.ping_interval.as_millis() as u64,
        cfg.ping_timeout.as_millis() as u64,
        cfg.max_payload as u64,
    );
    let open = OutFrame::text(open.len(), |b| b.extend_from_slice(open.as_bytes()));
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    // The open packet rides in the same write as the 101.
    response.extend_from_slice(open.wire());
    if stream.write_all(&response).await.is_ok() {
        engine.attach(&session);
        run(engine, &stream, &session, leftover).await;
        close_transport(stream, &session).await;
    } else {
        session.close(CloseReason::TransportError);
    }
    engine.ctx.engine.finish(&session);
}

/// The session's loop: read, write, heartbeat, until the session is asked to close.
async fn run(engine: &Rc<Engine>, stream: &TcpStream, session: &Rc<Session>, leftover: Vec<u8>) {
    let cfg = &engine.config;
    let mut reader = Reader {
        partial: Vec::new(),
        fragments: None,
        max_payload: cfg.max_payload,
        pong: false,
    };
    if !leftover.is_empty() {
        let mut leftover = leftover;
        if let Err(reason) = reader.feed(&mut leftover, session) {
            session.close(reason);
        }
    }
    let mut awaiting_pong = false;
    let sleep = tokio::time::sleep(cfg.ping_interval);
    tokio::pin!(sleep);
    loop {
        if reader.pong {
            reader.pong = false;
            if awaiting_pong {
                // Node re-arms the interval from the moment the pong arrives.
                awaiting_pong = false;
                sleep.as_mut().reset(Instant::now() + cfg.ping_interval);
            }
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
                    .and_then(|()| read_ready(stream, &mut reader, session));
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
            _ = &mut sleep => {
                if awaiting_pong {
                    session.close(CloseReason::PingTimeout);
                } else {
                    awaiting_pong = true;
                    let _ = session.send(&[ping_frame()]);
                    sleep.as_mut().reset(Instant::now() + cfg.ping_timeout);
                }
            }
        }
    }
}

fn ping_frame() -> OutFrame {
    thread_local! {
        static PING: OutFrame = OutFrame::text(1, |b| b.push(PacketType::Ping.digit()));
    }
    PING.with(OutFrame::clone)
}

/// Writes as much of the queue as the socket takes without waiting. `Ok(true)`: all written.
fn flush(stream: &TcpStream, session: &Session) -> io::Result<bool> {
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
async fn close_transport(mut stream: TcpStream, session: &Session) {
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

/// Reads once, parsing frames straight out of the shard's scratch buffer. `Ok(true)` when the
/// read filled the buffer (more is probably waiting).
fn read_ready(
    stream: &TcpStream,
    reader: &mut Reader,
    session: &Rc<Session>,
) -> Result<bool, CloseReason> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        match stream.try_read(&mut scratch[..]) {
            Ok(0) => Err(CloseReason::TransportClose),
            Ok(n) => {
                reader.feed(&mut scratch[..n], session)?;
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
    /// Set when an Engine.IO pong arrived.
    pong: bool,
}

impl Reader {
    fn feed(&mut self, data: &mut [u8], session: &Rc<Session>) -> Result<(), CloseReason> {
        if self.partial.is_empty() {
            let used = self.parse(data, session)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.parse(&mut buf, session)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
        }
        Ok(())
    }

    /// Handles every complete frame at the start of `buf`; returns the bytes consumed.
    fn parse(&mut self, buf: &mut [u8], session: &Rc<Session>) -> Result<usize, CloseReason> {
        let mut pos = 0;
        while pos < buf.len() && session.is_open() {
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
            self.on_frame(header.opcode, header.is_final, payload, session)?;
            pos = end;
        }
        Ok(pos)
    }

    fn on_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        session: &Rc<Session>,
    ) -> Result<(), CloseReason> {
        match opcode {
            OpCode::Control(Control::Close) => {
                // Echo the client's code, then close.
                let code = match payload {
                    [a, b, ..] => u16::from_be_bytes([*a, *b]),
                    _ => 1000,
                };
                session.out.borrow_mut().push_control(OutFrame::close(code));
                Err(CloseReason::TransportClose)
            }
            OpCode::Control(Control::Ping) => {
                session
                    .out
                    .borrow_mut()
                    .push_control(OutFrame::pong(payload));
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
                        self.deliver(text, &data, session)?;
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
                    self.deliver(text, payload, session)
                } else {
                    self.fragments = Some((text, payload.to_vec()));
                    Ok(())
                }
            }
            _ => Err(CloseReason::TransportError),
        }
    }

    /// Hands one complete message to the Engine.IO layer.
    fn deliver(
        &mut self,
        text: bool,
        data: &[u8],
        session: &Rc<Session>,
    ) -> Result<(), CloseReason> {
        if !text {
            session.dispatch(Message::Binary(data));
            return Ok(());
        }
        let text = std::str::from_utf8(data).map_err(|_| CloseReason::TransportError)?;
        match engineio::decode_text(text) {
            Ok(Packet::Text(PacketType::Message, data)) => session.dispatch(Message::Text(data)),
            Ok(Packet::Text(PacketType::Pong, _)) => self.pong = true,
            // v4: only the server pings ("invalid heartbeat direction").
            Ok(Packet::Text(PacketType::Ping, _)) => return Err(CloseReason::ParseError),
            Ok(Packet::Text(PacketType::Close, _)) => return Err(CloseReason::TransportClose),
            Ok(_) => {}
            Err(_) => return Err(CloseReason::ParseError),
        }
        Ok(())
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}
