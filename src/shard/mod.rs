//! One shard: a thread pinned to a core, running a tokio current-thread runtime, accepting on
//! its own SO_REUSEPORT listener, serving the endpoints, and reading its bus inbox.
//! Everything a shard owns stays on its thread.

mod accept;
mod assets;
mod endpoint;
mod router;

use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::api::Api;
use crate::bus::inbox::Inbox;
use crate::bus::interest::LocalInterest;
use crate::bus::outbox::Outbox;
use crate::bus::{Bus, Port, ShardMsg};
use crate::config::RedisMode;
use crate::connection::HttpLimits;
use crate::engineio::{Admission, CloseReason, Engine, EngineShard};
use crate::metrics::Metrics;
use crate::ops::{Health, Ops};
use crate::socketio::SioShard;
use assets::Assets;
use router::Router;

pub use endpoint::{App, Endpoint};

/// Everything a shard thread is started with.
pub(crate) struct ShardSetup {
    pub(crate) id: usize,
    pub(crate) count: usize,
    pub(crate) core: Option<core_affinity::CoreId>,
    pub(crate) listener: StdListener,
    pub(crate) endpoints: Arc<Vec<Endpoint>>,
    /// The endpoint the Redis bridge serves, and the bridge's mode, if it runs.
    pub(crate) bridged: Option<(usize, RedisMode)>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) bus: Bus,
    pub(crate) inbox: Inbox,
    /// Turns true when the server shuts down.
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) shutdown_timeout: Duration,
    /// The process's limits on sessions, shared by the shards.
    pub(crate) admission: Arc<Admission>,
    pub(crate) http: HttpLimits,
    /// The backend API, when an API key is configured.
    pub(crate) api: Option<ShardApi>,
    /// This shard's listener of `--internal-listen`: the API and the operator's endpoints
    /// are there instead of on the public port.
    pub(crate) internal: Option<StdListener>,
    /// What `/readyz` answers.
    pub(crate) health: Arc<Health>,
    /// TLS on the public listener, when configured (`--tls-cert`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Told the shard's id once the shard serves: its runtime is built and its listeners
    /// accept. The server says it listens once every shard has told.
    pub(crate) started: mpsc::Sender<usize>,
}

/// The backend API of one shard.
pub(crate) struct ShardApi {
    pub(crate) keys: Arc<[String]>,
    /// How long a cluster-wide question waits.
    pub(crate) timeout: Duration,
}

/// One endpoint on this shard: its Engine.IO side (none for a page), and its Socket.IO side
/// when it has one (the receiver of the endpoint's bus messages).
struct ShardEndpoint {
    engine: Option<Rc<Engine>>,
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
        admission,
        http,
        api,
        internal,
        health,
        tls,
        started,
        ..
    } = setup;
    let listener = TcpListener::from_std(listener)?;
    let shard = Rc::new(EngineShard::new(
        id,
        count,
        metrics.clone(),
        admission,
        http,
    ));
    let mut flusher = tokio::task::spawn_local(shard.run_flusher());
    // One set of marks in the interest table for the shard: its endpoints' rooms share it.
    let interest = Rc::new(LocalInterest::new(bus.interest().clone(), id));
    // The shard's messages to the others leave at the end of each turn, from this task.
    let outbox = Rc::new(Outbox::new(bus.clone(), id));
    let mut sending = tokio::task::spawn_local(outbox.clone().run());
    let port = Port { interest, outbox };
    let served: Vec<ShardEndpoint> = endpoints
        .iter()
        .enumerate()
        .map(|(index, ep)| {
            let mode = bridged.filter(|&(e, _)| e == index).map(|(_, mode)| mode);
            start_endpoint(&shard, &bus, &port, index, ep, mode)
        })
        .collect();
    let internal = internal.map(TcpListener::from_std).transpose()?;
    let api = api.and_then(|api| {
        let body_timeout = shard.http.body_timeout;
        start_api(
            &endpoints,
            &served,
            &api,
            bridged,
            metrics.clone(),
            body_timeout,
        )
    });
    let routes = endpoints
        .iter()
        .zip(&served)
        .filter_map(|(ep, served)| Some((ep.path.clone(), served.engine.clone()?)))
        .collect();
    // With an internal listener the API and /metrics are there only, not on the public port.
    let (public_api, public_metrics) = match internal {
        Some(_) => (None, None),
        None => (api.clone(), Some(metrics.clone())),
    };
    let ops = Ops::new(health.clone(), public_metrics);
    let router = Router::new(routes, public_api, ops, shard.clone(), tls);
    let router = Rc::new(router.with_assets(assets(&endpoints)));
    let mut inbox =
        tokio::task::spawn_local(read_inbox(inbox, served, router.clone(), shard.clone()));

    let mut accepting = Box::pin(accept::run(listener, router, id, shard.metrics()));
    let internal = internal.map(|l| {
        // The internal listener is private (an address backends and Prometheus reach): plain
        // HTTP.
        let ops = Ops::new(health, Some(metrics));
        let router = Rc::new(Router::new(Vec::new(), api, ops, shard.clone(), None));
        accept::run(l, router, id, shard.metrics())
    });
    // Accepts until dropped; never ends (nor does the public loop).
    let mut internal = Box::pin(async move {
        if let Some(accepting) = internal {
            accepting.await;
        }
        std::future::pending::<()>().await
    });
    // The shard serves: its runtime and listeners are open, and from here on it opens a
    // descriptor per connection only.
    let _ = started.try_send(id);
    drop(started);
    // The flusher and the inbox reader run for the shard's life: a shard without one of them
    // would be half alive, so it stops (and the server with it) if either ends.
    tokio::select! {
        () = &mut accepting => {}
        () = &mut internal => {}
        _ = stop.wait_for(|stop| *stop) => {}
        ended = &mut flusher => return Err(lost_task(id, "flusher", ended)),
        ended = &mut inbox => return Err(lost_task(id, "inbox reader", ended)),
        ended = &mut sending => return Err(lost_task(id, "outbox", ended)),
    }

    // Shutdown: stop accepting on the public port (dropping the loop closes the listener),
    // close every session with 1001, drain with a deadline. The internal listener stays open
    // meanwhile: /readyz tells the drain, /metrics shows it.
    drop(accepting);
    shard.close_all(CloseReason::ServerShutdown);
    let drained = tokio::select! {
        drained = tokio::time::timeout(shutdown_timeout, shard.drained()) => drained.is_ok(),
        // Never ends: polled so that the internal listener serves on while the sessions drain.
        () = &mut internal => false,
    };
    if !drained {
        tracing::warn!(
            shard = id,
            left = shard.session_count(),
            "drain deadline passed with sessions still open"
        );
    }
    Ok(())
}

/// The backend API of this shard, acting on the first Socket.IO endpoint; `None` (with a
/// warning) when there is none.
fn start_api(
    endpoints: &[Endpoint],
    served: &[ShardEndpoint],
    api: &ShardApi,
    bridged: Option<(usize, RedisMode)>,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> Option<Rc<Api>> {
    let Some((index, sio)) = served
        .iter()
        .enumerate()
        .find_map(|(i, s)| Some((i, s.socketio.clone()?)))
    else {
        tracing::warn!("--api-key given, but no endpoint serves Socket.IO: the API is off");
        return None;
    };
    let body = (endpoints[index].engine.max_payload, body_timeout);
    let bridged = bridged.is_some_and(|(e, _)| e == index);
    let api = Api::new(api.keys.clone(), sio, metrics, bridged, body, api.timeout);
    Some(Rc::new(api))
}

/// The fixed files the endpoints ask for: the client bundle under each Socket.IO endpoint
/// (404s where it is not served), and the pages.
fn assets(endpoints: &[Endpoint]) -> Assets {
    let mut assets = Assets::default();
    for ep in endpoints {
        match &ep.app {
            App::SocketIo(io) if io.serves_client() => {
                assets.add_client(&ep.path, ep.engine.cors.as_ref());
            }
            App::SocketIo(_) => assets.withhold_client(&ep.path),
            App::Page(html) => assets.add_page(&ep.path, html.clone()),
            App::Engine(_) | App::WebSocketEcho => {}
        }
    }
    assets
}

/// Builds endpoint `index` on this shard: its app instance and its Engine.IO side.
fn start_endpoint(
    shard: &Rc<EngineShard>,
    bus: &Bus,
    port: &Port,
    index: usize,
    ep: &Endpoint,
    bridged: Option<RedisMode>,
) -> ShardEndpoint {
    let (app, socketio): (Option<Rc<dyn crate::engineio::EngineApp>>, _) = match &ep.app {
        App::SocketIo(io) => {
            let sio = io.for_shard(shard, bus.clone(), index, bridged, port.clone());
            (Some(sio.clone()), Some(sio))
        }
        App::Engine(factory) => (Some(factory.for_shard(shard)), None),
        App::WebSocketEcho => (None, None),
        App::Page(_) => {
            return ShardEndpoint {
                engine: None,
                socketio: None,
            }
        }
    };
    let engine = Engine::new(ep.engine.clone(), app, shard.clone(), index, bus.clone());
    ShardEndpoint {
        engine: Some(Rc::new(engine)),
        socketio,
    }
}

/// Why a task the shard cannot live without ended.
fn lost_task(
    shard: usize,
    what: &str,
    ended: Result<(), tokio::task::JoinError>,
) -> std::io::Error {
    let how = match ended {
        Ok(()) => "ended".to_owned(),
        Err(e) => e.to_string(),
    };
    tracing::error!(shard, task = what, how, "a task the shard needs stopped");
    std::io::Error::other(format!("shard {shard}: the {what} stopped ({how})"))
}

/// Messages from the other shards and the bridge, handled in batches (up to 64 parcels at a
/// time). A panic while handling one (in an app's handler) loses that message only.
async fn read_inbox(
    mut inbox: Inbox,
    endpoints: Vec<ShardEndpoint>,
    router: Rc<Router>,
    shard: Rc<EngineShard>,
) {
    let mut batch = Vec::with_capacity(64);
    while let Some(taken) = inbox.recv(&mut batch, 64).await {
        // A parcel holds a turn's messages: a burst may fill the batch far past 64 (its room
        // is given back after it).
        shard.metrics().bus_received(taken.messages, taken.parcels);
        for msg in batch.drain(..) {
            match msg {
                ShardMsg::Handoff(handoff) => router::serve_handoff(&router, *handoff),
                ShardMsg::SocketIo {
                    from,
                    endpoint,
                    msg,
                } => match endpoints.get(endpoint).and_then(|e| e.socketio.as_ref()) {
                    Some(sio) => {
                        shard.contain_now("bus message", || sio.on_bus(from, msg));
                    }
                    // Every shard serves the same endpoints: a bug, never a client's doing.
                    None => tracing::warn!(
                        endpoint,
                        ?from,
                        "Socket.IO message for an endpoint without Socket.IO dropped"
                    ),
                },
            }
        }
        batch.shrink_to(64);
    }
}
