//! A lean Socket.IO-over-WebSocket client: one TCP stream (TLS over it for `https://`), a
//! hand-written upgrade, masked frames out, batched writes (callers queue packets, then flush
//! once).
//!
//! It answers Engine.IO pings by itself while draining, so a connection stays alive as long as
//! its owner keeps reading.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::deflate::{self, Compression, Deflate};
use crate::sio::{self, SioPacket};
use crate::tls::{self, Stream};
use crate::ws::{self, FrameError};

/// Why a connection failed or ended. Every variant is counted by the scenarios, never fatal:
/// a misbehaving server must show up in the report, not crash the generator.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// TCP connect (or bind to a source address) failed.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// Reading or writing an established stream failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The upgrade was answered with another status than 101.
    #[error("upgrade answered HTTP {0}")]
    HttpStatus(u16),
    /// The upgrade response was not HTTP, or its head was too large.
    #[error("malformed upgrade response")]
    BadHttp,
    /// A frame no server may send.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The server closed the stream (EOF, WebSocket close or Engine.IO close).
    #[error("closed by the server")]
    Closed,
    /// The namespace CONNECT was refused with this body.
    #[error("connect refused: {0}")]
    Refused(String),
    /// A step did not finish in time.
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// A short stable name for error tallies in reports.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect",
            ClientError::Io(_) => "io",
            ClientError::HttpStatus(_) => "http_status",
            ClientError::BadHttp => "bad_http",
            ClientError::Frame(_) => "frame",
            ClientError::Closed => "closed",
            ClientError::Refused(_) => "refused",
            ClientError::Timeout => "timeout",
        }
    }
}

/// Where to connect: the resolved address, the Host header, TLS for `https://`, and whether
/// to offer WebSocket compression.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub compression: Compression,
}

impl Target {
    /// Accepts `http://host:port`, `ws://host:port` or `host:port`, and `https://` or
    /// `wss://` with `tls_insecure` (a path is ignored: the Socket.IO path is always
    /// `/socket.io/`).
    pub(crate) fn parse(url: &str, tls_insecure: bool) -> anyhow::Result<Target> {
        let secure = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("wss://"));
        let tls = match (secure.is_some(), tls_insecure) {
            (true, true) => Some(tls::insecure_config()),
            (false, false) => None,
            (true, false) => anyhow::bail!(
                "{url}: TLS needs --tls-insecure (the generator verifies no certificate chain)"
            ),
            (false, true) => anyhow::bail!("{url}: --tls-insecure needs an https:// URL"),
        };
        let rest = secure
            .or_else(|| url.strip_prefix("http://"))
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        let host = rest.split('/').next().unwrap_or(rest).to_string();
        let addr = host
            .to_socket_addrs()
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{url}: no address"))?;
        Ok(Target {
            addr,
            host,
            tls,
            compression: Compression::Off,
        })
    }
}

/// Source addresses to spread client sockets over, taken round robin (each gives about 28k
/// ephemeral ports towards one server address).
#[derive(Debug, Default)]
pub(crate) struct Sources {
    addrs: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    pub(crate) fn new(addrs: Vec<IpAddr>) -> Sources {
        Sources {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> Option<IpAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len();
        Some(self.addrs[i])
    }
}

/// How much a connection reads per syscall: large for busy subscribers, small for the tens of
/// thousands of idle connections of `idle` and `connect` (the buffer grows if a frame needs it).
pub(crate) const READ_BUSY: usize = 32 * 1024;
pub(crate) const READ_IDLE: usize = 1024;

/// The longest HTTP response head accepted for the upgrade.
const MAX_HEAD: usize = 16 * 1024;

pub(crate) struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    /// Start of the unparsed bytes in `rbuf`.
    rpos: usize,
    read_chunk: usize,
    /// Frames queued for the next [`Conn::flush`].
    wbuf: Vec<u8>,
    /// Payload of a fragmented message being reassembled.
    frag: Vec<u8>,
    frag_open: bool,
    frag_is_text: bool,
    frag_compressed: bool,
    /// Scratch space for one packet before it is framed.
    scratch: Vec<u8>,
    /// permessage-deflate, when the server agreed to it.
    deflate: Option<Deflate>,
    /// A compressed message, inflated.
    inflated: Vec<u8>,
    rng: u32,
    opened: bool,
}

impl Conn {
    /// TCP connect, WebSocket upgrade, Engine.IO open and Socket.IO CONNECT to `/`: the
    /// connection is usable when this returns.
    pub(crate) async fn open(
        target: &Target,
        sources: &Sources,
        read_chunk: usize,
        timeout: Duration,
    ) -> Result<Conn, ClientError> {
        tokio::time::timeout(timeout, Self::open_inner(target, sources, read_chunk))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn open_inner(
        target: &Target,
        sources: &Sources,
        read_chunk: usize,
    ) -> Result<Conn, ClientError> {
        let tcp = connect_tcp(target.addr, sources.pick())
            .await
            .map_err(ClientError::Connect)?;
        let stream = Stream::open(tcp, target.tls.as_ref(), &target.host)
            .await
            .map_err(ClientError::Connect)?;
        let seed = u32::from(stream.local_port()).wrapping_mul(2_654_435_761) | 1;
        let mut c = Conn {
            stream,
            rbuf: Vec::new(),
            rpos: 0,
            read_chunk,
            wbuf: sio::upgrade_request(
                &target.host,
                if target.compression == Compression::Off {
                    ""
                } else {
                    deflate::OFFER
                },
            ),
            frag: Vec::new(),
            frag_open: false,
            frag_is_text: false,
            frag_compressed: false,
            scratch: Vec::new(),
            deflate: None,
            inflated: Vec::new(),
            rng: seed,
            opened: false,
        };
        c.flush().await?;
        loop {
            c.read_some().await?;
            match sio::parse_response_head(c.unread()) {
                Ok(Some((101, len))) => {
                    c.deflate = Deflate::from_response(&c.unread()[..len], target.compression);
                    c.rpos += len;
                    break;
                }
                Ok(Some((code, _))) => return Err(ClientError::HttpStatus(code)),
                Ok(None) if c.unread().len() < MAX_HEAD => {}
                _ => return Err(ClientError::BadHttp),
            }
        }
        // Frames may have come with the head: drain before reading more.
        c.drain(|_| {})?;
        while !c.opened {
            c.read_some().await?;
            c.drain(|_| {})?;
        }
        c.queue_sio(|p| p.push(b'0'));
        c.flush().await?;
        let mut outcome: Option<Result<(), ClientError>> = None;
        while outcome.is_none() {
            c.read_some().await?;
            c.drain(|p| match sio::parse_sio(p) {
                SioPacket::Connect => outcome = Some(Ok(())),
                SioPacket::ConnectError(body) => {
                    outcome = Some(Err(ClientError::Refused(
                        String::from_utf8_lossy(body).into_owned(),
                    )))
                }
                _ => {}
            })?;
        }
        if c.has_pending() {
            c.flush().await?;
        }
        outcome.unwrap_or(Err(ClientError::Closed))?;
        Ok(c)
    }

    fn unread(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Reads what the socket has (at least one byte). EOF is [`ClientError::Closed`].
    /// Cancel-safe: nothing is lost if the future is dropped before it completes.
    pub(crate) async fn read_some(&mut self) -> Result<(), ClientError> {
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        } else if self.rpos > 0 && self.rbuf.capacity() - self.rbuf.len() < self.read_chunk {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        self.rbuf.reserve(self.read_chunk);
        match self.stream.read_buf(&mut self.rbuf).await? {
            0 => Err(ClientError::Closed),
            _ => Ok(()),
        }
    }

    /// Decodes every complete frame read so far and hands each Socket.IO packet (the bytes
    /// after the Engine.IO `4`) to `on_packet`. Pings are answered by queueing a pong: call
    /// [`Conn::flush`] afterwards when [`Conn::has_pending`] says so.
    pub(crate) fn drain(&mut self, mut on_packet: impl FnMut(&[u8])) -> Result<(), ClientError> {
        loop {
            let Some(frame) = ws::parse_frame(&self.rbuf[self.rpos..])? else {
                return Ok(());
            };
            let (start, end) = (self.rpos + frame.payload.0, self.rpos + frame.payload.1);
            self.rpos += frame.payload.1;
            let first_data = matches!(frame.opcode, ws::OP_TEXT | ws::OP_BINARY);
            if frame.rsv1 && (self.deflate.is_none() || !first_data) {
                return Err(FrameError::BadHeader(0x40 | frame.opcode).into());
            }
            match frame.opcode {
                ws::OP_TEXT if frame.fin && !self.frag_open && frame.rsv1 => {
                    let mut msg = std::mem::take(&mut self.inflated);
                    let Conn {
                        rbuf,
                        wbuf,
                        rng,
                        opened,
                        deflate,
                        ..
                    } = self;
                    let r = match deflate {
                        Some(d) => d.inflate(&rbuf[start..end], &mut msg).map_err(Into::into),
                        None => Err(FrameError::BadHeader(0xC1).into()),
                    }
                    .and_then(|()| on_engineio(&msg, wbuf, rng, opened, &mut on_packet));
                    self.inflated = msg;
                    r?;
                }
                ws::OP_TEXT if frame.fin && !self.frag_open => {
                    let Conn {
                        rbuf,
                        wbuf,
                        rng,
                        opened,
                        ..
                    } = self;
                    on_engineio(&rbuf[start..end], wbuf, rng, opened, &mut on_packet)?;
                }
                ws::OP_TEXT | ws::OP_BINARY if !self.frag_open => {
                    // A binary message would be a Socket.IO attachment, which the gateway
                    // benchmark never sends: ignored. A fragmented one starts reassembly.
                    if !frame.fin {
                        self.frag_open = true;
                        self.frag_compressed = frame.rsv1;
                        self.frag_is_text = frame.opcode == ws::OP_TEXT;
                        self.frag.clear();
                        if self.frag_is_text {
                            self.frag.extend_from_slice(&self.rbuf[start..end]);
                        }
                    }
                }
                ws::OP_CONTINUATION if self.frag_open => {
                    if self.frag_is_text {
                        self.frag.extend_from_slice(&self.rbuf[start..end]);
                        if self.frag.len() as u64 > ws::MAX_FRAME {
                            return Err(FrameError::TooLarge(self.frag.len() as u64).into());
                        }
                    }
                    if frame.fin {
                        self.frag_open = false;
                        if self.frag_is_text {
                            let mut msg = std::mem::take(&mut self.frag);
                            if self.frag_compressed {
                                if let Some(d) = self.deflate.as_mut() {
                                    d.inflate(&msg, &mut self.inflated)?;
                                    std::mem::swap(&mut msg, &mut self.inflated);
                                }
                            }
                            let Conn {
                                wbuf, rng, opened, ..
                            } = self;
                            let r = on_engineio(&msg, wbuf, rng, opened, &mut on_packet);
                            self.frag = msg;
                            r?;
                        }
                    }
                }
                ws::OP_PING => {
                    let mask = next_mask(&mut self.rng);
                    let Conn { rbuf, wbuf, .. } = self;
                    ws::encode_frame(wbuf, ws::OP_PONG, &rbuf[start..end], mask);
                }
                ws::OP_PONG => {}
                ws::OP_CLOSE => return Err(ClientError::Closed),
                // A data frame inside a fragmented message, or a stray continuation.
                _ => return Err(FrameError::BadHeader(frame.opcode).into()),
            }
        }
    }

    /// Queues one Socket.IO packet, written by `build` after the Engine.IO `4`.
    pub(crate) fn queue_sio(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        self.scratch.clear();
        self.scratch.push(b'4');
        build(&mut self.scratch);
        let mask = next_mask(&mut self.rng);
        if self.deflate.as_ref().is_some_and(Deflate::compresses) {
            let mut compressed = Vec::new();
            deflate::compress(&self.scratch, &mut compressed);
            ws::encode_frame(&mut self.wbuf, ws::OP_TEXT | ws::RSV1, &compressed, mask);
        } else {
            ws::encode_frame(&mut self.wbuf, ws::OP_TEXT, &self.scratch, mask);
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Writes every queued frame in one go.
    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        self.stream.write_all(&self.wbuf).await?;
        // TLS: the last record may wait in rustls (a no-op on plain TCP).
        self.stream.flush().await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Emits an event with ack id `ack_id` and waits for that ack, answering pings meanwhile.
    /// Returns whether the ack said `{"ok":true}`. Other packets that arrive are dropped.
    pub(crate) async fn request(
        &mut self,
        ack_id: u64,
        build: impl FnOnce(&mut Vec<u8>),
    ) -> Result<bool, ClientError> {
        self.queue_sio(build);
        self.flush().await?;
        loop {
            self.read_some().await?;
            let mut answer = None;
            self.drain(|p| {
                if let SioPacket::Ack { id, body } = sio::parse_sio(p) {
                    if id == ack_id {
                        answer = Some(sio::ack_is_ok(body));
                    }
                }
            })?;
            if self.has_pending() {
                self.flush().await?;
            }
            if let Some(ok) = answer {
                return Ok(ok);
            }
        }
    }

    /// Keeps the connection alive (pings answered) until `stop` fires or the server ends it.
    pub(crate) async fn hold(
        mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ClientError> {
        loop {
            tokio::select! {
                r = self.read_some() => r?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
            self.drain(|_| {})?;
            if self.has_pending() {
                self.flush().await?;
            }
        }
    }
}

/// Handles one Engine.IO text packet.
fn on_engineio(
    pkt: &[u8],
    wbuf: &mut Vec<u8>,
    rng: &mut u32,
    opened: &mut bool,
    on_packet: &mut impl FnMut(&[u8]),
) -> Result<(), ClientError> {
    match pkt.first() {
        Some(b'4') => on_packet(&pkt[1..]),
        Some(b'2') => {
            // v4: the server pings, the client answers `3` (docs/PROTOCOL.md §1.6).
            let mask = next_mask(rng);
            ws::encode_frame(wbuf, ws::OP_TEXT, b"3", mask);
        }
        Some(b'0') => *opened = true,
        Some(b'1') => return Err(ClientError::Closed),
        _ => {}
    }
    Ok(())
}

/// xorshift32: a fresh mask key per frame for the cost of three shifts.
fn next_mask(state: &mut u32) -> [u8; 4] {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x.to_ne_bytes()
}

async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    sock.set_nodelay(true)?;
    sock.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An unmasked server frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode, payload.len() as u8];
        f.extend_from_slice(payload);
        f
    }

    /// Reads one masked client frame and returns (opcode, unmasked payload).
    async fn read_client_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        assert_ne!(head[1] & 0x80, 0, "client frames are masked");
        let len = usize::from(head[1] & 0x7F);
        assert!(len < 126);
        let mut mask = [0u8; 4];
        s.read_exact(&mut mask).await.unwrap();
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        ws::apply_mask(&mut payload, mask);
        (head[0] & 0x0F, payload)
    }

    async fn read_request_head(s: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        String::from_utf8(head).unwrap()
    }

    async fn listener() -> (TcpListener, Target) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, Target::parse(&format!("http://{addr}"), false).unwrap())
    }

    #[tokio::test]
    async fn handshake_pings_and_fragments_as_a_server_sends_them() {
        let (l, target) = listener().await;
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let head = read_request_head(&mut s).await;
            assert!(head.starts_with("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"));
            // The head and the first frames in one write, the open packet split over two.
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            let open = frame(
                true,
                ws::OP_TEXT,
                br#"0{"sid":"abc","upgrades":[],"pingInterval":25000}"#,
            );
            out.extend_from_slice(&open[..10]);
            s.write_all(&out).await.unwrap();
            s.write_all(&open[10..]).await.unwrap();
            assert_eq!(
                read_client_frame(&mut s).await,
                (ws::OP_TEXT, b"40".to_vec())
            );
            s.write_all(&frame(true, ws::OP_TEXT, br#"40{"sid":"xyz"}"#))
                .await
                .unwrap();
            // An Engine.IO ping, a WebSocket ping, a fragmented delivery, then close.
            let mut out = frame(true, ws::OP_TEXT, b"2");
            out.extend(frame(true, ws::OP_PING, b"hi"));
            out.extend(frame(false, ws::OP_TEXT, br#"42["bench",[1,"#));
            out.extend(frame(true, ws::OP_CONTINUATION, br#"7,99]]"#));
            s.write_all(&out).await.unwrap();
            assert_eq!(
                read_client_frame(&mut s).await,
                (ws::OP_TEXT, b"3".to_vec())
            );
            assert_eq!(
                read_client_frame(&mut s).await,
                (ws::OP_PONG, b"hi".to_vec())
            );
            s.write_all(&frame(true, ws::OP_CLOSE, b"")).await.unwrap();
        });
        let mut c = Conn::open(
            &target,
            &Sources::default(),
            READ_IDLE,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let end = loop {
            if let Err(e) = c.read_some().await {
                break e;
            }
            let r = c.drain(|p| got.push(p.to_vec()));
            if c.has_pending() {
                c.flush().await.unwrap();
            }
            if let Err(e) = r {
                break e;
            }
        };
        assert!(matches!(end, ClientError::Closed), "{end}");
        assert_eq!(got, vec![br#"2["bench",[1,7,99]]"#.to_vec()]);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn misbehaving_servers_are_errors_not_panics() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                "http_status",
            ),
            (b"\x00\x01garbage\r\n\r\n", "bad_http"),
            (b"HTTP/1.1 101 OK\r\n\r\n\x81\x82abcd12", "frame"),
            (b"HTTP/1.1 101 OK\r\n\r\n\x81\x024{", "closed"),
        ];
        for (reply, kind) in cases {
            let (l, target) = listener().await;
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                read_request_head(&mut s).await;
                s.write_all(reply).await.unwrap();
                // Then hang up: a client still waiting sees EOF.
            });
            let r = Conn::open(
                &target,
                &Sources::default(),
                READ_IDLE,
                Duration::from_secs(5),
            )
            .await;
            let e = r.err().expect("the handshake must fail");
            assert_eq!(e.kind(), kind, "{e}");
            server.await.unwrap();
        }
    }
}
