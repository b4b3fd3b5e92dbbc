//! One shard: a thread pinned to a core, running a tokio current-thread runtime, accepting on
//! its own SO_REUSEPORT listener. Everything a shard owns stays on its thread.

use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bus::{Bus, BusMsg, Handoff};
use crate::engineio::{CloseReason, Engine, EngineShard, ShardContext};
use crate::http::Router;
use crate::metrics::Metrics;
use crate::server::Endpoint;

/// Everything a shard thread is started with.
pub struct ShardSetup {
    pub id: usize,
    pub count: usize,
    pub core: Option<core_affinity::CoreId>,
    pub listener: StdListener,
    pub endpoints: Arc<Vec<Endpoint>>,
    /// The endpoint the Redis bridge serves, if it runs.
    pub bridged: Option<usize>,
    pub metrics: Arc<Metrics>,
    pub bus: Bus,
    pub inbox: mpsc::Receiver<BusMsg>,
    /// Turns true when the server shuts down.
    pub stop: watch::Receiver<bool>,
    pub shutdown_timeout: Duration,
}

/// Runs a shard until shutdown has drained its sessions (or the drain deadline passed).
pub fn run(setup: ShardSetup) -> std::io::Result<()> {
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
    let engines: Vec<Rc<Engine>> = endpoints
        .iter()
        .enumerate()
        .map(|(endpoint, ep)| {
            let ctx = ShardContext {
                engine: shard.clone(),
                bus: bus.clone(),
                endpoint,
                bridge: bridged == Some(endpoint),
            };
            Rc::new(Engine {
                config: ep.engine.clone(),
                app: ep.app.for_shard(&ctx),
                ctx,
            })
        })
        .collect();
    let router = Rc::new(Router::new(
        endpoints
            .iter()
            .map(|ep| ep.path.clone())
            .zip(engines.iter().cloned())
            .collect(),
    ));
    tokio::task::spawn_local(read_inbox(inbox, engines.clone(), router.clone()));

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, address)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(crate::http::serve(router.clone(), stream, address));
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

/// Messages from the other shards, handled in batches.
async fn read_inbox(
    mut inbox: mpsc::Receiver<BusMsg>,
    engines: Vec<Rc<Engine>>,
    router: Rc<Router>,
) {
    let mut batch = Vec::with_capacity(64);
    while inbox.recv_many(&mut batch, 64).await > 0 {
        for msg in batch.drain(..) {
            match msg {
                BusMsg::App {
                    origin,
                    endpoint,
                    msg,
                } => {
                    if let Some(engine) = engines.get(endpoint) {
                        engine.app.on_bus(origin, msg);
                    }
                }
                BusMsg::Handoff(handoff) => serve_handoff(&router, *handoff),
                BusMsg::FromBridge { endpoint, msg } => {
                    if let Some(engine) = engines.get(endpoint) {
                        engine.app.on_bridge(msg);
                    }
                }
            }
        }
    }
}

/// Continues serving a connection another shard handed over.
fn serve_handoff(router: &Rc<Router>, handoff: Handoff) {
    let Handoff {
        stream,
        head,
        leftover,
        address,
        ..
    } = handoff;
    match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => {
            tokio::task::spawn_local(crate::http::serve_request(
                router.clone(),
                stream,
                address,
                head,
                leftover,
            ));
        }
        Err(e) => tracing::warn!(error = %e, "could not adopt a handed-over connection"),
    }
}
