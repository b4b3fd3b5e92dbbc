//! The `shardio` binary: parse the configuration, set up logging, load the JWT keys (re-read on
//! SIGHUP), run until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use shardio::auth::Verifier;
use shardio::{gateway, Config, Server};

fn main() -> ExitCode {
    let config = Config::parse();
    shardio::init_tracing();
    if let Err(e) = config.validate() {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }
    let server = match Server::bind(&config.runtime) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let verifier = match Verifier::from_config(&config.auth) {
        Ok(verifier) => verifier,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(verifier) = &verifier {
        if let Err(e) = shardio::reload_keys_on_sighup(verifier.clone()) {
            tracing::error!("cannot watch SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    }
    let server = match server
        .with_redis(config.redis.clone())
        .with_limits(config.limits.clone())
        .with_api(config.api.clone())
    {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    #[allow(unused_mut)] // debug builds add an endpoint
    let mut endpoints = gateway::endpoints(&config, verifier);
    #[cfg(debug_assertions)]
    endpoints.push(counters::endpoint(server.metrics()));
    match server.run(endpoints, shardio::shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Debug builds only: the process's counters on the Engine.IO endpoint `/shardio-counters/`.
/// Every message a client sends is answered with one message, the counters as JSON. The soak
/// test (`tests/it/soak.rs`) runs this binary as a process of its own and reads them to see the
/// process back at its baseline. Release builds have no such endpoint.
#[cfg(debug_assertions)]
mod counters {
    use std::rc::Rc;
    use std::sync::Arc;

    use serde_json::json;
    use shardio::engineio::{
        CloseReason, Connection, EngineApp, EngineAppFactory, EngineConfig, EngineShard, Message,
        OutFrame, Session,
    };
    use shardio::metrics::Metrics;
    use shardio::Endpoint;

    pub(crate) fn endpoint(metrics: Arc<Metrics>) -> Endpoint {
        Endpoint::engine(
            "/shardio-counters/",
            EngineConfig::default(),
            Counters(metrics),
        )
    }

    struct Counters(Arc<Metrics>);

    impl EngineAppFactory for Counters {
        fn for_shard(&self, _shard: &Rc<EngineShard>) -> Rc<dyn EngineApp> {
            Rc::new(Counters(self.0.clone()))
        }
    }

    impl EngineApp for Counters {
        fn open(&self, _session: &Rc<Session>) -> Rc<dyn Connection> {
            Rc::new(Counters(self.0.clone()))
        }
    }

    impl Connection for Counters {
        fn on_message(&self, session: &Rc<Session>, _message: Message<'_>) {
            let shards: Vec<_> = self
                .0
                .shards()
                .iter()
                .map(|s| {
                    json!({
                        "sessions_open": s.sessions_open(),
                        "sessions_total": s.sessions_total(),
                        "connection_tasks": s.connection_tasks(),
                        "slow_consumers": s.slow_consumers(),
                        "bus_overflows": s.bus_overflows(),
                    })
                })
                .collect();
            let bridge = self.0.bridge();
            let counters = json!({
                "shards": shards,
                "bridge": {
                    "connected": bridge.connected(),
                    "reconnects": bridge.reconnects(),
                    "dropped": bridge.dropped(),
                    "malformed": bridge.malformed(),
                },
            })
            .to_string();
            let _ = session.send(&[OutFrame::text(counters.len() + 1, |b| {
                b.push(b'4');
                b.extend_from_slice(counters.as_bytes());
            })]);
        }

        fn on_close(&self, _session: &Rc<Session>, _reason: CloseReason) {}
    }
}
