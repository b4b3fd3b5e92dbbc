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
const servers = env("RESULTS_SERVERS", "shardio node-single node-cluster socketioxide").split(/\s+/).filter(Boolean);
const scenarios = env("RESULTS_SCENARIOS", "fanout fanout-paced connect idle").split(/\s+/).filter(Boolean);
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
  idle: [
    ["connected", "connected", int, "higher"],
    ["RSS/conn bytes", "rss_per_conn_bytes", int, "lower"],
    ["server RSS MiB", "rss_after_bytes", (x) => (x / 1048576).toFixed(1), "lower"],
    ["idle CPU % of a core", "idle_cpu_percent", (x) => x.toFixed(2), "lower"],
  ],
};

const NOTES = {
  fanout:
    "Flat out: each publisher keeps at most `--window` publishes unacknowledged, so the rate is what the server sustains " +
    "and the latency is mostly the queue that window allows (Little's law); compare latency in `fanout-paced`. " +
    "`reordered` counts deliveries that came after a later one of the same publisher (delivered, but out of order). " +
    "`generator busy %` near 100 would mean the generator, not the server, set the pace.",
  "fanout-paced": "The same shape at a fixed publish rate that every server sustains: end-to-end latency at equal load.",
  connect:
    "Full handshakes (TCP, WebSocket upgrade, Engine.IO open, Socket.IO CONNECT to `/`), `--concurrency` in flight; " +
    "all connections stay open until the end. Server CPU covers the connect phase only.",
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

function unavailable(server) {
  const f = path.join(dir, `${server}.unavailable`);
  return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim() : null;
}

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
p("Each figure is the median of " + env("RESULTS_REPS", "?") + " runs; every server is started fresh for each run.");
p("Ratios are shardio / peer: above 1 means shardio has more of that figure (better for rates, worse for latency, CPU and memory).");
p();
p("## Context");
p();
p(`- machine: ${os.cpus()[0]?.model ?? "unknown"}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`);
p(`- kernel: ${os.type()} ${os.release()}`);
p(`- commit: ${env("RESULTS_COMMIT", "unknown")}`);
const cmdFile = path.join(dir, "commands.txt");
const ranAt = fs.existsSync(cmdFile) ? fs.statSync(cmdFile).mtime : new Date();
p(`- date of the runs: ${ranAt.toISOString()}`);
p(`- toolchain: ${sh("rustc --version")}; node ${process.version}; ${sh("redis-server --version").split(" ").slice(0, 3).join(" ")}`);
const startLoad = fs.existsSync(path.join(dir, "loadavg-start")) ? fs.readFileSync(path.join(dir, "loadavg-start"), "utf8").trim() : "unknown";
p(`- load average (1/5/15 min) before the runs: ${startLoad}; after: ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}` +
  " (other work on the machine shares the cores: compare figures of one run, not across runs)");
p(`- pinning: servers on cpu ${env("RESULTS_SERVER_CPUS", "?")} (taskset), generator on cpu ${env("RESULTS_BENCH_CPU", "?")} (taskset and --cpu)`);
p("- server CPU and RSS are summed over all of a server's processes (node-cluster: primary, workers and its redis-server)");
p();
p("Servers:");
p();
for (const s of servers) {
  const why = unavailable(s);
  p(`- ${s}${why ? `: **not available** (${why})` : ""}`);
}
p();

for (const scenario of scenarios) {
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
    const label = med[s].n === 0 ? `${s} (not available)` : s;
    p(`| ${label} | ${med[s].n} | ${cells.join(" | ")} |`);
  }
  if (servers.includes("shardio") && peers.length) {
    p();
    p(`| ratio | ${figs.map((f) => `${f[0]} (${f[3]} is better)`).join(" | ")} |`);
    p(`|---|${figs.map(() => "---:").join("|")}|`);
    for (const peer of peers) {
      const cells = figs.map(([, key]) => {
        const a = med.shardio[key];
        const b = med[peer][key];
        if (a === undefined || b === undefined) return "n/a";
        if (b === 0) return a === 0 ? "1.00" : "n/a";
        return (a / b).toFixed(2);
      });
      p(`| shardio / ${peer} | ${cells.join(" | ")} |`);
    }
  }
  p();
  p("Commands (first run of each server; ports are picked free per run):");
  p();
  p("```");
  const pin = env("RESULTS_BENCH_CPU", null);
  for (const s of servers) if (med[s].cmd) p((pin ? `taskset -c ${pin} ` : "") + relative(med[s].cmd));
  p("```");
  p();
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
    const generic = relative(m[1]).replace(/(--port |127\.0\.0\.1:)\d+/g, "$1PORT").replace(/redis:\/\/127\.0\.0\.1:\d+/, "redis://127.0.0.1:RPORT");
    if (!seen.has(generic)) {
      seen.add(generic);
      p(generic);
    }
  }
  p("```");
  p();
}

process.stdout.write(out.join("\n"));
