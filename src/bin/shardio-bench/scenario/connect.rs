//! `connect`: full Socket.IO handshakes per second up to a target count held open.

use std::time::Duration;

use serde::Serialize;

use super::{open_and_hold, Ctx};
use crate::proc::{own_cpu_seconds, GeneratorUsage, ServerUsage};
use crate::report::{fmt_rate, per_second};
use crate::stats::{ErrorTally, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Seconds to hold them open once all are connected (pings answered), to see the server keep them.
    #[arg(long, default_value_t = 2.0)]
    pub hold: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ConnectReport {
    pub scenario: &'static str,
    pub command: String,
    pub url: String,
    pub count: u64,
    pub concurrency: usize,
    pub connected: u64,
    pub failed: u64,
    pub failures: ErrorTally,
    pub elapsed_s: f64,
    pub handshakes_per_s: f64,
    pub latency: LatencySummary,
    /// Connections still open after the hold.
    pub held: u64,
    pub dropped_while_held: u64,
    /// Server CPU over the connect phase only.
    pub server: Option<ServerUsage>,
    pub handshakes_per_server_cpu_s: Option<f64>,
    /// The generator's own CPU over the connect phase.
    pub generator: Option<GeneratorUsage>,
}

pub(crate) async fn run(ctx: &Ctx, args: &ConnectArgs) -> ConnectReport {
    let before = ctx.probe.sample();
    let own_before = own_cpu_seconds();
    let conns = open_and_hold(ctx, args.count).await;
    let after = ctx.probe.sample();
    let generator = GeneratorUsage::since(own_before, conns.elapsed.as_secs_f64(), ctx.threads);
    tokio::time::sleep(Duration::from_secs_f64(args.hold.max(0.0))).await;
    let server = ServerUsage::between(&ctx.probe, before, after);
    let elapsed = conns.elapsed.as_secs_f64();
    let dropped = conns.dropped();
    let report = ConnectReport {
        scenario: "connect",
        command: ctx.command.clone(),
        url: ctx.target.host.clone(),
        count: args.count,
        concurrency: ctx.concurrency,
        connected: conns.connected,
        failed: conns.failures.total(),
        failures: conns.failures.clone(),
        elapsed_s: elapsed,
        handshakes_per_s: per_second(conns.connected as f64, elapsed),
        latency: LatencySummary::of(&conns.latency),
        held: conns.connected - dropped,
        dropped_while_held: dropped,
        handshakes_per_server_cpu_s: server
            .as_ref()
            .map(|s| per_second(conns.connected as f64, s.cpu_seconds)),
        server,
        generator,
    };
    conns.close().await;
    report
}

impl ConnectReport {
    /// Why the run measured nothing, if it did not.
    pub(crate) fn unusable(&self) -> Option<String> {
        (self.connected == 0 && self.count > 0)
            .then(|| format!("no connection succeeded ({})", self.failures.line()))
    }

    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("server".into(), self.url.clone()),
            (
                "connected".into(),
                format!(
                    "{} of {} (concurrency {})",
                    self.connected, self.count, self.concurrency
                ),
            ),
            ("failures".into(), self.failures.line()),
            ("elapsed".into(), format!("{:.3} s", self.elapsed_s)),
            ("handshakes/s".into(), fmt_rate(self.handshakes_per_s)),
            ("handshake latency".into(), self.latency.line()),
            (
                "held".into(),
                format!(
                    "{} ({} dropped by the server)",
                    self.held, self.dropped_while_held
                ),
            ),
        ];
        if let (Some(s), Some(per)) = (&self.server, self.handshakes_per_server_cpu_s) {
            rows.push(("server CPU".into(), format!("{:.2} s", s.cpu_seconds)));
            rows.push(("handshakes/server CPU s".into(), fmt_rate(per)));
        }
        if let Some(g) = &self.generator {
            rows.push(("generator CPU".into(), g.line()));
        }
        rows
    }
}
