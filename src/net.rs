//! The one connection type of every layer: an accepted TCP connection, plain or TLS. Each
//! layer reads and writes it as it did a `TcpStream`: HTTP through `AsyncRead`/`AsyncWrite`
//! (`connection.rs`), WebSocket frames by readiness and non-blocking calls on `&self`
//! (`try_read`, `try_write_vectored` from the shard's flusher). On the plain path every call
//! is the socket's own behind one branch on the variant; the TLS variant is boxed, so a plain
//! connection is no larger than its socket plus that tag.
//!
//! A connection handed to the shard that owns its session ([`Detached`]) travels with its TLS
//! state: rustls's `ServerConnection` is `Send`, so the owner decrypts from where the
//! accepting shard stopped (docs/ARCHITECTURE.md, "Hand-off").

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::TlsStream;

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A connection taken off its shard's runtime, to be adopted by another shard.
#[derive(Debug)]
pub(crate) struct Detached {
    tcp: std::net::TcpStream,
    tls: Option<Box<ServerConnection>>,
}

/// Runs the TLS handshake of `tcp` within `timeout` (tokio-rustls), keeping the rustls state
/// for the connection. `None`: not TLS, no common protocol or cipher (or ALPN protocol), a bad
/// record, or too slow; rustls has sent its alert, and the connection is dropped.
pub(crate) async fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
) -> Option<Stream> {
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(tls)) => {
            let (tcp, conn) = tls.into_inner();
            Some(Stream::Tls(Box::new(TlsStream::new(tcp, conn))))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?timeout, "TLS handshake timed out");
            None
        }
    }
}

impl Stream {
    /// Reads without waiting; `WouldBlock` when nothing is there.
    #[inline]
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_read(buf),
            Stream::Tls(tls) => tls.try_read(buf),
        }
    }

    /// Writes what the connection takes now (one `writev` on the plain path); `WouldBlock`
    /// when it takes nothing.
    #[inline]
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.try_write_vectored(bufs),
            Stream::Tls(tls) => tls.try_write_vectored(bufs),
        }
    }

    /// Sends what earlier writes left buffered (TLS records the socket did not take);
    /// `Ok(true)` when nothing is left. A plain socket buffers nothing of its own.
    #[inline]
    pub(crate) fn try_flush(&self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(tls) => tls.try_flush(),
        }
    }

    /// Waits until a read may find something.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.readable().await,
            Stream::Tls(tls) => tls.readable().await,
        }
    }

    /// Waits until the connection takes more.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.writable().await,
            Stream::Tls(tls) => tls.writable().await,
        }
    }

    /// Waits until the peer sends something or closes, and reads nothing of it: `Ok(0)` when
    /// it closed. (A long poll watches this to see a client give up.)
    pub(crate) async fn sent_or_closed(&self) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.peek(&mut [0u8; 1]).await,
            Stream::Tls(tls) => loop {
                tls.readable().await?;
                match tls.try_fill() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    filled => return filled,
                }
            },
        }
    }

    /// Takes the connection off this thread's runtime, with its TLS state.
    pub(crate) fn detach(self) -> io::Result<Detached> {
        match self {
            Stream::Plain(tcp) => Ok(Detached {
                tcp: tcp.into_std()?,
                tls: None,
            }),
            Stream::Tls(tls) => {
                let (tcp, conn) = tls.into_parts();
                Ok(Detached {
                    tcp: tcp.into_std()?,
                    tls: Some(Box::new(conn)),
                })
            }
        }
    }

    /// Registers a detached connection with this thread's runtime.
    pub(crate) fn adopt(detached: Detached) -> io::Result<Stream> {
        let tcp = TcpStream::from_std(detached.tcp)?;
        Ok(match detached.tls {
            None => Stream::Plain(tcp),
            Some(conn) => Stream::Tls(Box::new(TlsStream::new(tcp, *conn))),
        })
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TLS connection over loopback for unit tests: shardio's end and a tokio-rustls client,
/// with small socket buffers so that a write of a few hundred KiB fills them.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use tokio::net::{TcpListener, TcpSocket};

    use super::{accept_tls, Stream};
    use crate::tls::Certificates;

    /// Socket buffer sizes of both ends (the kernel doubles them).
    const BUFFER: u32 = 16 * 1024;

    pub(crate) async fn tls_pair() -> (
        Stream,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let dir = std::env::temp_dir().join(format!(
            "shardio-unit-tls-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("a directory");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write");
        let certificates = Certificates::load(&cert, &key).expect("loads");
        let _ = std::fs::remove_dir_all(&dir);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).expect("a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(BUFFER).expect("SO_RCVBUF");
        let (client, accepted) = tokio::join!(
            socket.connect(listener.local_addr().expect("address")),
            listener.accept()
        );
        let (tcp, _) = accepted.expect("accept");
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(BUFFER as usize)
            .expect("SO_SNDBUF");
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = ServerName::try_from("localhost").expect("a name");
        let timeout = std::time::Duration::from_secs(5);
        let (server, client) = tokio::join!(
            accept_tls(tcp, certificates.server_config(), timeout),
            connector.connect(name, client.expect("connect"))
        );
        (server.expect("handshake"), client.expect("handshake"))
    }
}
