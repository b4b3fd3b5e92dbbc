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
# and, across machines (not in the default list), two servers on one redis-server that the
# script starts on a free port (pinned with them) and stops after the run, the clients'
# connections going to either at random (`shardio-bench jitter --url-b`; publishers on the
# first):
#   shardio-streams-pair  two shardio processes with --redis-mode streams --recovery-window
#   node-streams-pair     two Node peers with --adapter streams (@socket.io/redis-streams-adapter)
#                         and connectionStateRecovery
# FREEZE_AT=S (FREEZE_S [3]): the generator is stopped (SIGSTOP) S seconds into each jitter run
# for FREEZE_S seconds, a burst of reconnections afterwards.
# fanout: `shardio-bench fanout` flat out (FANOUT_SUBS subscribers, FANOUT_ROOMS rooms,
# FANOUT_PUBS publishers, FANOUT_DURATION s) against shardio with --recovery-window and without,
# alternating, REPS times each: the cost of offsets and of the log.
#
# Servers are pinned to SERVER_CPUS [0] (shardio --shards = its core count), the generator to
# BENCH_CPU [1]. JSON of every run goes to OUT_DIR [benches/results/jitter-<UTC time>], each
# server's output to a .log file beside it, and after each jitter run the CPU time of each
# process (.cpu), a pair's Redis command statistics (.commandstats) and shardio's /metrics
# (.metrics). The JSON's `gaps` lists the first clients that missed messages, with their
# connections. Each server is started fresh for each run and
# stopped after it; a pair listens on PORT and PORT + 1.
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
FREEZE_AT=${FREEZE_AT:-}   # seconds into a jitter run; empty: no freeze
FREEZE_S=${FREEZE_S:-3}
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
# Installed when missing, or older than the lock file (a package added since).
if [ ! -d "$NODE_DIR/node_modules" ] || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund >/dev/null)
fi

SERVER_PID=   # every process of the run (comma separated): its CPU and RSS count
PIDS=()       # the same, to stop after the run
URL_B=()      # a pair's second server, for the generator (--url-b URL)

# launch LOG CMD...: CMD in the background on the servers' cores, its output to LOG.
launch() {
  local log=$1
  shift
  taskset -c "$SERVER_CPUS" "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  SERVER_PID+="${SERVER_PID:+,}$!"
}

# Waits until 127.0.0.1:$1 answers an Engine.IO handshake.
wait_server() {
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$1/socket.io/?EIO=4&transport=polling"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# A redis-server on a free port for a pair; sets REDIS_URL.
start_redis() { # log
  local rport
  rport=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  launch "$1" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --loglevel warning
  for _ in $(seq 100); do
    if redis-cli -p "$rport" ping >/dev/null 2>&1; then
      REDIS_URL=redis://127.0.0.1:$rport
      return 0
    fi
    sleep 0.1
  done
  return 1
}

start_server() { # name log-stem
  local heartbeat=(--ping-interval "$PING_INTERVAL" --ping-timeout "$PING_TIMEOUT") port
  local shardio=("$SHARDIO" --shards "$SHARDS" "${heartbeat[@]}")
  local node_peer=(node "$NODE_DIR/server.js" --mode single "${heartbeat[@]}")
  SERVER_PID="" PIDS=() URL_B=()
  case "$1" in
    shardio-recovery)
      launch "$2.log" "${shardio[@]}" --listen "127.0.0.1:$PORT" --recovery-window
      ;;
    shardio-off)
      launch "$2.log" "${shardio[@]}" --listen "127.0.0.1:$PORT"
      ;;
    node-recovery)
      launch "$2.log" "${node_peer[@]}" --port "$PORT" --recovery 120000
      ;;
    shardio-streams-pair | node-streams-pair)
      start_redis "$2-redis.log" || { echo "redis-server did not start" >&2; return 1; }
      for port in "$PORT" $((PORT + 1)); do
        if [ "$1" = shardio-streams-pair ]; then
          launch "$2-$port.log" "${shardio[@]}" --listen "127.0.0.1:$port" --redis "$REDIS_URL" \
            --redis-mode streams --recovery-window
        else
          launch "$2-$port.log" "${node_peer[@]}" --port "$port" --redis "$REDIS_URL" \
            --adapter streams --recovery 120000
        fi
      done
      URL_B=(--url-b "http://127.0.0.1:$((PORT + 1))")
      ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
  for port in "$PORT" ${URL_B:+$((PORT + 1))}; do
    wait_server "$port" || { echo "$1 did not start on port $port" >&2; return 1; }
  done
}

# After a run, beside its JSON: the CPU time of each process (.cpu), Redis's command
# statistics for a pair (.commandstats), shardio's counters (.metrics: drops, Redis traffic,
# recovery).
save_metrics() { # name stem
  local port
  ps -o pid=,time=,args= -p "$SERVER_PID" | cut -c1-120 >"$2.cpu" || true
  if [ -n "${URL_B[*]}" ]; then
    redis-cli -u "$REDIS_URL" INFO commandstats >"$2.commandstats" 2>&1 || true
  fi
  case "$1" in shardio*) ;; *) return 0 ;; esac
  for port in "$PORT" ${URL_B:+$((PORT + 1))}; do
    curl -sf -o "$2-$port.metrics" "http://127.0.0.1:$port/metrics" || true
  done
}

stop_server() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_server EXIT

bench() { # scenario json args...
  local scenario=$1 json=$2
  shift 2
  timeout 600 taskset -c "$BENCH_CPU" "$BENCH" "$scenario" --url "http://127.0.0.1:$PORT" \
    --server-pid "$SERVER_PID" --cpu "$BENCH_CPU" --json "$json" "$@" &
  local gen=$!
  if [ -n "$FREEZE_AT" ]; then
    # A burst of reconnections: the generator stops (SIGSTOP) for FREEZE_S seconds, its
    # clients time out or reset, and they all come back at once while the publishers catch up.
    (sleep "$FREEZE_AT"; pkill -STOP -P "$gen"; kill -STOP "$gen" 2>/dev/null
      sleep "$FREEZE_S"; kill -CONT "$gen" 2>/dev/null; pkill -CONT -P "$gen") &
  fi
  wait "$gen"
}

for rep in $(seq "$REPS"); do
  for scenario in $SCENARIOS; do
    case "$scenario" in
      jitter)
        for server in $JITTER_SERVERS; do
          if ! start_server "$server" "$OUT_DIR/jitter-$server-$rep"; then
            stop_server
            continue
          fi
          extra=("${URL_B[@]}")
          [ "$server" = shardio-off ] && extra+=(--no-recovery)
          bench jitter "$OUT_DIR/jitter-$server-$rep.json" --clients "$CLIENTS" \
            --rooms "$ROOMS" --rate "$RATE" --duration "$DURATION" --drop-share "$DROP_SHARE" \
            --drop-mode mixed --stall-ms "$STALL_MS" --settle "$SETTLE" "${extra[@]}" || true
          save_metrics "$server" "$OUT_DIR/jitter-$server-$rep"
          stop_server
        done
        ;;
      fanout)
        for server in shardio-recovery shardio-off; do
          start_server "$server" "$OUT_DIR/fanout-$server-$rep" || { stop_server; continue; }
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
