#!/usr/bin/env python3
"""The many-machine simulation: M shardio processes (one shard each, --no-pin) on loopback,
one Redis, R rooms whose members sit on --copies machines each (so a machine holds members of
copies/M of the rooms), a fixed total publish rate. For every subscription mode and every M it
measures, per machine, what arrives from Redis (messages and bytes, from /metrics), the Redis
bridge thread's CPU (/proc/<pid>/task/*/stat, the thread named "redis-bridge"), the Redis
server's CPU, and end to end delivery and latency (shardio-bench cluster-sim). It writes a
Markdown report with a projection to 100 and 1,000 machines.

    python3 benches/cluster_sim.py                       # pattern and rooms, M = 2,4,8,16
    python3 benches/cluster_sim.py --modes rooms --machines 4 --duration 5

Modes are pluggable: MODES maps a mode to the Redis it needs (a function that starts it and
returns a Redis handle) and the shardio flags that select it: `pattern` and `rooms` on one
redis-server, `sharded` on a Redis Cluster of 3 masters (its Redis CPU is the three nodes').
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SHARDIO = os.path.join(TARGET, "release", "shardio")
BENCH = os.path.join(TARGET, "release", "shardio-bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, limit=10.0):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def connects(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Redis:
    """A Redis for one run: its URL for shardio, the pids whose CPU counts as Redis's."""

    def __init__(self, url, procs):
        self.url = url
        self.procs = procs

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def start_single_redis():
    """One redis-server on a free port, no persistence."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for("redis-server", lambda: connects(port))
    return Redis(f"redis://127.0.0.1:{port}/0", [proc])


def start_redis_cluster(masters=3):
    """A Redis Cluster of `masters` masters without replicas on free ports, as the tests build
    it (tests/it/common/rcluster.rs): redis-server --cluster-enabled, then
    redis-cli --cluster create; returns once every node says cluster_state:ok."""
    workdir = tempfile.mkdtemp(prefix="shardio-cluster-sim-")
    # Redis refuses a cluster node above port 55535 (its bus port is 10000 higher).
    ports = []
    while len(ports) < masters:
        port = free_port()
        if port <= 55535 and port not in ports:
            ports.append(port)
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--dir", workdir,
             "--cluster-node-timeout", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports
    ]
    for port in ports:
        wait_for(f"redis-server on {port}", lambda port=port: connects(port))
    subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
         "--cluster-replicas", "0", "--cluster-yes"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def settled():
        return all(
            "cluster_state:ok" in subprocess.run(
                ["redis-cli", "-p", str(p), "cluster", "info"],
                capture_output=True, text=True).stdout
            for p in ports)
    wait_for("the Redis Cluster to settle", settled, limit=30.0)
    shutil.rmtree(workdir, ignore_errors=True)  # the nodes keep their open files
    return Redis(",".join(f"redis://127.0.0.1:{p}" for p in ports), procs)


# mode -> (how to start its Redis, shardio's flags for it)
MODES = {
    "pattern": (start_single_redis, ["--redis-subscribe", "pattern"]),
    "rooms": (start_single_redis, ["--redis-subscribe", "rooms"]),
    # Node's sharded adapter on 3 masters, one channel per room held (SSUBSCRIBE).
    "sharded": (start_redis_cluster,
                ["--redis-mode", "sharded", "--redis-subscription-mode", "dynamic"]),
}


def cpu_seconds(pid, thread_name=None):
    """CPU seconds of a process's threads (all, or those named `thread_name`), from
    /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU; /proc's stat counts 10 ms ticks,
    too coarse for a bridge that uses tens of milliseconds in a run)."""
    total = 0
    found = False
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            if thread_name is not None:
                with open(f"{base}/comm") as f:
                    if f.read().strip() != thread_name:
                        continue
            with open(f"{base}/schedstat") as f:
                total += int(f.read().split()[0])
            found = True
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    if not found:
        raise RuntimeError(f"pid {pid} has no thread named {thread_name}")
    return total / 1e9


def scrape(port):
    """The process-wide samples of /metrics, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            samples[m.group(1)] = samples.get(m.group(1), 0.0) + float(m.group(2))
    return samples


class Machine:
    def __init__(self, redis, flags, log):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [SHARDIO, "--listen", f"127.0.0.1:{self.port}", "--shards", "1", "--no-pin",
             "--redis", redis.url, *flags],
            stdout=log, stderr=log)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def sample(self):
        m = scrape(self.port)
        return {
            "messages_in": m.get("shardio_redis_messages_in_total", 0.0),
            "bytes_in": m.get("shardio_redis_bytes_in_total", 0.0),
            "bridge_cpu": cpu_seconds(self.proc.pid, "redis-bridge"),
            "process_cpu": cpu_seconds(self.proc.pid),
        }

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(mode, m, args, workdir):
    """One run: starts Redis and the machines, samples counters and CPU around the bench."""
    start_redis, flags = MODES[mode]
    redis = start_redis()
    log = open(os.path.join(workdir, f"{mode}-{m}.log"), "w")
    machines = []
    try:
        machines = [Machine(redis, flags, log) for _ in range(m)]
        for i, mach in enumerate(machines):
            wait_for(f"machine {i} ready", mach.ready)
        out = os.path.join(workdir, f"{mode}-{m}.json")
        subscribers = args.rooms * min(args.copies, m) * args.members
        cmd = [BENCH, "cluster-sim",
               "--urls", ",".join(f"http://127.0.0.1:{x.port}" for x in machines),
               "--copies", str(min(args.copies, m)),
               "--rooms", str(args.rooms), "--subscribers", str(subscribers),
               "--publishers", str(args.publishers),
               "--rate", str(args.rate / args.publishers),
               "--duration", str(args.duration), "--drain", "3",
               "--threads", "1", "--json", out]
        # Sampled around the whole bench: setup and drain add joins and quiet time, but no
        # broadcast goes through Redis outside the publishing phase (probes aside: one per
        # machine every 2 s, subtracted below).
        before = [x.sample() for x in machines]
        redis_before = sum(cpu_seconds(p) for p in redis.pids)
        t0 = time.monotonic()
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # The room channels are there while the generator's clients are: the most seen.
        channels = [0.0] * m
        while bench.poll() is None:
            for i, x in enumerate(machines):
                channels[i] = max(channels[i], scrape(x.port).get(
                    "shardio_redis_room_channels", 0.0))
            time.sleep(0.5)
        output = bench.stdout.read().decode(errors="replace")
        wall = time.monotonic() - t0
        after = [x.sample() for x in machines]
        redis_after = sum(cpu_seconds(p) for p in redis.pids)
        if bench.returncode != 0:
            raise RuntimeError(f"cluster-sim failed:\n{output}")
        with open(out) as f:
            report = json.load(f)
    finally:
        for mach in machines:
            mach.stop()
        redis.stop()
        log.close()
    probes = wall / 2.0
    per = []
    for b, a, c in zip(before, after, channels):
        per.append({k: a[k] - b[k] for k in ("messages_in", "bytes_in", "bridge_cpu",
                                             "process_cpu")}
                   | {"room_channels": c})
    msgs = [max(p["messages_in"] - probes, 0) for p in per]
    return {
        "mode": mode, "machines": m, "wall_s": wall, "duration_s": args.duration,
        "published": report["publishes_sent"],
        "publish_rate": report["publishes_per_s"],
        "room_fraction": min(args.copies, m) / m,
        "messages_in_per_machine": sum(msgs) / m,
        "messages_in_max": max(msgs),
        "bytes_in_per_machine": sum(p["bytes_in"] for p in per) / m,
        "room_channels_per_machine": sum(p["room_channels"] for p in per) / m,
        "bridge_cpu_per_machine": sum(p["bridge_cpu"] for p in per) / m,
        "process_cpu_per_machine": sum(p["process_cpu"] for p in per) / m,
        "redis_cpu": redis_after - redis_before,
        "expected": report["losses"]["expected"],
        "received": report["losses"]["received"],
        "lost": report["losses"]["lost"],
        "p50_us": report["latency"]["p50_us"],
        "p99_us": report["latency"]["p99_us"],
        "deliveries_per_s": report["deliveries_per_s"],
        "command": " ".join(cmd),
    }


def fit_line(points):
    """Least squares y = a + b * x over (x, y) points: (a, b)."""
    n = len(points)
    if n < 2:
        return 0.0, 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if not sxx:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def median_rows(runs):
    """One row per (mode, M): the median of every figure over the repetitions."""
    groups = {}
    for r in runs:
        groups.setdefault((r["mode"], r["machines"]), []).append(r)
    rows = []
    for reps in groups.values():
        row = dict(reps[0])
        for key, value in reps[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values = sorted(r[key] for r in reps)
                row[key] = values[len(values) // 2]
        row["reps"] = len(reps)
        rows.append(row)
    return rows


def report(rows, args, started, argv):
    def us(x):
        return f"{x:,.0f}"

    lines = []
    w = lines.append
    w("# The many-machine simulation (`benches/cluster_sim.py`)")
    w("")
    w(f"Run {started} on {platform.node()} ({os.cpu_count()} cores, "
      f"{platform.release()}; commit {args.commit}), shared with other builds: CPU figures are "
      "indicative, not "
      "clean. M shardio processes (`--shards 1 --no-pin`, release build) and one "
      "`redis-server` on loopback (`sharded`: a Redis Cluster of 3 masters, no replicas); one "
      "`shardio-bench cluster-sim` generator (one thread).")
    w("")
    w(f"Load: {args.rooms} rooms, each with {args.members} subscribers on each of "
      f"{args.copies} consecutive machines (so a machine holds members of {args.copies}/M of "
      f"the rooms), {args.publishers} publishers (publisher p on machine p mod M) publishing "
      f"to the rooms in turn, {args.rate:g} publishes/s in total, for {args.duration:g} s. "
      "Per machine: messages and payload bytes that arrived from Redis "
      "(`shardio_redis_messages_in_total`, `shardio_redis_bytes_in_total`; the probe, one "
      "message per 2 s, subtracted), the `redis-bridge` thread's CPU and the whole process's "
      "(from /proc/<pid>/task/*/schedstat), averaged over the machines. Redis: the redis-server process's CPU "
      "(`sharded`: the three masters' together).")
    w("")
    w("Command: `" + " ".join(["python3 benches/cluster_sim.py", argv]).strip() + "`. "
      f"Each row is the median of {args.reps} runs; modes alternate within each M, and every "
      "run starts a fresh Redis and fresh machines.")
    w("")
    w("| mode | M | share of rooms held / machine | room channels / machine | Redis msgs in / s / machine | KB in / s / machine | "
      "bridge CPU % / machine | bridge µs / msg in | process CPU % / machine | "
      "Redis CPU % | delivered / expected | p50 ms | p99 ms |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["wall_s"]
        per_msg = (r["bridge_cpu_per_machine"] / r["messages_in_per_machine"] * 1e6
                   if r["messages_in_per_machine"] else 0.0)
        w(f"| {r['mode']} | {r['machines']} | {r['room_fraction']:.3f} | "
          f"{r['room_channels_per_machine']:.0f} | "
          f"{r['messages_in_per_machine'] / r['duration_s']:,.0f} | "
          f"{r['bytes_in_per_machine'] / r['duration_s'] / 1024:,.1f} | "
          f"{100 * r['bridge_cpu_per_machine'] / t:.2f} | {per_msg:.1f} | "
          f"{100 * r['process_cpu_per_machine'] / t:.2f} | {100 * r['redis_cpu'] / t:.1f} | "
          f"{r['received']:,} / {r['expected']:,} | {r['p50_us'] / 1000:.2f} | "
          f"{r['p99_us'] / 1000:.2f} |")
    w("")
    # The model.
    w("## Projection to 100 and 1,000 machines")
    w("")
    w("Model, per mode, at a total publish rate T (broadcasts/s to single rooms), each room's "
      "members on k machines:")
    w("")
    w("- a machine's Redis ingress is T x f, where f is the share of the cluster's broadcasts "
      "it receives: f = 1 in `pattern` mode (every machine receives everything), f = k/M in "
      "`rooms` and `sharded` modes (the rooms it holds, rooms carrying equal traffic);")
    w("- its bridge CPU per second is c_0 + ingress x c_in, fitted over every row of both "
      "modes: the bridge does the same work for each broadcast it receives in either mode "
      "(decode, encode the frames once, hand them to the shards, which look the room up; it "
      "does not drop broadcasts for rooms it has no member of before decoding), and c_0 is "
      "what it does besides (timers, the probe, the run's SUBSCRIBE batches);")
    w("- Redis's CPU is T x (c_pub + D x c_out), D the deliveries Redis makes per publish: M in "
      "`pattern` mode (one per machine, each pattern matched per publish), k in `rooms` and "
      "`sharded` modes; c_pub and c_out fitted over every run (in `sharded` mode that work is "
      "spread over the cluster's masters, each carrying the channels of its slots).")
    w("")
    by_mode = {}
    for r in rows:
        by_mode.setdefault(r["mode"], []).append(r)
    c_0, c_in = fit_line([(r["messages_in_per_machine"] / r["wall_s"],
                           r["bridge_cpu_per_machine"] / r["wall_s"]) for r in rows])

    def fanout(r):
        # `rooms` and `sharded` subscribe per room: Redis delivers to the k machines holding it.
        return r["machines"] if r["mode"] == "pattern" else min(args.copies, r["machines"])

    # Redis CPU = T*c_pub + T*D*c_out: two unknowns, least squares.
    xs = [(r["published"], r["published"] * fanout(r), r["redis_cpu"]) for r in rows]
    s11 = sum(a * a for a, _, _ in xs)
    s12 = sum(a * b for a, b, _ in xs)
    s22 = sum(b * b for _, b, _ in xs)
    t1 = sum(a * y for a, _, y in xs)
    t2 = sum(b * y for _, b, y in xs)
    det = s11 * s22 - s12 * s12
    if det:
        c_pub = (t1 * s22 - t2 * s12) / det
        c_out = (s11 * t2 - s12 * t1) / det
    else:
        c_pub, c_out = 0.0, 0.0
    w(f"Fitted: c_0 = {c_0 * 1e3:.1f} ms per second (per machine), c_in = {c_in * 1e6:.1f} µs "
      f"per message, c_pub = {c_pub * 1e6:.1f} µs per publish, c_out = {c_out * 1e6:.2f} µs per "
      "delivery by Redis.")
    w("")
    t = args.rate
    k = args.copies
    w(f"At the measured T = {t:g} publishes/s and k = {k}, and at T = 100,000/s (a large "
      "deployment):")
    w("")
    w("| mode | M | T (publishes/s) | msgs in / s / machine | bridge CPU / machine (cores) | "
      "Redis deliveries / s | Redis CPU (cores) |")
    w("|---|---|---|---|---|---|---|")
    for rate in (t, 100_000):
        for mode in by_mode:
            for m in (100, 1000):
                f = 1.0 if mode == "pattern" else k / m
                d = m if mode == "pattern" else k
                ingress = rate * f
                w(f"| {mode} | {m:,} | {rate:,.0f} | {ingress:,.0f} | "
                  f"{c_0 + ingress * c_in:.3f} | {rate * d:,.0f} | "
                  f"{rate * (c_pub + d * c_out):.2f} |")
    w("")
    def redis_max(d):
        return 1 / (c_pub + d * c_out) if c_pub + d * c_out > 0 else float("inf")

    bridge_max = (1 - c_0) / c_in if c_in > 0 else float("inf")
    w("Ceilings from the same costs: Redis runs commands on one thread, so one Redis carries "
      f"at most 1 / (c_pub + D x c_out) publishes/s: {redis_max(100):,.0f} in `pattern` mode "
      f"at M = 100, {redis_max(1000):,.0f} at M = 1,000 (every publish is written to every "
      f"machine), {redis_max(k):,.0f} in `rooms` mode whatever M (k = {k} deliveries per "
      "publish); past that, the publishes must be spread over several Redis (the sharded mode "
      "on a Redis Cluster). The bridge is one thread per machine: it receives at most "
      f"(1 - c_0) / c_in = {bridge_max:,.0f} messages/s, the whole cluster's publish rate in "
      "`pattern` mode, the share of its rooms in `rooms` mode.")
    w("")
    w("The `bridge µs / msg in` column divides all of the bridge's CPU by the messages it "
      "received, so the fixed part c_0 weighs more as ingress falls; the fit separates them. "
      "In `rooms` mode Redis's "
      "work per publish stays k deliveries however many machines there are, and a machine's "
      "ingress falls as 1/M at a fixed T: it grows with the rooms it holds, not with the "
      "cluster's traffic. The model ignores what a larger cluster also adds (more rooms per "
      "machine when rooms are many and small, SUBSCRIBE churn as rooms come and go: one "
      "command per batch of changes) and assumes rooms of equal traffic.")
    w("")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="pattern,rooms",
                    help="comma-separated, from: " + ", ".join(MODES))
    ap.add_argument("--machines", default="2,4,8,16")
    ap.add_argument("--rooms", type=int, default=64)
    ap.add_argument("--copies", type=int, default=2, help="machines holding each room")
    ap.add_argument("--members", type=int, default=2, help="subscribers per room per machine")
    ap.add_argument("--publishers", type=int, default=16)
    ap.add_argument("--rate", type=float, default=1000.0, help="total publishes per second")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--reps", type=int, default=3, help="runs per (mode, M); medians reported")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "RESULTS-cluster.md"))
    ap.add_argument("--json", help="also write every run as JSON here")
    ap.add_argument("--from-json", help="write the report from runs saved with --json")
    args = ap.parse_args()
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            sys.exit(f"unknown mode {mode}: known are {', '.join(MODES)}")
    for binary in (SHARDIO, BENCH):
        if not os.path.exists(binary):
            sys.exit(f"{binary} missing: cargo build --release --bin shardio --bin shardio-bench")
    if shutil.which("redis-server") is None:
        sys.exit("redis-server missing (apt-get install redis-server)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    args.commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip() or "unknown"
    if args.from_json:
        with open(args.from_json) as f:
            runs = json.load(f)
        args.reps = max(r["rep"] for r in runs) + 1
        args.commit = runs[0].get("commit", args.commit)
        with open(args.out, "w") as f:
            f.write(report(median_rows(runs), args, runs[0]["started"], runs[0]["argv"]))
        print(f"wrote {args.out}")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="cluster-sim-") as workdir:
        # Modes alternate within each M, so that the machine's background load falls on both.
        for rep in range(args.reps):
            for m in [int(x) for x in args.machines.split(",")]:
                for mode in modes:
                    row = measure(mode, m, args, workdir)
                    row["rep"] = rep
                    row["started"] = started
                    row["commit"] = args.commit
                    row["argv"] = " ".join(sys.argv[1:])
                    print(json.dumps({k: v for k, v in row.items() if k != "command"}),
                          flush=True)
                    rows.append(row)
    with open(args.out, "w") as f:
        f.write(report(median_rows(rows), args, started, " ".join(sys.argv[1:])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
