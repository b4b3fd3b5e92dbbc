//! The connections of one shard: read each request head, route it to the endpoint whose path
//! it starts with, and go on with the next request of the connection until it closes or is
//! taken over (by a WebSocket, or by the shard owning the session a request asks for).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::TcpStream;

use super::assets::Assets;
use crate::api::{self, Api};
use crate::bus::Handoff;
use crate::connection;
use crate::engineio::{Engine, EngineShard, Handled};
use crate::net::{self, Stream};
use crate::ops::Ops;
use crate::protocol::http::{BodyFraming, Refusal, RequestHead};

/// The endpoints of one listener of a shard, by path prefix, the fixed files it answers
/// itself, the backend API when it is served there, and the operator's endpoints.
pub(super) struct Router {
    routes: Vec<(String, Rc<Engine>)>,
    api: Option<Rc<Api>>,
    ops: Ops,
    /// Answered before the endpoints: the client bundle under their paths, the pages.
    assets: Assets,
    /// The shard's Engine.IO state: its HTTP limits, counters (connection tasks among them),
    /// and panic boundary.
    shard: Rc<EngineShard>,
    /// TLS on this listener (`--tls-cert`): every connection starts with a handshake.
    tls: Option<Arc<ServerConfig>>,
}

impl Router {
    pub(super) fn new(
        routes: Vec<(String, Rc<Engine>)>,
        api: Option<Rc<Api>>,
        ops: Ops,
        shard: Rc<EngineShard>,
        tls: Option<Arc<ServerConfig>>,
    ) -> Self {
        Router {
            routes,
            api,
            ops,
            assets: Assets::default(),
            shard,
            tls,
        }
    }

    /// The router with these fixed files.
    pub(super) fn with_assets(mut self, assets: Assets) -> Self {
        self.assets = assets;
        self
    }

    /// The connection, after its TLS handshake when this listener has TLS; `None` (counted)
    /// when the handshake fails or does not finish within `--head-timeout`.
    async fn secure(&self, tcp: TcpStream) -> Option<Stream> {
        let Some(config) = &self.tls else {
            return Some(Stream::Plain(tcp));
        };
        // Boxed: a plain connection's task does not carry the handshake's state.
        let accepting = net::accept_tls(tcp, config.clone(), self.shard.http.head_timeout);
        let secured = Box::pin(accepting).await;
        self.shard.metrics().tls_handshake(secured.is_some());
        secured
    }

    fn route(&self, path: &str) -> Option<&Rc<Engine>> {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, engine)| engine)
    }
}

/// Serves the requests of a freshly accepted connection: the task of the connection. A panic
/// while serving it is caught here (logged, counted) and drops the connection only.
pub(super) async fn serve(router: Rc<Router>, tcp: TcpStream, address: SocketAddr) {
    let _task = router.shard.connection_task();
    let shard = router.shard.clone();
    let serving = async move {
        if let Some(stream) = router.secure(tcp).await {
            serve_from(router, stream, address, Vec::new()).await;
        }
    };
    shard.contain("connection", serving).await;
}

/// Continues serving a connection another shard handed over: its request, whose head that
/// shard already read, then the rest of the connection.
pub(super) fn serve_handoff(router: &Rc<Router>, handoff: Handoff) {
    let Handoff {
        stream,
        head,
        leftover,
        address,
    } = handoff;
    match Stream::adopt(stream) {
        Ok(stream) => {
            if let Some(engine) = router.route(&head.path) {
                engine.shard.metrics().handoff_received();
            }
            let serving = serve_request(router.clone(), stream, address, head, leftover);
            let shard = router.shard.clone();
            tokio::task::spawn_local(async move { shard.contain("connection", serving).await });
        }
        Err(e) => tracing::warn!(error = %e, "could not adopt a handed-over connection"),
    }
}

async fn serve_request(
    router: Rc<Router>,
    stream: Stream,
    address: SocketAddr,
    head: RequestHead,
    leftover: Vec<u8>,
) {
    let _task = router.shard.connection_task();
    if let Some((stream, rest)) = route(&router, stream, head, leftover, address).await {
        serve_from(router, stream, address, rest).await;
    }
}

/// The keep-alive loop; `buf` holds bytes of the next request already read.
async fn serve_from(router: Rc<Router>, mut stream: Stream, address: SocketAddr, mut buf: Vec<u8>) {
    loop {
        let (head, leftover) =
            match connection::read_head(&mut stream, buf, &router.shard.http).await {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return,
                Err(refusal) => {
                    router.shard.metrics().refused(refusal);
                    connection::refuse(&mut stream, refusal, false).await;
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
    mut stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
    address: SocketAddr,
) -> Option<(Stream, Vec<u8>)> {
    if router.ops.serves(&head.path) {
        return router.ops.handle(stream, head, leftover).await;
    }
    // Exact paths first: the bundle's files lie under the Engine.IO endpoint's prefix.
    if let Some(asset) = router.assets.get(&head.path) {
        // Boxed: the connection's task (this future) stays the size the endpoints need.
        let kept = Box::pin(asset.serve(&mut stream, &head)).await;
        return kept.then_some((stream, leftover));
    }
    if let Some(api) = router
        .api
        .as_ref()
        .filter(|_| head.path.starts_with(api::PREFIX))
    {
        return api.handle(stream, head, leftover).await;
    }
    match router.route(&head.path) {
        Some(engine) => match engine.handle(stream, head, leftover, address).await {
            Handled::KeepAlive(s, rest) => Some((s, rest)),
            Handled::Done => None,
        },
        None => {
            // The body of a request to an unknown path is not read: only a bodiless request
            // leaves the connection reusable.
            let keep_alive =
                head.keep_alive() && matches!(head.body_framing(), Ok(BodyFraming::None));
            let kept = connection::refuse(&mut stream, Refusal::NotFound, keep_alive).await;
            kept.then_some((stream, leftover))
        }
    }
}
