//! The server's CPU time and resident memory, read from /proc (Linux only).
//!
//! Several pids are summed, for servers that run as several processes (Node cluster: the
//! primary, its workers and the Redis they share).

use serde::Serialize;

/// Clock ticks per second of the utime/stime fields of /proc/PID/stat. The kernel exposes
/// them in USER_HZ, which is 100 on every Linux architecture the generator targets; reading
/// it through sysconf would need libc and `unsafe` for the same constant.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Default)]
pub(crate) struct ServerProbe {
    pids: Vec<u32>,
}

/// One reading of the server processes, summed over the pids.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ServerSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

impl ServerProbe {
    pub(crate) fn new(pids: Vec<u32>) -> ServerProbe {
        ServerProbe { pids }
    }

    pub(crate) fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// `None` when no pid was given or one of them cannot be read (it exited).
    pub(crate) fn sample(&self) -> Option<ServerSample> {
        if self.pids.is_empty() {
            return None;
        }
        let mut total = ServerSample {
            cpu_seconds: 0.0,
            rss_bytes: 0,
        };
        for &pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            total.cpu_seconds += cpu_ticks(&stat)? as f64 / USER_HZ;
            total.rss_bytes += vm_rss_kib(&status)? * 1024;
        }
        Some(total)
    }
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds the generator itself has used so far.
pub(crate) fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(cpu_ticks(&stat)? as f64 / USER_HZ)
}

/// How busy the generator was over a measured phase: a share near 1 means it may have been
/// the bottleneck, and the server's figures are then lower bounds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GeneratorUsage {
    pub cpu_seconds: f64,
    pub threads: usize,
    /// cpu_seconds / (wall seconds x threads).
    pub busy_share: f64,
}

impl GeneratorUsage {
    /// From a CPU reading taken at the start of a phase and the phase's wall time.
    pub(crate) fn since(
        cpu_at_start: Option<f64>,
        wall_s: f64,
        threads: usize,
    ) -> Option<GeneratorUsage> {
        let cpu_seconds = (own_cpu_seconds()? - cpu_at_start?).max(0.0);
        let capacity = wall_s * threads.max(1) as f64;
        Some(GeneratorUsage {
            cpu_seconds,
            threads,
            busy_share: if capacity > 0.0 {
                cpu_seconds / capacity
            } else {
                0.0
            },
        })
    }

    /// For the tables, with a warning when the generator was nearly saturated.
    pub(crate) fn line(&self) -> String {
        let warn = if self.busy_share > 0.9 {
            " - SATURATED: the server's figures are lower bounds"
        } else {
            ""
        };
        format!(
            "{:.2} s, {:.0}% of {} thread(s){warn}",
            self.cpu_seconds,
            self.busy_share * 100.0,
            self.threads
        )
    }
}

/// What the server spent between two samples, for the reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerUsage {
    pub pids: Vec<u32>,
    pub cpu_seconds: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

impl ServerUsage {
    pub(crate) fn between(
        probe: &ServerProbe,
        a: Option<ServerSample>,
        b: Option<ServerSample>,
    ) -> Option<ServerUsage> {
        let (a, b) = (a?, b?);
        Some(ServerUsage {
            pids: probe.pids().to_vec(),
            cpu_seconds: (b.cpu_seconds - a.cpu_seconds).max(0.0),
            rss_before_bytes: a.rss_bytes,
            rss_after_bytes: b.rss_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_after_a_tricky_command_name() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(280));
    }

    #[test]
    fn reads_own_process() {
        let probe = ServerProbe::new(vec![std::process::id()]);
        let s = probe.sample().expect("own /proc entry");
        assert!(s.rss_bytes > 0);
        assert_eq!(vm_rss_kib("Name: x\nVmRSS:\t  1234 kB\n"), Some(1234));
    }
}
