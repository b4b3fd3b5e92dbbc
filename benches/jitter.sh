#!/usr/bin/env bash
# Connection state recovery under network jitter, and what recovery costs a fan-out.
#
#   bash benches/jitter.sh                       # jitter (2,000 clients) and fanout, 2 reps
#   CLIENTS=10000 RATE=2 SCENARIOS=jitter REPS=1 bash benches/jitter.sh
#
# jitter: `shardio-bench jitter` (CLIENTS clients in ROOMS rooms, RATE messages a second to each
# room, DURATION seconds during which DROP_SHARE of the clients drop every second, half by a TCP
# reset and half by a silent stall of STALL_MS, longer than the heartbeat PING_INTERVAL +
# PING_TIMEOUT given to every server; reconnection after 0.5-3 s) against, in turn:
#   shardio-recovery  shardio --recovery-window, clients sending pid and offset back
#   shardio-off       shardio without it (clients join their room again on a fresh session)
#   node-recovery     the Node peer (benches/peers/node) with connectionStateRecovery
# fanout: `shardio-bench fanout` flat out (FANOUT_SUBS subscribers, FANOUT_ROOMS rooms,
# FANOUT_PUBS publishers, FANOUT_DURATION s) against shardio with --recovery-window and without,
# alternating, REPS times each: the cost of offsets and of the log.
#
# Servers are pinned to SERVER_CPUS [0] (shardio --shards = its core count), the generator to
# BENCH_CPU [1]. JSON of every run goes to OUT_DIR [benches/results/jitter-<UTC time>]. Each
# server is started fresh for each run and stopped after it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CLIENTS=${CLIENTS:-2000}
ROOMS=${ROOMS:-20}
RATE=${RATE:-10}
DURATION=${DURATION:-30}
DROP_SHARE=${DROP_SHARE:-0.05}
PING_INTERVAL=${PING_INTERVAL:-3000}
PING_TIMEOUT=${PING_TIMEOUT:-3000}
STALL_MS=${STALL_MS:-7000}
SETTLE=${SETTLE:-20}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_ROOMS=${FANOUT_ROOMS:-10}
FANOUT_PUBS=${FANOUT_PUBS:-10}
FANOUT_DURATION=${FANOUT_DURATION:-10}
REPS=${REPS:-2}
SCENARIOS=${SCENARIOS:-"jitter fanout"}
JITTER_SERVERS=${JITTER_SERVERS:-"shardio-recovery shardio-off node-recovery"}
SERVER_CPUS=${SERVER_CPUS:-0}
BENCH_CPU=${BENCH_CPU:-1}
PORT=${PORT:-13200}
OUT_DIR=${OUT_DIR:-benches/results/jitter-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT_DIR"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bin shardio --bin shardio-bench
fi
SHARDIO=target/release/shardio
BENCH=target/release/shardio-bench
SHARDS=$(taskset -c "$SERVER_CPUS" nproc)
NODE_DIR=benches/peers/node
if [ ! -d "$NODE_DIR/node_modules" ]; then
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund >/dev/null)
fi

SERVER_PID=
start_server() { # name
  local heartbeat=(--ping-interval "$PING_INTERVAL" --ping-timeout "$PING_TIMEOUT")
  case "$1" in
    shardio-recovery)
      taskset -c "$SERVER_CPUS" "$SHARDIO" --listen "127.0.0.1:$PORT" --shards "$SHARDS" \
        "${heartbeat[@]}" --recovery-window >/dev/null 2>&1 &
      ;;
    shardio-off)
      taskset -c "$SERVER_CPUS" "$SHARDIO" --listen "127.0.0.1:$PORT" --shards "$SHARDS" \
        "${heartbeat[@]}" >/dev/null 2>&1 &
      ;;
    node-recovery)
      taskset -c "$SERVER_CPUS" node "$NODE_DIR/server.js" --mode single --port "$PORT" \
        --recovery 120000 --ping-interval "$PING_INTERVAL" --ping-timeout "$PING_TIMEOUT" \
        >/dev/null 2>&1 &
      ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/socket.io/?EIO=4&transport=polling"; then
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start" >&2
  return 1
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

bench() { # scenario json args...
  local scenario=$1 json=$2
  shift 2
  timeout 600 taskset -c "$BENCH_CPU" "$BENCH" "$scenario" --url "http://127.0.0.1:$PORT" \
    --server-pid "$SERVER_PID" --cpu "$BENCH_CPU" --json "$json" "$@"
}

for rep in $(seq "$REPS"); do
  for scenario in $SCENARIOS; do
    case "$scenario" in
      jitter)
        for server in $JITTER_SERVERS; do
          start_server "$server"
          extra=()
          [ "$server" = shardio-off ] && extra=(--no-recovery)
          bench jitter "$OUT_DIR/jitter-$server-$rep.json" --clients "$CLIENTS" \
            --rooms "$ROOMS" --rate "$RATE" --duration "$DURATION" --drop-share "$DROP_SHARE" \
            --drop-mode mixed --stall-ms "$STALL_MS" --settle "$SETTLE" "${extra[@]}" || true
          stop_server
        done
        ;;
      fanout)
        for server in shardio-recovery shardio-off; do
          start_server "$server"
          bench fanout "$OUT_DIR/fanout-$server-$rep.json" --subscribers "$FANOUT_SUBS" \
            --rooms "$FANOUT_ROOMS" --publishers "$FANOUT_PUBS" \
            --duration "$FANOUT_DURATION" || true
          stop_server
        done
        ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done
echo "results in $OUT_DIR"
