//! HTTP/1.1 on a freshly accepted connection: read request heads (bounded size, bounded
//! time), route each request to the Engine.IO endpoint whose path it starts with.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engineio::{Engine, Handled};
use crate::protocol::http::{self, HeadError, RequestHead};

/// Largest request head accepted, in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// Time a client has to send a complete request head (also the keep-alive idle limit).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The endpoints of one shard, by path prefix.
pub struct Router {
    routes: Vec<(String, Rc<Engine>)>,
}

impl Router {
    pub fn new(routes: Vec<(String, Rc<Engine>)>) -> Self {
        Router { routes }
    }

    fn route(&self, path: &str) -> Option<&Rc<Engine>> {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, engine)| engine)
    }
}

/// Serves the requests of one connection until it closes or is taken over by a WebSocket.
pub async fn serve(router: Rc<Router>, mut stream: TcpStream, address: SocketAddr) {
    loop {
        let (head, leftover) = match read_head(&mut stream).await {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return,
            Err(status) => {
                let _ = respond(&mut stream, status, b"").await;
                return;
            }
        };
        match route(&router, stream, head, leftover, address).await {
            Some(s) => stream = s,
            None => return,
        }
    }
}

/// Serves a request whose head another shard already read, then the rest of the connection.
pub async fn serve_request(
    router: Rc<Router>,
    stream: TcpStream,
    address: SocketAddr,
    head: RequestHead,
    leftover: Vec<u8>,
) {
    if let Some(stream) = route(&router, stream, head, leftover, address).await {
        serve(router, stream, address).await;
    }
}

/// Serves one request; returns the connection when it may carry another.
async fn route(
    router: &Router,
    mut stream: TcpStream,
    head: RequestHead,
    leftover: Vec<u8>,
    address: SocketAddr,
) -> Option<TcpStream> {
    {
        let keep_alive = head.keep_alive();
        match router.route(&head.path) {
            Some(engine) => match engine.handle(stream, head, leftover, address).await {
                Handled::KeepAlive(s) => Some(s),
                Handled::Done => None,
            },
            None => {
                let ok = respond(&mut stream, 404, b"Not Found").await.is_ok();
                (ok && keep_alive).then_some(stream)
            }
        }
    }
}

/// Reads one request head. `Ok(None)`: the peer closed or went idle between requests.
/// `Err(status)`: the head was refused with that status.
async fn read_head(stream: &mut TcpStream) -> Result<Option<(RequestHead, Vec<u8>)>, u16> {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(n)) => n,
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(408),
        };
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_head(&buf, MAX_HEAD) {
            Ok(Some((head, used))) => return Ok(Some((head, buf.split_off(used)))),
            Ok(None) => {}
            Err(e @ (HeadError::Malformed | HeadError::TooLarge)) => return Err(e.status()),
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    let bytes = http::response(status, &[("Content-Type", "text/plain")], body);
    stream.write_all(&bytes).await
}
