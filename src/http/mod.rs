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

/// Serves the requests of one connection until it closes or is taken over (by a WebSocket, or
/// by the shard owning the session a request asks for).
pub async fn serve(router: Rc<Router>, stream: TcpStream, address: SocketAddr) {
    serve_from(router, stream, address, Vec::new()).await;
}

/// Serves a request whose head another shard already read, then the rest of the connection.
pub async fn serve_request(
    router: Rc<Router>,
    stream: TcpStream,
    address: SocketAddr,
    head: RequestHead,
    leftover: Vec<u8>,
) {
    if let Some(engine) = router.route(&head.path) {
        engine.ctx.engine.metrics().handoff_received();
    }
    if let Some((stream, rest)) = route(&router, stream, head, leftover, address).await {
        serve_from(router, stream, address, rest).await;
    }
}

/// The keep-alive loop; `buf` holds bytes of the next request already read.
async fn serve_from(
    router: Rc<Router>,
    mut stream: TcpStream,
    address: SocketAddr,
    mut buf: Vec<u8>,
) {
    loop {
        let (head, leftover) = match read_head(&mut stream, buf).await {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return,
            Err(status) => {
                let _ = respond(&mut stream, status, b"", false).await;
                return;
            }
        };
        match route(&router, stream, head, leftover, address).await {
            Some((s, rest)) => (stream, buf) = (s, rest),
            None => return,
        }
    }
}

/// Serves one request; returns the connection, and what was read of the next request, when
/// it may carry another.
async fn route(
    router: &Router,
    mut stream: TcpStream,
    head: RequestHead,
    leftover: Vec<u8>,
    address: SocketAddr,
) -> Option<(TcpStream, Vec<u8>)> {
    match router.route(&head.path) {
        Some(engine) => match engine.handle(stream, head, leftover, address).await {
            Handled::KeepAlive(s, rest) => Some((s, rest)),
            Handled::Done => None,
        },
        None => {
            // The body of a request to an unknown path is not read: only a bodiless request
            // leaves the connection reusable.
            let keep_alive =
                head.keep_alive() && matches!(head.body_framing(), Ok(http::BodyFraming::None));
            let ok = respond(&mut stream, 404, b"Not Found", keep_alive)
                .await
                .is_ok();
            (ok && keep_alive).then_some((stream, leftover))
        }
    }
}

/// Reads one request head, starting with the bytes in `buf`. `Ok(None)`: the peer closed or
/// went idle between requests. `Err(status)`: the head was refused with that status.
async fn read_head(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
) -> Result<Option<(RequestHead, Vec<u8>)>, u16> {
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        if !buf.is_empty() {
            match http::parse_head(&buf, MAX_HEAD) {
                Ok(Some((head, used))) => return Ok(Some((head, buf.split_off(used)))),
                Ok(None) => {}
                Err(e @ (HeadError::Malformed | HeadError::TooLarge)) => return Err(e.status()),
            }
        }
        // Read straight into the heap buffer: no stack chunk lives in the connection's task
        // while it waits (the task of a WebSocket connection is this same future).
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(408),
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    body: &[u8],
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type", "text/plain")];
    if !keep_alive {
        headers.push(("Connection", "close"));
    }
    let bytes = http::response(status, &headers, body);
    stream.write_all(&bytes).await
}
