//! The `shardio` binary: parse the configuration, set up logging, run until SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
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
    let server = server
        .with_redis(config.redis.clone())
        .with_limits(config.limits.clone());
    match server.run(gateway::endpoints(&config), shardio::shutdown_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
