//! One shard: a thread pinned to a core, running a tokio current-thread runtime, accepting on
//! its own SO_REUSEPORT listener, serving the endpoints, and reading its bus inbox.
//! Everything a shard owns stays on its thread.

mod endpoint;
mod router;

use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bus::{Bus, ShardMsg};
use crate::engineio::{CloseReason, Engine, EngineShard};
use crate::metrics::Metrics;
use crate::socketio::SioShard;
use router::Router;

pub use endpoint::{App, Endpoint};

/// Everything a shard thread is started with.
pub(crate) struct ShardSetup {
    pub(crate) id: usize,
    pub(crate) count: usize,
    pub(crate) core: Option<core_affinity::CoreId>,
    pub(crate) listener: StdListener,
    pub(crate) endpoints: Arc<Vec<Endpoint>>,
    /// The endpoint the Redis bridge serves, if it runs.
    pub(crate) bridged: Option<usize>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) bus: Bus,
    pub(crate) inbox: mpsc::Receiver<ShardMsg>,
    /// Turns true when the server shuts down.
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) shutdown_timeout: Duration,
}

/// One endpoint on this shard: its Engine.IO side, and its Socket.IO side when it has one
/// (the receiver of the endpoint's bus messages).
struct ShardEndpoint {
    engine: Rc<Engine>,
    socketio: Option<Rc<SioShard>>,
}

/// Runs a shard until shutdown has drained its sessions (or the drain deadline passed).
pub(crate) fn run(setup: ShardSetup) -> std::io::Result<()> {
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(
                shard = setup.id,
                core = core.id,
                "could not pin shard to its core"
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(setup))
}

async fn serve(setup: ShardSetup) -> std::io::Result<()> {
    let ShardSetup {
        id,
        count,
        listener,
        endpoints,
        bridged,
        metrics,
        bus,
        inbox,
        mut stop,
        shutdown_timeout,
        ..
    } = setup;
    let listener = TcpListener::from_std(listener)?;
    let shard = Rc::new(EngineShard::new(id, count, metrics));
    tokio::task::spawn_local(shard.run_flusher());
    let served: Vec<ShardEndpoint> = endpoints
        .iter()
        .enumerate()
        .map(|(index, ep)| start_endpoint(&shard, &bus, index, ep, bridged == Some(index)))
        .collect();
    let router = Rc::new(Router::new(
        endpoints
            .iter()
            .zip(&served)
            .map(|(ep, served)| (ep.path.clone(), served.engine.clone()))
            .collect(),
        shard.clone(),
    ));
    tokio::task::spawn_local(read_inbox(inbox, served, router.clone()));

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, address)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(router::serve(router.clone(), stream, address));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(shard = id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }

    // Shutdown: stop accepting, close every session with 1001, drain with a deadline.
    drop(listener);
    shard.close_all(CloseReason::ServerShutdown);
    if tokio::time::timeout(shutdown_timeout, shard.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            shard = id,
            left = shard.session_count(),
            "drain deadline passed with sessions still open"
        );
    }
    Ok(())
}

/// Builds endpoint `index` on this shard: its app instance and its Engine.IO side.
fn start_endpoint(
    shard: &Rc<EngineShard>,
    bus: &Bus,
    index: usize,
    ep: &Endpoint,
    bridged: bool,
) -> ShardEndpoint {
    let (app, socketio): (Rc<dyn crate::engineio::EngineApp>, _) = match &ep.app {
        App::SocketIo(io) => {
            let sio = io.for_shard(shard, bus.clone(), index, bridged);
            (sio.clone(), Some(sio))
        }
        App::Engine(factory) => (factory.for_shard(shard), None),
    };
    let engine = Engine::new(ep.engine.clone(), app, shard.clone(), index, bus.clone());
    ShardEndpoint {
        engine: Rc::new(engine),
        socketio,
    }
}

/// Messages from the other shards and the bridge, handled in batches.
async fn read_inbox(
    mut inbox: mpsc::Receiver<ShardMsg>,
    endpoints: Vec<ShardEndpoint>,
    router: Rc<Router>,
) {
    let mut batch = Vec::with_capacity(64);
    while inbox.recv_many(&mut batch, 64).await > 0 {
        for msg in batch.drain(..) {
            match msg {
                ShardMsg::Handoff(handoff) => router::serve_handoff(&router, *handoff),
                ShardMsg::SocketIo {
                    from,
                    endpoint,
                    msg,
                } => match endpoints.get(endpoint).and_then(|e| e.socketio.as_ref()) {
                    Some(sio) => sio.on_bus(from, msg),
                    // Every shard serves the same endpoints: a bug, never a client's doing.
                    None => tracing::warn!(
                        endpoint,
                        ?from,
                        "Socket.IO message for an endpoint without Socket.IO dropped"
                    ),
                },
            }
        }
    }
}
