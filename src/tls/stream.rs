//! One TLS connection after its handshake: rustls's `ServerConnection` over the tokio socket,
//! driven the way shardio drives plain sockets. Every layer above reads and writes through
//! `&self` without waiting (`try_read`, `try_write_vectored`, the flusher's hot path) and waits
//! on readiness apart (`readable`, `writable`), so the connection state sits in a `RefCell`,
//! borrowed only inside these synchronous calls (a shard is one thread).
//!
//! tokio-rustls does the handshake (`net::accept`); its stream type is not used after it,
//! because it is a `Pin<&mut>` poll API: it could not be shared by a session's task and the
//! shard's flusher, nor written without waiting.
//!
//! Bounds: rustls buffers at most 64 KiB of ciphertext to send (its default limit; a write
//! accepts what fits, and the caller waits for `writable` like on a full socket) and 16 KiB of
//! decrypted bytes received; reads are made only once those are taken. An idle connection
//! keeps rustls's 4 KiB read buffer.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TLS connection whose handshake is done.
#[derive(Debug)]
pub(crate) struct TlsStream {
    tcp: TcpStream,
    tls: RefCell<ServerConnection>,
}

/// The socket as rustls's blocking-style `Read` / `Write`: tokio's non-blocking `try_*`
/// calls, whose `WouldBlock` also clears the socket's readiness for the next wait.
struct Io<'a>(&'a TcpStream);

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// A connection whose handshake `tls` has completed on `tcp`.
    pub(crate) fn new(tcp: TcpStream, tls: ServerConnection) -> Self {
        TlsStream {
            tcp,
            tls: RefCell::new(tls),
        }
    }

    /// The parts, to move the connection to another thread.
    pub(crate) fn into_parts(self) -> (TcpStream, ServerConnection) {
        (self.tcp, self.tls.into_inner())
    }

    /// Writes the ciphertext rustls holds; `Ok(false)` when the socket is full first.
    fn send_pending(tls: &mut ServerConnection, tcp: &TcpStream) -> io::Result<bool> {
        while tls.wants_write() {
            match tls.write_tls(&mut Io(tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Decrypts what arrived, and sends what that produced (a key update's answer, an alert).
    fn process(tls: &mut ServerConnection, tcp: &TcpStream) -> io::Result<rustls::IoState> {
        let state = tls.process_new_packets();
        if tls.wants_write() {
            // Best effort: what does not fit goes with the next write.
            let _ = Self::send_pending(tls, tcp);
        }
        state.map_err(invalid)
    }

    /// Reads decrypted bytes without waiting. `Ok(0)`: the peer closed (with or without a
    /// `close_notify`); `WouldBlock`: wait for [`TlsStream::readable`].
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tls = self.tls.borrow_mut();
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A TCP close without `close_notify` (browsers do it): an end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // rustls reads into its own buffer: about one record per call.
            tls.read_tls(&mut Io(&self.tcp))?;
            Self::process(&mut tls, &self.tcp)?;
        }
    }

    /// Reads records until decrypted bytes are waiting, without taking them: `Ok(n)` bytes are
    /// waiting, `Ok(0)` the peer closed, `WouldBlock` nothing yet.
    pub(crate) fn try_fill(&self) -> io::Result<usize> {
        let mut tls = self.tls.borrow_mut();
        loop {
            let state = Self::process(&mut tls, &self.tcp)?;
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                return Ok(state.plaintext_bytes_to_read());
            }
            if tls.read_tls(&mut Io(&self.tcp))? == 0 {
                return Ok(Self::process(&mut tls, &self.tcp)?.plaintext_bytes_to_read());
            }
        }
    }

    /// Encrypts what fits of `bufs` (rustls's buffer limit) and sends what the socket takes.
    /// `WouldBlock` only when nothing could be taken: ciphertext of earlier writes is still
    /// waiting for the socket.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut tls = self.tls.borrow_mut();
        if !Self::send_pending(&mut tls, &self.tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.writer().write_vectored(bufs)?;
        // What the socket does not take now waits in rustls for the next write or flush.
        Self::send_pending(&mut tls, &self.tcp)?;
        Ok(n)
    }

    /// Sends the ciphertext still waiting; `Ok(true)` when none is left.
    pub(crate) fn try_flush(&self) -> io::Result<bool> {
        Self::send_pending(&mut self.tls.borrow_mut(), &self.tcp)
    }

    /// Waits until a read may find something: decrypted bytes already waiting, or the socket.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        let waiting = {
            let mut tls = self.tls.borrow_mut();
            // An error is "readable" too: the next read reports it.
            Self::process(&mut tls, &self.tcp).map_or(true, |s| {
                s.plaintext_bytes_to_read() > 0 || s.peer_has_closed()
            })
        };
        if waiting {
            return Ok(());
        }
        self.tcp.readable().await
    }

    /// Waits until the socket takes more.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write_vectored(&[IoSlice::new(buf)]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.try_flush()? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    /// Sends `close_notify`, flushes, then shuts the socket's write side.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Idempotent: rustls queues the alert once.
        self.tls.get_mut().send_close_notify();
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
