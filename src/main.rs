//! The `shardio` binary: load the configuration (flags, `SHARDIO_*` variables, the `--config`
//! file), set up logging, load the JWT keys and the TLS certificate (both re-read on SIGHUP),
//! run until SIGINT or SIGTERM.

use std::process::ExitCode;

use shardio::auth::Verifier;
use shardio::config::{self, LoadError};
use shardio::tls::Certificates;
use shardio::{gateway, Reloadable, Server};

fn main() -> ExitCode {
    // Before logging starts: the log format is a setting too. Errors go to stderr as is.
    let loaded = match config::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(LoadError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("shardio: {e}");
            return ExitCode::from(2);
        }
    };
    if loaded.config.print_config {
        print!("{}", loaded.to_toml());
        return match loaded.validate() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shardio: {e}");
                ExitCode::from(2)
            }
        };
    }
    shardio::init_tracing(loaded.config.log_format);
    if let Err(e) = loaded.validate() {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }
    let config = loaded.config;
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
    let certificates = match Certificates::from_config(&config.tls) {
        Ok(certificates) => certificates,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut reloadables = Vec::new();
    reloadables.extend(verifier.clone().map(Reloadable::jwt_keys));
    reloadables.extend(certificates.clone().map(Reloadable::tls_certificate));
    if !reloadables.is_empty() {
        if let Err(e) = shardio::reload_on_sighup(reloadables) {
            tracing::error!("cannot watch SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    }
    let server = match server
        .with_redis(config.redis.clone())
        .with_limits(config.limits.clone())
        .with_api(config.api.clone())
        .map(|server| server.with_tls(certificates))
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
