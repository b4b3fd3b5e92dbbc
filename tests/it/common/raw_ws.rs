//! A WebSocket client that writes frames byte by byte (any bits, any mask, any length, broken
//! on purpose) and reads the server's frames as they are: for tests of the framing layer.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::WAIT;

/// The mask every frame of this client uses (any mask is valid).
pub(crate) const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CONTINUATION: u8 = 0x0;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xA;

/// A client frame: `first` is the first byte (FIN, RSV bits, opcode), masked with [`MASK`].
pub(crate) fn frame_bits(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A masked client frame with FIN set or not.
pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_bits(if fin { 0x80 } else { 0 } | opcode, payload)
}

/// A close frame with `code` and `reason`.
pub(crate) fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, CLOSE, &payload)
}

/// A server frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFrame {
    pub fin: bool,
    /// RSV1: a compressed message (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The status code of a close frame (`None`: the frame has none).
    pub(crate) fn close_code(&self) -> Option<u16> {
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A raw WebSocket connection after a `101`.
pub(crate) struct RawWs {
    pub stream: TcpStream,
    /// Bytes read and not parsed yet.
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens a WebSocket to `path_and_query`; panics unless the server answers `101`.
    pub(crate) fn connect(addr: SocketAddr, path_and_query: &str) -> RawWs {
        Self::try_connect(addr, path_and_query).expect("101 Switching Protocols")
    }

    /// Opens a WebSocket; `Err(head)` with the server's response head when it is not a `101`.
    pub(crate) fn try_connect(addr: SocketAddr, path_and_query: &str) -> Result<RawWs, String> {
        Self::try_connect_with(addr, path_and_query, "").map(|(ws, _)| ws)
    }

    /// Opens a WebSocket with `extra` header lines (each ending in CRLF) in the request; the
    /// connection and the `101` head, or `Err(head)` when the answer is not a `101`.
    pub(crate) fn try_connect_with(
        addr: SocketAddr,
        path_and_query: &str,
        extra: &str,
    ) -> Result<(RawWs, String), String> {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).expect("write upgrade");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(p) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if !ws.fill() {
                return Err(String::from_utf8_lossy(&ws.buf).into_owned());
            }
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        ws.buf.drain(..end);
        if head.starts_with("HTTP/1.1 101") {
            Ok((ws, head))
        } else {
            Err(head)
        }
    }

    /// Reads more; false on EOF or a reset; panics when nothing comes within [`WAIT`].
    fn fill(&mut self) -> bool {
        match self.try_fill() {
            Some(more) => more,
            None => panic!("nothing from the server within {WAIT:?}"),
        }
    }

    /// Reads more: `Some(false)` on EOF or a reset, `None` when nothing came within [`WAIT`].
    fn try_fill(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Some(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(_) => Some(false),
        }
    }

    /// Sends raw bytes; a server that already closed makes this a no-op (returns false).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next server frame; `None` once the connection ended.
    pub(crate) fn next_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Every frame until the server ends the connection, and whether it did end (false: it
    /// was still open, silent, after [`WAIT`]).
    pub(crate) fn frames_until_end(&mut self) -> (Vec<ServerFrame>, bool) {
        let mut frames = Vec::new();
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                frames.push(frame);
                continue;
            }
            match self.try_fill() {
                Some(true) => {}
                Some(false) => return (frames, true),
                None => return (frames, false),
            }
        }
    }
}

/// One unmasked server frame at the start of `buf`, and its length.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are never masked");
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = ServerFrame {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0F,
        payload,
    };
    Some((frame, at + len))
}
