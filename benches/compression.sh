#!/usr/bin/env bash
# WebSocket compression (--websocket-compression) against none, with the same binary, in the
# same run: the server's memory per idle connection, and fanout of messages over the 1 KiB
# threshold. The variants alternate within each repetition and every run starts a fresh
# server (one shard on cpu 0, the generator on cpu 1). Prints the medians; the raw JSON goes to
# $OUT. Results: benches/RESULTS-compression.md.
#
#   REPS=5 bash benches/compression.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
IDLE_COUNT=${IDLE_COUNT:-5000}
PAYLOAD=${PAYLOAD:-2000}
DURATION=${DURATION:-5}
PORT=${PORT:-3300}
OUT=${OUT:-target/bench-compression/$(date -u +%Y%m%dT%H%M%SZ)}

cargo build --release --bin shardio --bin shardio-bench
mkdir -p "$OUT"
bench=target/release/shardio-bench
fanout="fanout --subscribers 1000 --rooms 10 --publishers 10 --payload $PAYLOAD --duration $DURATION --drain 5"
idle="idle --count $IDLE_COUNT --settle 2 --duration 2"

# run NAME SERVER_FLAGS BENCH_ARGS...: one fresh server, one generator run, the server's
# /metrics kept beside the JSON.
run() {
  local name=$1 flags=$2
  shift 2
  # shellcheck disable=SC2086
  taskset -c 0 target/release/shardio --listen "127.0.0.1:$PORT" --shards 1 $flags &
  local pid=$!
  for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  taskset -c 1 "$bench" "$@" --url "http://127.0.0.1:$PORT" --server-pid "$pid" --cpu 1 \
    --json "$OUT/$name-$rep.json" >"$OUT/$name-$rep.txt" 2>&1 || echo "$name run $rep failed" >&2
  curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/$name-$rep.metrics" || true
  kill "$pid"
  wait "$pid" || true
}

for rep in $(seq "$REPS"); do
  echo "repetition $rep of $REPS" >&2
  # shellcheck disable=SC2086
  {
    run idle-off "" $idle
    run idle-negotiated --websocket-compression $idle --ws-compression negotiate
    run idle-compressing --websocket-compression $idle --ws-compression compress
    run fanout-off "" $fanout --ws-compression negotiate
    run fanout-on --websocket-compression $fanout --ws-compression negotiate
  }
done

python3 - "$OUT" <<'PY'
import glob, json, os, re, statistics, sys
out = sys.argv[1]

def runs(name):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{name}-*.json"))]

def metric(name, series):
    total = 0.0
    for p in glob.glob(f"{out}/{name}-*.metrics"):
        for line in open(p):
            if line.startswith(series + "{") or line.startswith(series + " "):
                total += float(line.rsplit(" ", 1)[1])
    return total / max(1, len(glob.glob(f"{out}/{name}-*.metrics")))

med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"raw runs: {out}")
print("\nidle: server RSS per connection (bytes), median of", len(runs("idle-off")), "runs")
for name in ["idle-off", "idle-negotiated", "idle-compressing"]:
    r = runs(name)
    per = [x["rss_per_conn_bytes"] for x in r if x.get("rss_per_conn_bytes")]
    print(f"  {name:18s} {med(per):9.0f}   runs: {', '.join(f'{v:.0f}' for v in per)}   connected: {min(x['connected'] for x in r)}")
print("\nfanout flat out, payload padding", runs("fanout-off")[0]["payload_padding"], "bytes: medians")
print("  variant       deliveries/s  per server CPU s  p50 ms  p99 ms   lost  bytes/message  on the wire  compressed  server busy  generator busy")
for name in ["fanout-off", "fanout-on"]:
    r = runs(name)
    d = med([x["deliveries_per_s"] for x in r])
    c = med([x["deliveries_per_server_cpu_s"] or 0 for x in r])
    p50 = med([x["latency"]["p50_us"] / 1000 for x in r])
    p99 = med([x["latency"]["p99_us"] / 1000 for x in r])
    lost = max(x["losses"]["lost"] for x in r)
    # Means over the runs, from the server's counters: Engine.IO bytes per message queued, and
    # what compression left of them.
    messages = metric(name, "shardio_messages_sent_total")
    sent = metric(name, "shardio_sent_bytes_total")
    saved = metric(name, "shardio_compression_saved_bytes_total")
    share = metric(name, "shardio_messages_sent_compressed_total") / max(messages, 1)
    # Shares of one core over the delivery span: which side set the pace.
    server_busy = med([x["server"]["cpu_seconds"] / x["delivery_span_s"] for x in r])
    generator_busy = med([x["generator"]["busy_share"] for x in r])
    print(f"  {name:12s} {d:13.0f} {c:17.0f} {p50:7.1f} {p99:7.1f} {lost:6d} {sent / max(messages, 1):14.0f} {(sent - saved) / max(messages, 1):12.0f} {share:10.0%} {server_busy:12.0%} {generator_busy:15.0%}")
PY
