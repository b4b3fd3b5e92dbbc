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
    let endpoints = gateway::endpoints(&config, verifier);
    match server.run(endpoints, shardio::shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
