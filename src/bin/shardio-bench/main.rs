//! shardio-bench: a load generator for Socket.IO servers that implement the shardio gateway
//! events (`join`, `leave`, `publish` with acks) on namespace `/`, over the WebSocket transport.
//!
//! It depends on nothing of the shardio library, so it measures any such server (shardio, the
//! Node and socketioxide peers in `benches/peers/`) with the same client.
//!
//! # Layout
//! - `ws`: WebSocket client framing (pure).
//! - `sio`: Engine.IO/Socket.IO packets the generator sends and reads (pure, no JSON parse).
//! - `client`: one connection: TCP, upgrade, handshake, batched writes, automatic pongs.
//! - `deflate`: permessage-deflate for a connection (`--ws-compression`).
//! - `stats`: histograms, per-(subscriber, publisher) sequence tracking, error tallies.
//! - `proc`: the server's CPU time and RSS from /proc.
//! - `report`: human tables and JSON.
//! - `scenario`: `connect`, `fanout` (and `cross`), `idle`, `jitter` (connections dropping
//!   and coming back, with connection state recovery), and `floor` (the kernel alone).

mod client;
mod deflate;
mod proc;
mod report;
mod scenario;
mod sio;
mod stats;
mod tls;
mod ws;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use client::{Sources, Target};
use proc::ServerProbe;
use scenario::fanout::{FanoutArgs, Placement, Via};
use scenario::jitter::JitterArgs;
use scenario::{connect::ConnectArgs, floor::FloorArgs, idle::IdleArgs, Ctx};

#[derive(Debug, Parser)]
#[command(
    name = "shardio-bench",
    version,
    about = "Load generator for Socket.IO gateway servers"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Full Socket.IO handshakes per second, up to --count connections held open.
    Connect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: ConnectArgs,
    },
    /// Subscribers in rooms, publishers publishing: deliveries/s, latency, losses.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
    },
    /// Hold --count idle connections: server RSS per connection and idle CPU.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: IdleArgs,
    },
    /// Fanout across servers: publishers on --url, subscribers on --sub-url.
    Cross {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
        /// Server the subscribers connect to.
        #[arg(long)]
        sub_url: String,
    },
    /// Fanout over M servers sharing rooms (through Redis): room r's subscribers on
    /// `--copies` consecutive servers from r mod M, publisher p on server p mod M. The
    /// many-machine simulation (benches/cluster_sim.py) runs it.
    ClusterSim {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
        /// Every server (`--url` is ignored).
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        /// Servers holding members of each room.
        #[arg(long, default_value_t = 2)]
        copies: usize,
    },
    /// Fanout with a backend publishing through shardio's HTTP API (`POST /api/v1/emit`, one
    /// keep-alive connection per publisher) to Socket.IO subscribers.
    Api {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: FanoutArgs,
        /// The API key (`--api-key` of the server).
        #[arg(long)]
        api_key: String,
        /// Emits per request (an array body).
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Clients in rooms receiving a steady stream while a share of them drops abruptly every
    /// second and reconnects (with connection state recovery unless --no-recovery): delivery
    /// rate, duplicates, recovered share, latency. With --url-b, each connection goes to one
    /// of two servers at random (recovery across machines).
    Jitter {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: JitterArgs,
    },
    /// No server: the kernel's cost of writing a small message to each of N loopback sockets.
    Floor {
        #[command(flatten)]
        args: FloorArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// Server to load (publishers' server for `cross`).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Server process ids (comma separated, summed) for CPU and RSS figures.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Pin the generator's threads to this core.
    #[arg(long)]
    cpu: Option<usize>,
    /// Generator worker threads [default: 1 with --cpu, else the available cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Source addresses for client sockets, used round robin (e.g. 127.0.0.1,127.0.0.2).
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<IpAddr>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds allowed for one handshake (and one join).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Connect with TLS (an https:// --url) and accept any certificate the server presents
    /// (a self-signed test certificate); handshake signatures are still checked.
    #[arg(long)]
    tls_insecure: bool,
    /// WebSocket compression (permessage-deflate): `off` (no offer), `negotiate` (offer it and
    /// inflate what the server compresses, as Node's `ws` client does), `compress` (also send
    /// every message compressed, as browsers do).
    #[arg(long, value_enum, default_value_t = deflate::Compression::Off)]
    ws_compression: deflate::Compression,
}

impl Scenario {
    /// Connections the scenario opens, to check the descriptor limit against.
    fn connections(&self) -> u64 {
        match self {
            Scenario::Connect { args, .. } => args.count,
            Scenario::Idle { args, .. } => args.count,
            Scenario::Fanout { args, .. }
            | Scenario::Cross { args, .. }
            | Scenario::ClusterSim { args, .. }
            | Scenario::Api { args, .. } => (args.subscribers + args.publishers) as u64,
            Scenario::Jitter { args, .. } => (args.clients + args.publishers) as u64,
            // Both ends of every connection are in this process.
            Scenario::Floor { args } => 2 * args.count as u64,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardio-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    raise_nofile_limit(cli.scenario.connections());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let common = match &cli.scenario {
        Scenario::Floor { args } => {
            let r = scenario::floor::run(args, command)?;
            return finish("floor", &r.rows(), &r, r.unusable(), args.json.as_deref());
        }
        Scenario::Connect { common, .. }
        | Scenario::Fanout { common, .. }
        | Scenario::Idle { common, .. }
        | Scenario::Cross { common, .. }
        | Scenario::Jitter { common, .. }
        | Scenario::ClusterSim { common, .. }
        | Scenario::Api { common, .. } => common.clone(),
    };
    let (runtime, threads) = build_runtime(&common)?;
    let mut target = Target::parse(&common.url, common.tls_insecure)?;
    target.compression = common.ws_compression;
    let ctx = Ctx {
        target,
        sources: Arc::new(Sources::new(common.source_addrs.clone())),
        handshake_timeout: Duration::from_secs_f64(common.timeout.max(0.001)),
        concurrency: common.concurrency,
        probe: ServerProbe::new(common.server_pid.clone()),
        threads,
        command,
    };
    if !ctx.probe.pids().is_empty() && ctx.probe.sample().is_none() {
        anyhow::bail!("cannot read /proc for --server-pid {:?}", ctx.probe.pids());
    }
    let json = common.json.as_deref();
    runtime.block_on(async {
        match &cli.scenario {
            Scenario::Connect { args, .. } => {
                let r = scenario::connect::run(&ctx, args).await;
                finish("connect", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Fanout { args, .. } => {
                let place = Placement::two(&ctx.target, None);
                let r = scenario::fanout::run(&ctx, args, &place, &Via::SocketIo).await?;
                finish("fanout", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Cross { args, sub_url, .. } => {
                let mut sub = Target::parse(sub_url, common.tls_insecure)?;
                sub.compression = common.ws_compression;
                let place = Placement::two(&ctx.target, Some(&sub));
                let r = scenario::fanout::run(&ctx, args, &place, &Via::SocketIo).await?;
                finish("cross", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::ClusterSim {
                args, urls, copies, ..
            } => {
                anyhow::ensure!(*copies >= 1, "--copies must be at least 1");
                let targets = urls
                    .iter()
                    .map(|u| Target::parse(u, common.tls_insecure))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let place = Placement {
                    subs: targets.clone(),
                    pubs: targets,
                    copies: *copies,
                };
                let r = scenario::fanout::run(&ctx, args, &place, &Via::SocketIo).await?;
                finish("cluster-sim", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Api {
                args,
                api_key,
                batch,
                ..
            } => {
                anyhow::ensure!(*batch > 0, "--batch must be at least 1");
                anyhow::ensure!(ctx.target.tls.is_none(), "api: no TLS (https://) support");
                let via = Via::Api {
                    key: api_key.clone(),
                    batch: *batch,
                };
                let place = Placement::two(&ctx.target, None);
                let r = scenario::fanout::run(&ctx, args, &place, &via).await?;
                finish("api", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Jitter { args, .. } => {
                let url_b = match &args.url_b {
                    Some(url) => {
                        let mut b = Target::parse(url, common.tls_insecure)?;
                        b.compression = common.ws_compression;
                        Some(b)
                    }
                    None => None,
                };
                let r = scenario::jitter::run(&ctx, args, url_b).await?;
                finish("jitter", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Idle { args, .. } => {
                let r = scenario::idle::run(&ctx, args).await?;
                finish("idle", &r.rows(), &r, r.unusable(), json)
            }
            Scenario::Floor { .. } => anyhow::bail!("floor runs without the runtime"),
        }
    })
}

/// Prints and saves the report; a run where nothing could be measured (no connection
/// succeeded) still writes both, then fails so that scripts notice.
fn finish(
    title: &str,
    rows: &[(String, String)],
    value: &impl serde::Serialize,
    unusable: Option<String>,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    report::print_table(title, rows);
    if let Some(path) = json {
        report::write_json(path, value)?;
    }
    match unusable {
        Some(why) => anyhow::bail!("{title}: nothing measured: {why}"),
        None => Ok(()),
    }
}

/// A multi-thread runtime; with `--cpu N` every thread (workers and the main thread that
/// coordinates) is pinned to core N, so the generator stays off the server's cores.
fn build_runtime(common: &Common) -> anyhow::Result<(tokio::runtime::Runtime, usize)> {
    let threads = common.threads.unwrap_or_else(|| match common.cpu {
        Some(_) => 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    let core = common.cpu.map(pin_current).transpose()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .on_thread_start(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
        })
        .build()
        .context("building the tokio runtime")
        .map(|rt| (rt, threads.max(1)))
}

/// Pins the calling thread to core `id` (which must be in this process's affinity mask).
fn pin_current(id: usize) -> anyhow::Result<core_affinity::CoreId> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = cores
        .into_iter()
        .find(|c| c.id == id)
        .with_context(|| format!("cpu {id}: no such core in this process's affinity mask"))?;
    if !core_affinity::set_for_current(core) {
        anyhow::bail!("cpu {id}: pinning failed");
    }
    Ok(core)
}

/// Tens of thousands of connections need as many descriptors: take the hard limit, and say
/// so when even that is too low for the run.
fn raise_nofile_limit(connections: u64) {
    // Room for stdio, the runtime's own descriptors and the JSON file.
    let needed = connections + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < needed => eprintln!(
            "warning: the open file limit is {n}, below the {needed} this run needs: \
             connections past it will fail (raise the hard limit with ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open file limit: {e}"),
    }
}
