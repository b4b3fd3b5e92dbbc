//! `floor`: what the kernel alone charges on this machine for fan-out, with no server and no
//! protocol: one thread writes a small message to each of N loopback TCP sockets per pass, and
//! another thread drains the other ends. A server that fans one publish out to N sockets can
//! not beat this pass time; the comparison tables set their figures against it.
//!
//! The sockets are pairs made on a listener of this process (127.0.0.1, port picked by the
//! kernel), TCP_NODELAY on both ends. The reader is a current-thread tokio runtime with one task
//! per socket reading into a buffer, as the generator's clients do. The writer uses plain
//! nonblocking `write` calls: a socket that would block keeps what it owes and gets it on its
//! next turn, and every byte owed is written before the end, so the reader must count exactly
//! N x passes x size bytes.

use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::client::READ_BUSY;
use crate::report::{fmt_rate, per_second};
use crate::stats::{new_histogram, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FloorArgs {
    /// Loopback connections (each is two descriptors).
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Bytes written to each connection per pass.
    #[arg(long, default_value_t = 80)]
    pub size: usize,
    /// Passes per second (one pass writes to every connection once).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of passes.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Pin the reader thread to this core [default: unpinned].
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Pin the writer thread to this core.
    #[arg(long, default_value_t = 0)]
    pub writer_cpu: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FloorReport {
    pub scenario: &'static str,
    pub command: String,
    pub connections: usize,
    pub size: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub reader_cpu: Option<usize>,
    pub writer_cpu: usize,
    pub passes: u64,
    /// Passes per second achieved (below --rate when a pass takes longer than 1 / rate).
    pub passes_per_s: f64,
    /// Time of one pass (a write to every connection), in microseconds.
    pub pass: LatencySummary,
    /// Sum of the pass times / writes: what one small write costs the writer.
    pub write_us_mean: f64,
    /// Writes per second of writer time (passes x connections / sum of the pass times).
    pub writes_per_busy_s: f64,
    /// Writes that found the socket full; the bytes were written on a later turn.
    pub would_block: u64,
    /// Seconds after the last pass until every owed byte was written.
    pub catch_up_s: f64,
    pub bytes_expected: u64,
    pub bytes_received: u64,
}

pub(crate) fn run(args: &FloorArgs, command: String) -> anyhow::Result<FloorReport> {
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(args.size > 0, "--size must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let (clients, servers) = socket_pairs(args.count)?;
    let reader_cpu = args.cpu;
    let reader = std::thread::spawn(move || read_all(clients, reader_cpu));
    let writer = Writer::new(servers, args.size);
    let (writer_cpu, rate, duration) = (args.writer_cpu, args.rate, args.duration);
    let written = std::thread::spawn(move || {
        crate::pin_current(writer_cpu)?;
        writer.run(rate, duration)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    let bytes_received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let writes = written.passes as f64 * args.count as f64;
    let busy = written.busy.as_secs_f64();
    Ok(FloorReport {
        scenario: "floor",
        command,
        connections: args.count,
        size: args.size,
        rate: args.rate,
        duration_s: args.duration,
        reader_cpu: args.cpu,
        writer_cpu: args.writer_cpu,
        passes: written.passes,
        passes_per_s: per_second(written.passes as f64, written.elapsed.as_secs_f64()),
        pass: LatencySummary::of(&written.times),
        write_us_mean: if writes > 0.0 {
            busy * 1e6 / writes
        } else {
            0.0
        },
        writes_per_busy_s: per_second(writes, busy),
        would_block: written.would_block,
        catch_up_s: written.catch_up.as_secs_f64(),
        bytes_expected: written.passes * (args.count * args.size) as u64,
        bytes_received,
    })
}

/// `n` connected pairs (client end, server end), nonblocking, TCP_NODELAY on both ends.
fn socket_pairs(n: usize) -> anyhow::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (mut clients, mut servers) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let client =
            TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("connection {i} of {n}: {e}"))?;
        let (server, _) = listener.accept()?;
        for s in [&client, &server] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        clients.push(client);
        servers.push(server);
    }
    Ok((clients, servers))
}

/// Reads every client socket until the writer closes it; returns the bytes read in all.
fn read_all(clients: Vec<TcpStream>, cpu: Option<usize>) -> anyhow::Result<u64> {
    if let Some(id) = cpu {
        crate::pin_current(id)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let mut tasks = JoinSet::new();
        for c in clients {
            let mut stream = tokio::net::TcpStream::from_std(c)?;
            tasks.spawn(async move {
                let mut buf = Vec::with_capacity(READ_BUSY);
                let mut total = 0u64;
                loop {
                    buf.clear();
                    match stream.read_buf(&mut buf).await? {
                        0 => return Ok::<u64, std::io::Error>(total),
                        n => total += n as u64,
                    }
                }
            });
        }
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            total += r??;
        }
        Ok(total)
    })
}

/// The server ends and what each still owes its reader.
struct Writer {
    sockets: Vec<TcpStream>,
    owed: Vec<usize>,
    /// Bytes to write from: `size` bytes per pass, more when a socket caught up.
    chunk: Vec<u8>,
    size: usize,
    would_block: u64,
}

/// What the writer did.
struct Written {
    passes: u64,
    /// Time of each pass, in microseconds.
    times: Histogram<u64>,
    /// Sum of the pass times.
    busy: Duration,
    /// From the start of the first pass to the end of the last.
    elapsed: Duration,
    would_block: u64,
    /// From the end of the last pass until nothing was owed.
    catch_up: Duration,
}

impl Writer {
    fn new(sockets: Vec<TcpStream>, size: usize) -> Writer {
        Writer {
            owed: vec![0; sockets.len()],
            sockets,
            chunk: vec![b'x'; size.max(READ_BUSY)],
            size,
            would_block: 0,
        }
    }

    /// `rate` passes a second for `duration` seconds, then what is still owed, then closes
    /// every socket so that the reader sees the end.
    fn run(mut self, rate: f64, duration: f64) -> anyhow::Result<Written> {
        let passes = ((rate * duration).round() as u64).max(1);
        let mut times = new_histogram();
        let mut busy = Duration::ZERO;
        let start = Instant::now();
        for k in 0..passes {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let t0 = Instant::now();
            for i in 0..self.sockets.len() {
                self.owed[i] += self.size;
                self.write_owed(i)?;
            }
            let took = t0.elapsed();
            busy += took;
            times.saturating_record((took.as_micros() as u64).max(1));
        }
        let end = Instant::now();
        let deadline = end + Duration::from_secs(30);
        while self.owed.iter().any(|&o| o > 0) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the reader took nothing for 30 s"
            );
            std::thread::sleep(Duration::from_millis(1));
            for i in 0..self.sockets.len() {
                self.write_owed(i)?;
            }
        }
        Ok(Written {
            passes,
            times,
            busy,
            elapsed: end - start,
            would_block: self.would_block,
            catch_up: end.elapsed(),
        })
    }

    /// Writes what socket `i` owes, as far as the socket takes it.
    fn write_owed(&mut self, i: usize) -> anyhow::Result<()> {
        while self.owed[i] > 0 {
            let n = self.owed[i].min(self.chunk.len());
            match self.sockets[i].write(&self.chunk[..n]) {
                Ok(0) => anyhow::bail!("connection {i}: write returned 0"),
                Ok(n) => self.owed[i] -= n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.would_block += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => anyhow::bail!("connection {i}: {e}"),
            }
        }
        Ok(())
    }
}

impl FloorReport {
    /// Why the run is not a valid floor, if it is not: every byte written must have been read.
    pub(crate) fn unusable(&self) -> Option<String> {
        (self.bytes_received != self.bytes_expected).then(|| {
            format!(
                "the reader got {} bytes of {}",
                self.bytes_received, self.bytes_expected
            )
        })
    }

    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let cpu = |c: Option<usize>| c.map_or("unpinned".into(), |c| format!("cpu {c}"));
        vec![
            (
                "shape".into(),
                format!(
                    "{} loopback connections, {} B each per pass, {} passes/s for {} s",
                    self.connections, self.size, self.rate, self.duration_s
                ),
            ),
            (
                "threads".into(),
                format!(
                    "writer on {}, reader on {}",
                    cpu(Some(self.writer_cpu)),
                    cpu(self.reader_cpu)
                ),
            ),
            (
                "passes".into(),
                format!("{} ({:.1}/s)", self.passes, self.passes_per_s),
            ),
            ("pass time".into(), self.pass.line()),
            (
                "per write".into(),
                format!(
                    "{:.2} µs ({} writes/s of writer time)",
                    self.write_us_mean,
                    fmt_rate(self.writes_per_busy_s)
                ),
            ),
            (
                "would block".into(),
                format!(
                    "{} (caught up {:.3} s after the last pass)",
                    self.would_block, self.catch_up_s
                ),
            ),
            (
                "bytes".into(),
                format!(
                    "{} received of {} expected",
                    self.bytes_received, self.bytes_expected
                ),
            ),
        ]
    }
}
