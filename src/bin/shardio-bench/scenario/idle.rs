//! `idle`: hold N connections, report the server's resident memory per connection and its CPU
//! while they sit idle (pings only).

use std::time::Duration;

use serde::Serialize;

use super::{open_and_hold, Ctx};
use crate::proc::ServerUsage;
use crate::report::fmt_rate;
use crate::stats::ErrorTally;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Seconds to wait after the last handshake before measuring (lets allocators settle).
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct IdleReport {
    pub scenario: &'static str,
    pub command: String,
    pub url: String,
    pub count: u64,
    pub connected: u64,
    pub failures: ErrorTally,
    pub dropped_while_held: u64,
    pub rss_before_bytes: Option<u64>,
    pub rss_after_bytes: Option<u64>,
    /// (RSS with the connections - RSS before) / connections.
    pub rss_per_conn_bytes: Option<f64>,
    pub idle_duration_s: f64,
    pub idle_cpu_seconds: Option<f64>,
    /// Idle CPU as a percentage of one core.
    pub idle_cpu_percent: Option<f64>,
    pub server: Option<ServerUsage>,
}

pub(crate) async fn run(ctx: &Ctx, args: &IdleArgs) -> anyhow::Result<IdleReport> {
    if ctx.probe.pids().is_empty() {
        anyhow::bail!("idle measures the server: give --server-pid");
    }
    let before = ctx.probe.sample();
    let conns = open_and_hold(ctx, args.count).await;
    tokio::time::sleep(Duration::from_secs_f64(args.settle.max(0.0))).await;
    let loaded = ctx.probe.sample();
    let duration = args.duration.max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(duration)).await;
    let end = ctx.probe.sample();
    let idle = ServerUsage::between(&ctx.probe, loaded, end);
    let per_conn = match (before, loaded) {
        (Some(b), Some(l)) if conns.connected > 0 => {
            Some((l.rss_bytes as f64 - b.rss_bytes as f64) / conns.connected as f64)
        }
        _ => None,
    };
    let idle_cpu = idle.as_ref().map(|u| u.cpu_seconds);
    let report = IdleReport {
        scenario: "idle",
        command: ctx.command.clone(),
        url: ctx.target.host.clone(),
        count: args.count,
        connected: conns.connected,
        failures: conns.failures.clone(),
        dropped_while_held: conns.dropped(),
        rss_before_bytes: before.map(|s| s.rss_bytes),
        rss_after_bytes: loaded.map(|s| s.rss_bytes),
        rss_per_conn_bytes: per_conn,
        idle_duration_s: duration,
        idle_cpu_seconds: idle_cpu,
        idle_cpu_percent: idle_cpu
            .filter(|_| duration > 0.0)
            .map(|c| c / duration * 100.0),
        server: ServerUsage::between(&ctx.probe, before, end),
    };
    conns.close().await;
    Ok(report)
}

impl IdleReport {
    /// Why the run measured nothing, if it did not.
    pub(crate) fn unusable(&self) -> Option<String> {
        (self.connected == 0 && self.count > 0)
            .then(|| format!("no connection succeeded ({})", self.failures.line()))
    }

    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let mib =
            |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        vec![
            ("server".into(), self.url.clone()),
            (
                "connected".into(),
                format!("{} of {}", self.connected, self.count),
            ),
            ("failures".into(), self.failures.line()),
            (
                "dropped while held".into(),
                self.dropped_while_held.to_string(),
            ),
            ("server RSS before".into(), mib(self.rss_before_bytes)),
            ("server RSS with conns".into(), mib(self.rss_after_bytes)),
            (
                "RSS per connection".into(),
                self.rss_per_conn_bytes
                    .map_or("n/a".into(), |b| format!("{} bytes", fmt_rate(b))),
            ),
            (
                "idle server CPU".into(),
                match (self.idle_cpu_seconds, self.idle_cpu_percent) {
                    (Some(s), Some(p)) => {
                        format!(
                            "{s:.2} s over {:.1} s ({p:.2}% of a core)",
                            self.idle_duration_s
                        )
                    }
                    _ => "n/a".into(),
                },
            ),
        ]
    }
}
