#!/usr/bin/env bash
# Compare shardio with its peers under the same load generator, and write benches/RESULTS.md.
#
#   bash benches/compare.sh            # everything, default sizes, 3 repetitions
#   REPS=1 SCENARIOS=fanout SERVERS="node-single socketioxide" bash benches/compare.sh
#
# Each server runs in turn pinned with `taskset -c $SERVER_CPUS`, the generator pinned to
# $BENCH_CPU; every run is bounded by `timeout`. Servers listen on 127.0.0.1 only. A server
# that is missing or fails to start (shardio, until it exists) is marked "not available" and the
# other rows are still produced. Raw JSON of every run goes to $OUT_DIR.
#
# Sizes (env vars, defaults in brackets):
#   FANOUT_SUBS [1000] FANOUT_ROOMS [10] FANOUT_PUBS [10] FANOUT_RATE [0 = flat out]
#   FANOUT_DURATION [10] FANOUT_WINDOW [32] FANOUT_PACED_RATE [10 per publisher per second]
#   CONNECT_COUNT [5000] IDLE_COUNT [5000]
#   IDLE_DURATION [10] REPS [3] SERVER_CPUS [0] BENCH_CPU [1]
#   SERVERS ["shardio node-single node-cluster socketioxide"]
#   SCENARIOS ["fanout fanout-paced connect idle"]
#
# `fanout` is flat out (throughput; its latency is mostly the queue that the publish window
# allows), `fanout-paced` is the same shape at a fixed rate every server sustains (latency).
#   SKIP_BUILD [0]: use the binaries already built.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_ROOMS=${FANOUT_ROOMS:-10}
FANOUT_PUBS=${FANOUT_PUBS:-10}
FANOUT_RATE=${FANOUT_RATE:-0}
FANOUT_DURATION=${FANOUT_DURATION:-10}
FANOUT_WINDOW=${FANOUT_WINDOW:-32}
FANOUT_PACED_RATE=${FANOUT_PACED_RATE:-10}
CONNECT_COUNT=${CONNECT_COUNT:-5000}
IDLE_COUNT=${IDLE_COUNT:-5000}
IDLE_DURATION=${IDLE_DURATION:-10}
REPS=${REPS:-3}
SERVER_CPUS=${SERVER_CPUS:-0}
BENCH_CPU=${BENCH_CPU:-1}
SERVERS=${SERVERS:-"shardio node-single node-cluster socketioxide"}
SCENARIOS=${SCENARIOS:-"fanout fanout-paced connect idle"}
SKIP_BUILD=${SKIP_BUILD:-0}
OUT_DIR=${OUT_DIR:-"$ROOT/benches/results/$(date -u +%Y%m%dT%H%M%SZ)"}
RESULTS=${RESULTS:-"$ROOT/benches/RESULTS.md"}

BENCH="$ROOT/target/release/shardio-bench"
SHARDIO="$ROOT/target/release/shardio"
SIOXIDE="$ROOT/benches/peers/socketioxide/target/release/socketioxide-peer"
NODE_DIR="$ROOT/benches/peers/node"

# Cores named by SERVER_CPUS ("0", "0-3", "0,2"): one shard / one Node worker per core.
server_cores() {
  local n=0 part
  for part in ${SERVER_CPUS//,/ }; do
    if [[ $part == *-* ]]; then n=$((n + ${part#*-} - ${part%-*} + 1)); else n=$((n + 1)); fi
  done
  echo "$n"
}
CORES=$(server_cores)

log() { printf '[compare] %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install and build what the runs need.

ulimit -n "$(ulimit -Hn)"   # the servers inherit it: thousands of connections need descriptors

declare -A UNAVAILABLE=()

if [[ $SKIP_BUILD != 1 ]]; then
  command -v node >/dev/null || { log "node is required (the Node peer and the summary)"; exit 1; }
  if [[ ! -d $NODE_DIR/node_modules ]]; then
    log "npm ci in benches/peers/node"
    (cd "$NODE_DIR" && nice -n 10 npm ci --no-audit --no-fund >&2)
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server"
    apt-get install -y redis-server >&2 || { apt-get update >&2 && apt-get install -y redis-server >&2; }
  fi
  log "cargo build --release --bin shardio-bench"
  nice -n 10 cargo build --release --bin shardio-bench >&2
  log "cargo build --release --bin shardio"
  if ! nice -n 10 cargo build --release --bin shardio >&2; then
    UNAVAILABLE[shardio]="does not build"
  fi
  log "cargo build --release (benches/peers/socketioxide)"
  if ! (cd benches/peers/socketioxide && nice -n 10 cargo build --release >&2); then
    UNAVAILABLE[socketioxide]="does not build"
  fi
fi
[[ -x $BENCH ]] || { log "no $BENCH: build it first"; exit 1; }
[[ -x $SHARDIO ]] || UNAVAILABLE[shardio]=${UNAVAILABLE[shardio]:-"binary missing"}
[[ -x $SIOXIDE ]] || UNAVAILABLE[socketioxide]=${UNAVAILABLE[socketioxide]:-"binary missing"}
command -v redis-server >/dev/null || UNAVAILABLE[node-cluster]="redis-server missing"
mkdir -p "$OUT_DIR"
cut -d' ' -f1-3 /proc/loadavg >"$OUT_DIR/loadavg-start"

# ---------------------------------------------------------------------------------------------
# Starting and stopping servers.

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Waits until 127.0.0.1:$1 accepts connections while pid $2 lives.
wait_port() {
  local port=$1 pid=$2 i
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

SERVER_PID=""      # the main process of the server under test
SERVER_PIDS=""     # every process whose CPU and RSS count (comma separated)
SERVER_CMD=""
EXTRA_PIDS=()      # helpers to stop with the server (redis)

# start_server NAME PORT: sets SERVER_PID, SERVER_PIDS, SERVER_CMD; fails if it does not come up.
start_server() {
  local name=$1 port=$2
  EXTRA_PIDS=()
  case $name in
    shardio)
      SERVER_CMD="taskset -c $SERVER_CPUS $SHARDIO --listen 127.0.0.1:$port --shards $CORES"
      ;;
    node-single)
      SERVER_CMD="taskset -c $SERVER_CPUS node $NODE_DIR/server.js --mode single --port $port"
      ;;
    node-cluster)
      local rport
      rport=$(free_port)
      taskset -c "$SERVER_CPUS" redis-server --port "$rport" --bind 127.0.0.1 --save '' \
        --appendonly no --loglevel warning >"$OUT_DIR/redis.log" 2>&1 &
      EXTRA_PIDS+=($!)
      wait_port "$rport" "${EXTRA_PIDS[0]}" || { log "redis-server did not start"; return 1; }
      SERVER_CMD="taskset -c $SERVER_CPUS node $NODE_DIR/server.js --mode cluster --workers $CORES --redis redis://127.0.0.1:$rport --port $port"
      ;;
    socketioxide)
      SERVER_CMD="taskset -c $SERVER_CPUS $SIOXIDE --port $port"
      ;;
    *) log "unknown server $name"; return 1 ;;
  esac
  $SERVER_CMD >"$OUT_DIR/$name.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_port "$port" "$SERVER_PID"; then
    stop_server
    return 1
  fi
  SERVER_PIDS=$SERVER_PID
  if [[ $name == node-cluster ]]; then
    # The primary, its workers and the Redis they share: the whole deployment's CPU and memory.
    local w
    for w in $(pgrep -P "$SERVER_PID"); do SERVER_PIDS+=",$w"; done
    SERVER_PIDS+=",${EXTRA_PIDS[0]}"
  fi
}

stop_server() {
  local p
  for p in ${SERVER_PID:-} "${EXTRA_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in ${SERVER_PID:-} "${EXTRA_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  SERVER_PID=""
  EXTRA_PIDS=()
}
trap stop_server EXIT

# ---------------------------------------------------------------------------------------------
# The runs.

scenario_args() {
  case $1 in
    fanout) echo "fanout --subscribers $FANOUT_SUBS --rooms $FANOUT_ROOMS --publishers $FANOUT_PUBS --rate $FANOUT_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    fanout-paced) echo "fanout --subscribers $FANOUT_SUBS --rooms $FANOUT_ROOMS --publishers $FANOUT_PUBS --rate $FANOUT_PACED_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    connect) echo "connect --count $CONNECT_COUNT --hold 1" ;;
    idle) echo "idle --count $IDLE_COUNT --settle 2 --duration $IDLE_DURATION" ;;
  esac
}

scenario_limit() {  # seconds a run may take before it is killed
  case $1 in
    fanout | fanout-paced) echo $((FANOUT_DURATION + 120)) ;;
    connect) echo 180 ;;
    idle) echo $((IDLE_DURATION + 180)) ;;
  esac
}

: >"$OUT_DIR/commands.txt"
for server in $SERVERS; do
  if [[ -n ${UNAVAILABLE[$server]:-} ]]; then
    log "$server: not available (${UNAVAILABLE[$server]})"
    echo "$server not available: ${UNAVAILABLE[$server]}" >"$OUT_DIR/$server.unavailable"
    continue
  fi
  for scenario in $SCENARIOS; do
    for rep in $(seq 1 "$REPS"); do
      port=$(free_port)
      if ! start_server "$server" "$port"; then
        log "$server: failed to start (see $OUT_DIR/$server.log)"
        why=$(tail -n 3 "$OUT_DIR/$server.log" | tr '\n' ' ')
        echo "$server did not listen on 127.0.0.1:$port within 30 s${why:+: $why}" >"$OUT_DIR/$server.unavailable"
        continue 3
      fi
      json="$OUT_DIR/$server-$scenario-$rep.json"
      cmd="taskset -c $BENCH_CPU $BENCH $(scenario_args "$scenario") --url http://127.0.0.1:$port --server-pid $SERVER_PIDS --cpu $BENCH_CPU --json $json"
      log "$server $scenario #$rep: $cmd"
      printf '%s\n  server: %s\n  bench:  %s\n' "$server $scenario #$rep" "$SERVER_CMD" "$cmd" >>"$OUT_DIR/commands.txt"
      if ! timeout "$(scenario_limit "$scenario")" $cmd >"$OUT_DIR/$server-$scenario-$rep.txt" 2>&1; then
        log "$server $scenario #$rep failed (see $OUT_DIR/$server-$scenario-$rep.txt)"
        rm -f "$json"
      fi
      stop_server
    done
  done
done

# ---------------------------------------------------------------------------------------------
# Medians and the report.

export RESULTS_SERVERS=$SERVERS RESULTS_SCENARIOS=$SCENARIOS RESULTS_REPS=$REPS
export RESULTS_SERVER_CPUS=$SERVER_CPUS RESULTS_BENCH_CPU=$BENCH_CPU
export RESULTS_COMMIT
RESULTS_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '-dirty')"
node "$ROOT/benches/summarize.js" "$OUT_DIR" >"$RESULTS"
log "wrote $RESULTS (raw runs in $OUT_DIR)"
