#!/usr/bin/env node
// Turns the raw runs of benches/compare.sh (one shardio-bench JSON per server, scenario and
// repetition) into benches/RESULTS.md on stdout: medians per server, and ratios shardio / peer.
//
//   node benches/summarize.js benches/results/<run>/ > benches/RESULTS.md
//
// Context comes from the environment compare.sh exports (RESULTS_*), and from this machine.
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { execSync } = require("node:child_process");

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node benches/summarize.js RESULTS_DIR");
  process.exit(2);
}
const env = (k, d) => process.env[k] || d;
const servers = env("RESULTS_SERVERS", "shardio shardio-before node-single node-cluster socketioxide").split(/\s+/).filter(Boolean);
const scenarios = env("RESULTS_SCENARIOS", "fanout fanout-paced connect connect-tls idle fanout-10k cross api floor").split(/\s+/).filter(Boolean);
const peers = servers.filter((s) => s !== "shardio");

const get = (obj, p) => p.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
const median = (xs) => {
  const v = xs.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

// Figures per scenario: [label, JSON path, formatter, which way is better].
const ms = (us) => (us / 1000).toFixed(2);
const int = (x) => Math.round(x).toLocaleString("en-US");
const FIGURES = {
  fanout: [
    ["deliveries/s", "deliveries_per_s", int, "higher"],
    ["publishes/s", "publishes_per_s", int, "higher"],
    ["p50 ms", "latency.p50_us", ms, "lower"],
    ["p99 ms", "latency.p99_us", ms, "lower"],
    ["p99.9 ms", "latency.p999_us", ms, "lower"],
    ["lost", "losses.lost", int, "lower"],
    ["reordered", "losses.reordered", int, "lower"],
    ["server CPU s", "server.cpu_seconds", (x) => x.toFixed(2), "lower"],
    ["deliveries/server CPU s", "deliveries_per_server_cpu_s", int, "higher"],
    ["generator busy %", "generator.busy_share", (x) => (x * 100).toFixed(0), "lower"],
  ],
  api: [
    ["emits/s", "publishes_per_s", int, "higher"],
    ["deliveries/s", "deliveries_per_s", int, "higher"],
    ["emit answer p50 ms", "publish_ack_latency.p50_us", ms, "lower"],
    ["p50 ms", "latency.p50_us", ms, "lower"],
    ["p99 ms", "latency.p99_us", ms, "lower"],
    ["lost", "losses.lost", int, "lower"],
    ["server CPU s", "server.cpu_seconds", (x) => x.toFixed(2), "lower"],
    ["deliveries/server CPU s", "deliveries_per_server_cpu_s", int, "higher"],
    ["generator busy %", "generator.busy_share", (x) => (x * 100).toFixed(0), "lower"],
  ],
  "fanout-paced": [
    ["deliveries/s", "deliveries_per_s", int, "higher"],
    ["p50 ms", "latency.p50_us", ms, "lower"],
    ["p99 ms", "latency.p99_us", ms, "lower"],
    ["p99.9 ms", "latency.p999_us", ms, "lower"],
    ["max ms", "latency.max_us", ms, "lower"],
    ["lost", "losses.lost", int, "lower"],
    ["server CPU s", "server.cpu_seconds", (x) => x.toFixed(2), "lower"],
    ["deliveries/server CPU s", "deliveries_per_server_cpu_s", int, "higher"],
    ["generator busy %", "generator.busy_share", (x) => (x * 100).toFixed(0), "lower"],
  ],
  connect: [
    ["handshakes/s", "handshakes_per_s", int, "higher"],
    ["p50 ms", "latency.p50_us", ms, "lower"],
    ["p99 ms", "latency.p99_us", ms, "lower"],
    ["failed", "failed", int, "lower"],
    ["server CPU s", "server.cpu_seconds", (x) => x.toFixed(2), "lower"],
    ["handshakes/server CPU s", "handshakes_per_server_cpu_s", int, "higher"],
    ["generator busy %", "generator.busy_share", (x) => (x * 100).toFixed(0), "lower"],
  ],
  cross: [
    ["deliveries/s", "deliveries_per_s", int, "higher"],
    ["p50 ms", "latency.p50_us", ms, "lower"],
    ["p99 ms", "latency.p99_us", ms, "lower"],
    ["p99.9 ms", "latency.p999_us", ms, "lower"],
    ["lost", "losses.lost", int, "lower"],
    ["server CPU s (A+B+redis)", "server.cpu_seconds", (x) => x.toFixed(2), "lower"],
    ["generator busy %", "generator.busy_share", (x) => (x * 100).toFixed(0), "lower"],
  ],
  idle: [
    ["connected", "connected", int, "higher"],
    ["RSS/conn bytes", "rss_per_conn_bytes", int, "lower"],
    ["server RSS MiB", "rss_after_bytes", (x) => (x / 1048576).toFixed(1), "lower"],
    ["idle CPU % of a core", "idle_cpu_percent", (x) => x.toFixed(2), "lower"],
  ],
};
FIGURES["small-rooms"] = FIGURES.fanout;

FIGURES["connect-tls"] = FIGURES.connect;

const NOTES = {
  "connect-tls":
    "`connect` over TLS, shardio only: `--tls-cert`/`--tls-key` with a self-signed ECDSA P-256 certificate made for the run, " +
    "the generator on https:// with `--tls-insecure` (TLS 1.3, ring on both ends). Set its handshakes per server CPU second " +
    "beside the `connect` section's (same run).",
  fanout:
    "Flat out: each publisher keeps at most `--window` publishes unacknowledged, so the rate is what the server sustains " +
    "and the latency is mostly the queue that window allows (Little's law); compare latency in `fanout-paced`. " +
    "`reordered` counts deliveries that came after a later one of the same publisher (delivered, but out of order). " +
    "`generator busy %` near 100 would mean the generator, not the server, set the pace.",
  "fanout-paced": "The same shape at a fixed publish rate that every server sustains: end-to-end latency at equal load.",
  api:
    "The fanout shape published by a backend through shardio's HTTP API: keep-alive connections posting `/api/v1/emit` " +
    "(requests pipelined up to `--window`, `--batch` emits each), subscribers on Socket.IO. `emits/s` counts emits " +
    "answered 202; latency is from encoding the request to the subscriber's receipt. The peers that ship an HTTP publish API " +
    "(Soketi, Centrifugo) could not be installed here.",
  connect:
    "Full handshakes (TCP, WebSocket upgrade, Engine.IO open, Socket.IO CONNECT to `/`), `--concurrency` in flight; " +
    "all connections stay open until the end. Server CPU covers the connect phase only.",
  cross:
    "Publishers connect to server A, subscribers to server B; the rooms span both through a redis-server started for the run " +
    "(A, B and Redis all pinned to the servers' cores). shardio: two processes with `--redis`; node-single: two single-process " +
    "socket.io servers with @socket.io/redis-adapter. Server CPU is A + B + Redis.",
  "small-rooms":
    `Many small rooms on ${env("RESULTS_SMALL_SHARDS", "?")} shards, all on cpu ${env("RESULTS_SERVER_CPUS", "?")}: ` +
    "each publish has members on a few shards only, so sending it only to the shards with members counts most here.",
  idle:
    "RSS per connection is (server RSS with the connections open - RSS before) / connections; idle CPU is measured " +
    "with the connections open and only pings flowing (Engine.IO pingInterval is 25 s in every server here).",
};

function runsOf(server, scenario) {
  const re = new RegExp(`^${server}-${scenario}-(\\d+)\\.json$`);
  return fs
    .readdirSync(dir)
    .filter((f) => re.test(f))
    .map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")));
}

// Why SERVER did not run (at all, or SCENARIO only), if it did not.
function unavailable(server, scenario) {
  const f = path.join(dir, scenario ? `${server}-${scenario}.unavailable` : `${server}.unavailable`);
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim() : null;
}

const readJson = (f) => (fs.existsSync(path.join(dir, f)) ? JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) : undefined);

// shardio / peer for one figure: "n/a" when either is missing.
function ratio(a, b) {
  if (a === undefined || b === undefined) return "n/a";
  if (b === 0) return a === 0 ? "1.00" : "n/a";
  return (a / b).toFixed(2);
}

// The generator's command as run (compare.sh pins it with taskset unless BENCH_CPU=none).
const benchPin = env("RESULTS_BENCH_CPU", "none");
const pinned = (cmd) => (benchPin !== "none" ? `taskset -c ${benchPin} ` : "") + relative(cmd);

// Commands as run from the repository root (compare.sh passes absolute paths).
const ROOT = path.resolve(__dirname, "..") + "/";
const relative = (cmd) => cmd.split(ROOT).join("");

function sh(cmd) {
  try {
    return execSync(cmd, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

const out = [];
const p = (s = "") => out.push(s);
p("# shardio vs peers: benchmark results");
p();
p("Generated by `benches/compare.sh` (raw runs: `" + path.relative(process.cwd(), path.resolve(dir)) + "`). ");
p("Each figure is the median of " + env("RESULTS_REPS", "?") + " runs (fanout-10k: one run per rate of its ladder; floor: one run); " +
  "every server is started fresh for each run.");
p("Ratios are shardio / peer: above 1 means shardio has more of that figure (better for rates, worse for latency, CPU and memory).");
p();
p("## Context");
p();
p(`- machine: ${os.cpus()[0]?.model ?? "unknown"}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`);
p(`- kernel: ${os.type()} ${os.release()}`);
p(`- commit: ${env("RESULTS_COMMIT", "unknown")}`);
if (process.env.RESULTS_NOTE) p(`- note: ${process.env.RESULTS_NOTE}`);
const cmdFile = path.join(dir, "commands.txt");
const ranAt = fs.existsSync(cmdFile) ? fs.statSync(cmdFile).mtime : new Date();
p(`- date of the runs: ${ranAt.toISOString()}`);
p(`- toolchain: ${sh("rustc --version")}; node ${process.version}; ${sh("redis-server --version").split(" ").slice(0, 3).join(" ")}`);
const startLoad = fs.existsSync(path.join(dir, "loadavg-start")) ? fs.readFileSync(path.join(dir, "loadavg-start"), "utf8").trim() : "unknown";
const endFile = path.join(dir, "loadavg-end");
const endLoad = fs.existsSync(endFile) ? fs.readFileSync(endFile, "utf8").trim() : os.loadavg().map((x) => x.toFixed(2)).join(" ");
p(`- load average (1/5/15 min) before the runs: ${startLoad}; after: ${endLoad}` +
  " (other work on the machine shares the cores: compare figures of one run, not across runs)");
const cores = env("RESULTS_CORES", "1");
p(`- pinning: servers on cpu ${env("RESULTS_SERVER_CPUS", "?")} (taskset; shardio \`--shards ${cores}\`, node-cluster ${cores} worker(s)), ` +
  (benchPin === "none"
    ? "generator **not pinned** (BENCH_CPU=none: its threads share the cores with the servers)"
    : `generator on cpu ${benchPin} (taskset and --cpu)`));
p("- server CPU and RSS are summed over all of a server's processes (node-cluster: primary, workers and its redis-server; " +
  "cross: both servers and the redis-server)");
p();
p("Servers:");
p();
const about = {
  "shardio-before": `shardio built from commit ${env("RESULTS_BASELINE", "?")}, ` +
    env("RESULTS_BASELINE_ABOUT", "before the tuning of the benchmark issue: its ratios are the before/after figures of that tuning, measured in the same run"),
  "shardio-scraped": "the same shardio binary, scraped (`GET /metrics`) every second during each run",
  "shardio-streams": "the same shardio binary with `--redis-mode streams`: broadcasts cross machines through a " +
    "Redis stream (XADD, XREAD BLOCK) instead of Pub/Sub; on one machine (fanout) it runs on a redis-server of its own, whose CPU counts",
  "shardio-streams-recovery": "shardio-streams with `--recovery-window`: sessions kept in Redis, and every recoverable " +
    "packet, local deliveries included, goes to the stream first and reaches the sockets when the bridge reads it back",
  "shardio-recovery": "the same shardio binary with `--recovery-window` alone: sessions and recoverable packets kept in the process, no Redis",
};
for (const s of servers) {
  const why = unavailable(s, null);
  p(`- ${s}${about[s] ? ` (${about[s]})` : ""}${why ? `: **not available** (${why})` : ""}`);
}
p();

// fanout-10k: the ladder compare.sh ran per server (SERVER-fanout-10k.ladder: "RATE held" or
// "RATE not held: why" per rung) and the run at half the highest held rate.
function tenk(server) {
  const f = path.join(dir, `${server}-fanout-10k.ladder`);
  if (!fs.existsSync(f)) return undefined;
  const rungs = fs
    .readFileSync(f, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const m = l.match(/^(\S+) (held|not held: (.*))$/);
      return { rate: Number(m[1]), held: m[2] === "held", why: m[3] };
    });
  const held = rungs.filter((r) => r.held).pop();
  return {
    rungs,
    held,
    atHeld: held && readJson(`${server}-fanout-10k-rate-${held.rate}.json`),
    half: readJson(`${server}-fanout-10k-half.json`),
    first: readJson(`${server}-fanout-10k-rate-${rungs[0]?.rate}.json`),
  };
}

const TENK_FIGURES = [
  ["highest held publishes/s", (t) => t.held?.rate, int, "higher"],
  ["deliveries/s at it", (t) => t.atHeld?.deliveries_per_s, int, "higher"],
  ["half rate", (t) => t.half?.rate_per_publisher, (x) => String(x), null],
  ["p50 ms at half", (t) => t.half?.latency.p50_us, ms, "lower"],
  ["p99 ms at half", (t) => t.half?.latency.p99_us, ms, "lower"],
  ["p99.9 ms at half", (t) => t.half?.latency.p999_us, ms, "lower"],
  ["lost at half", (t) => t.half?.losses.lost, int, "lower"],
  ["generator busy % at held", (t) => t.atHeld?.generator?.busy_share, (x) => (x * 100).toFixed(0), "lower"],
];

function tenkSection() {
  const all = Object.fromEntries(servers.map((s) => [s, tenk(s)]));
  const subs = Object.values(all).find((t) => t?.first)?.first.subscribers ?? "?";
  const duration = Object.values(all).find((t) => t?.first)?.first.duration_s ?? "?";
  p("## fanout-10k");
  p();
  p(`${subs} subscribers in one room, one publisher at a fixed rate for ${duration} s. Per server a ladder of rates ` +
    `(${env("RESULTS_TENK_RATES", "?")} publishes/s), a fresh server for each, stopping at the first rate not held. ` +
    "A rate is **held** when every subscriber joined, nothing was lost, every publish was acknowledged ok, the publisher kept " +
    "the pace (at least 95% of the rate) and the backlog did not grow: the last delivery arrived at most 1 s after publishing " +
    "stopped (`drain_s` <= 1). Latency is from one more run at half the highest held rate. Single runs, not medians. " +
    "Targets for shardio: at least 100 publishes/s held, p99 at most 100 ms at half that rate.");
  p();
  p(`| server | ${TENK_FIGURES.map((f) => f[0]).join(" | ")} | ladder |`);
  p(`|---|${TENK_FIGURES.map(() => "---:").join("|")}|---|`);
  for (const s of servers) {
    const t = all[s];
    if (!t) {
      p(`| ${s} (${unavailable(s, "fanout-10k") ?? "not available"}) | ${TENK_FIGURES.map(() => "n/a").join(" | ")} | |`);
      continue;
    }
    const cells = TENK_FIGURES.map(([, get, fmt]) => (get(t) === undefined ? "n/a" : fmt(get(t))));
    const top = t.rungs.length && t.rungs.every((r) => r.held) ? " (the top of the ladder: it may hold more)" : "";
    const ladder = t.rungs.map((r) => (r.held ? `${r.rate} held` : `${r.rate} not held (${r.why})`)).join("; ") + top;
    p(`| ${s} | ${cells.join(" | ")} | ${ladder} |`);
  }
  const mine = all.shardio;
  if (mine) {
    const rate = mine.held?.rate;
    const p99 = mine.half?.latency.p99_us;
    p();
    p(`Targets for shardio: held ${rate ?? "nothing"} publishes/s (target >= 100: ${rate >= 100 ? "met" : "**not met**"}); ` +
      `p99 ${p99 === undefined ? "n/a" : ms(p99)} ms at half (target <= 100 ms: ${p99 !== undefined && p99 <= 100000 ? "met" : "**not met**"}).`);
    const peersRun = peers.filter((peer) => all[peer]);
    if (peersRun.length) {
      const figs = TENK_FIGURES.filter((f) => f[3]);
      p();
      p(`| ratio | ${figs.map((f) => `${f[0]} (${f[3]} is better)`).join(" | ")} |`);
      p(`|---|${figs.map(() => "---:").join("|")}|`);
      for (const peer of peersRun) p(`| shardio / ${peer} | ${figs.map(([, get]) => ratio(get(mine), get(all[peer]))).join(" | ")} |`);
    }
  }
  p();
  p("Commands (first rung of each server):");
  p();
  p("```");
  for (const s of servers) if (all[s]?.first) p(pinned(all[s].first.command));
  p("```");
  p();
}

// floor: shardio-bench floor, once per compare: what the kernel alone charges for a fan-out.
function floorSection() {
  const f = readJson("floor.json");
  p("## physical floor on this machine");
  p();
  if (!f) {
    p("Not measured (the floor run failed or did not run: see floor.txt in the raw runs).");
    p();
    return;
  }
  p(`No server and no protocol: \`shardio-bench floor\` writes ${f.size} B to each of ${int(f.connections)} loopback TCP sockets ` +
    `per pass (TCP_NODELAY, plain nonblocking write; a full socket gets its bytes on a later turn), ${f.rate} passes/s for ${f.duration_s} s, ` +
    `writer on cpu ${f.writer_cpu}, reader (one tokio task per socket) ${f.reader_cpu == null ? "unpinned" : `on cpu ${f.reader_cpu}`}. ` +
    "A pass is what the kernel alone charges one core to fan one small message out to that many sockets: a server that makes " +
    "one write per delivery cannot fan out faster here. One that coalesces the deliveries queued for a socket into one write " +
    "pays this per write, not per delivery, so at high rates its deliveries/s can pass the floor's writes/s.");
  p();
  p("| connections | passes | passes/s (asked / achieved) | pass p50 ms | pass p99 ms | µs per write | writes/s of writer time | would block | bytes read / written |");
  p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  p(`| ${int(f.connections)} | ${f.passes} | ${f.rate} / ${f.passes_per_s.toFixed(1)} | ${ms(f.pass.p50_us)} | ${ms(f.pass.p99_us)} | ` +
    `${f.write_us_mean.toFixed(2)} | ${int(f.writes_per_busy_s)} | ${int(f.would_block)} | ${f.bytes_received === f.bytes_expected ? "all" : `${f.bytes_received} / ${f.bytes_expected}`} |`);
  const rows = servers.map((s) => [s, tenk(s)?.atHeld]).filter(([, r]) => r);
  if (rows.length) {
    p();
    p(`Against fanout-10k (deliveries/s at the highest held rate; the floor's bound for ${int(rows[0][1].subscribers)} subscribers is ` +
      `${(f.writes_per_busy_s / rows[0][1].subscribers).toFixed(1)} publishes/s on one writer core):`);
    p();
    p("| server | deliveries/s | deliveries/s / floor's writes/s |");
    p("|---|---:|---:|");
    for (const [s, r] of rows) p(`| ${s} | ${int(r.deliveries_per_s)} | ${(r.deliveries_per_s / f.writes_per_busy_s).toFixed(2)} |`);
  }
  p();
  p("```");
  p(relative(f.command));
  p("```");
  p();
}

// shard-scaling: the fanout flat out on each shard count, all shards on SERVER_CPUS; per shardio
// server, deliveries per server CPU second and its share of the one-shard figure.
function scalingSection() {
  const counts = env("RESULTS_SCALE_SHARDS", "1 2 4 8 16").split(/\s+/).filter(Boolean);
  const ran = servers.filter((s) => counts.some((n) => runsOf(s, `shard-scaling-${n}`).length));
  const med = (s, n, key) => median(runsOf(s, `shard-scaling-${n}`).map((r) => get(r, key)));
  p("## shard-scaling");
  p();
  p(`The fanout shape flat out (${FANOUT_SHAPE()}) on ${counts.join(", ")} shards, every shard on cpu ` +
    `${env("RESULTS_SERVER_CPUS", "?")}: with one core for all of them, what each shard adds to a broadcast shows as ` +
    "deliveries per server CPU second falling below the one-shard figure (the scheduler's share included). Medians of " +
    `${env("RESULTS_REPS", "?")} runs per shard count; the servers and the counts take turns within each repetition. ` +
    "Targets (issue 15): 4 shards >= 0.9 x 1 shard, 16 shards >= 0.8 x 1 shard.");
  p();
  if (!ran.length) {
    p("Not measured.");
    p();
    return;
  }
  p(`| shards | ${ran.map((s) => `${s}: deliveries/server CPU s | ${s}: vs 1 shard | ${s}: deliveries/s | ${s}: p99 ms | ${s}: lost`).join(" | ")} |`);
  p(`|---:|${ran.map(() => "---:|---:|---:|---:|---:").join("|")}|`);
  for (const n of counts) {
    const cells = ran.map((s) => {
      const per = med(s, n, "deliveries_per_server_cpu_s");
      const one = med(s, counts[0], "deliveries_per_server_cpu_s");
      const p99 = med(s, n, "latency.p99_us");
      const lost = med(s, n, "losses.lost");
      const dps = med(s, n, "deliveries_per_s");
      return [per === undefined ? "n/a" : int(per), ratio(per, one), dps === undefined ? "n/a" : int(dps),
        p99 === undefined ? "n/a" : ms(p99), lost === undefined ? "n/a" : int(lost)].join(" | ");
    });
    p(`| ${n} | ${cells.join(" | ")} |`);
  }
  if (ran.includes("shardio") && ran.length > 1) {
    p();
    p(`| shards | ${ran.filter((s) => s !== "shardio").map((s) => `shardio / ${s}, per server CPU s`).join(" | ")} |`);
    p(`|---:|${ran.filter((s) => s !== "shardio").map(() => "---:").join("|")}|`);
    for (const n of counts) {
      const mine = med("shardio", n, "deliveries_per_server_cpu_s");
      p(`| ${n} | ${ran.filter((s) => s !== "shardio").map((s) => ratio(mine, med(s, n, "deliveries_per_server_cpu_s"))).join(" | ")} |`);
    }
  }
  p();
  p("Commands (the first shard count's first run of each server; the others differ in `--shards` only):");
  p();
  p("```");
  for (const s of ran) {
    const r = runsOf(s, `shard-scaling-${counts[0]}`)[0];
    if (r) p(pinned(r.command));
  }
  p("```");
  p();
}

const FANOUT_SHAPE = () => {
  const r = servers.map((s) => runsOf(s, `shard-scaling-1`)[0]).find(Boolean);
  return r ? `${int(r.subscribers)} subscribers in ${int(r.rooms)} rooms, ${r.publishers} publishers` : "see the commands";
};

const SECTIONS = { "fanout-10k": tenkSection, floor: floorSection, "shard-scaling": scalingSection };

for (const line of targetsSection()) p(line);

for (const scenario of scenarios) {
  if (SECTIONS[scenario]) {
    SECTIONS[scenario]();
    continue;
  }
  const figs = FIGURES[scenario];
  if (!figs) continue;
  const med = {};
  for (const s of servers) {
    const runs = runsOf(s, scenario);
    med[s] = { n: runs.length, cmd: runs[0]?.command };
    for (const [, key] of figs) med[s][key] = median(runs.map((r) => get(r, key)));
  }
  p(`## ${scenario}`);
  p();
  if (NOTES[scenario]) {
    p(NOTES[scenario]);
    p();
  }
  p(`| server | runs | ${figs.map((f) => f[0]).join(" | ")} |`);
  p(`|---|---|${figs.map(() => "---:").join("|")}|`);
  for (const s of servers) {
    const cells = figs.map(([, key, fmt]) => (med[s][key] === undefined ? "n/a" : fmt(med[s][key])));
    const why = unavailable(s, scenario);
    const label = med[s].n === 0 ? `${s} (${why ?? "not available"})` : s;
    p(`| ${label} | ${med[s].n} | ${cells.join(" | ")} |`);
  }
  const peersRun = peers.filter((peer) => med[peer].n > 0);
  if (med.shardio?.n > 0 && peersRun.length) {
    p();
    p(`| ratio | ${figs.map((f) => `${f[0]} (${f[3]} is better)`).join(" | ")} |`);
    p(`|---|${figs.map(() => "---:").join("|")}|`);
    for (const peer of peersRun) {
      const cells = figs.map(([, key]) => ratio(med.shardio[key], med[peer][key]));
      p(`| shardio / ${peer} | ${cells.join(" | ")} |`);
    }
  }
  p();
  p("Commands (first run of each server; ports are picked free per run):");
  p();
  p("```");
  for (const s of servers) if (med[s].cmd) p(pinned(med[s].cmd));
  p("```");
  p();
}

// The benchmark issue's targets for shardio (one shard on one core, generator on another),
// checked against this run's medians. Printed after the context, before the sections.
function targetsSection() {
  if (env("RESULTS_CORES", "1") !== "1") return [];
  const medOf = (server, scenario, key) => median(runsOf(server, scenario).map((r) => get(r, key)));
  const maxOf = (server, scenario, key) => {
    const v = runsOf(server, scenario).map((r) => get(r, key)).filter((x) => typeof x === "number");
    return v.length ? Math.max(...v) : undefined;
  };
  const rows = [];
  const row = (what, value, fmt, target, meets) => {
    const verdict = value === undefined ? "not measured" : meets(value) ? "met" : "**not met**";
    rows.push(`| ${what} | ${value === undefined ? "n/a" : fmt(value)} | ${target} | ${verdict} |`);
  };
  const has = (sc) => scenarios.includes(sc);
  if (has("fanout")) {
    const perCpu = medOf("shardio", "fanout", "deliveries_per_server_cpu_s");
    row("fanout flat out: deliveries per server CPU second", perCpu, int, ">= 1,500,000", (v) => v >= 1.5e6);
    row("fanout flat out: lost (worst run)", maxOf("shardio", "fanout", "losses.lost"), int, "0", (v) => v === 0);
    for (const [peer, times] of [["socketioxide", 2], ["node-single", 20], ["node-cluster", 20]]) {
      const other = medOf(peer, "fanout", "deliveries_per_server_cpu_s");
      const r = perCpu !== undefined && other ? perCpu / other : undefined;
      row(`fanout flat out: per CPU second, shardio / ${peer}`, r, (x) => x.toFixed(2), `>= ${times}`, (v) => v >= times);
    }
  }
  if (has("fanout-10k")) {
    const t = tenk("shardio");
    row("10,000 subscribers, one room: highest rate held, publishes/s", t?.held?.rate, int, ">= 100", (v) => v >= 100);
    row(`10,000 subscribers: p99 ms at half that rate (${t?.half?.rate_per_publisher ?? "?"}/s)`, t?.half?.latency.p99_us,
      ms, "<= 100", (v) => v <= 100000);
  }
  if (has("connect")) {
    row("connect: handshakes per server CPU second", medOf("shardio", "connect", "handshakes_per_server_cpu_s"), int,
      ">= 10,000", (v) => v >= 10000);
  }
  if (has("idle")) {
    const n = medOf("shardio", "idle", "connected");
    row(`idle: server RSS per connection, bytes (at ${n === undefined ? "?" : int(n)} connections)`,
      medOf("shardio", "idle", "rss_per_conn_bytes"), int, "<= 4,096 at 15,000", (v) => v <= 4096 && n >= 15000);
  }
  if (!rows.length) return [];
  return [
    "## Targets",
    "",
    "The benchmark issue's targets for shardio on this machine (one shard on one core, the generator on the other), " +
      "against this run's medians (fanout-10k: its ladder). See the sections below for every figure and the peers; " +
      "set latency against the section \"physical floor on this machine\" (the kernel's own time for one pass over the sockets).",
    "",
    "| target | shardio | target | |",
    "|---|---:|---:|---|",
    ...rows,
    "",
  ];
}

const cmds = path.join(dir, "commands.txt");
if (fs.existsSync(cmds)) {
  p("## Server commands");
  p();
  p("```");
  const seen = new Set();
  for (const line of fs.readFileSync(cmds, "utf8").split("\n")) {
    const m = line.match(/^\s+server: (.*)$/);
    if (!m) continue;
    const generic = relative(m[1]).replace(/redis:\/\/127\.0\.0\.1:\d+/g, "redis://127.0.0.1:RPORT").replace(/(--port |127\.0\.0\.1:)\d+/g, "$1PORT");
    if (!seen.has(generic)) {
      seen.add(generic);
      p(generic);
    }
  }
  p("```");
  p();
}

process.stdout.write(out.join("\n"));
