//! The reference test servers of the upstream Engine.IO v4 and Socket.IO v5 conformance suites:
//! raw Engine.IO echo on `/engine.io/`, the Socket.IO test app on `/socket.io/`, port 3000.
//!
//! `cargo run --release --example conformance -- [--listen ADDR] [--shards N] [--no-pin]
//! [--websocket-compression]`

use std::process::ExitCode;

use clap::Parser;
use shardio::config::RuntimeConfig;
use shardio::{conformance, Server};

#[derive(Parser)]
#[command(about = "shardio running the Engine.IO v4 / Socket.IO v5 conformance apps")]
struct Args {
    #[command(flatten)]
    runtime: RuntimeConfig,
    /// Accept WebSocket compression (permessage-deflate) on every endpoint.
    #[arg(long)]
    websocket_compression: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shardio::init_tracing(shardio::config::LogFormat::Text);
    if let Err(e) = args.runtime.validate() {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }
    let server = match Server::bind(&args.runtime) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run(
        conformance::endpoints_with_compression(args.websocket_compression),
        shardio::shutdown_signal(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
