#!/usr/bin/env bash
# Compare shardio with its peers under the same load generator, and write benches/RESULTS.md.
#
#   bash benches/compare.sh            # everything, default sizes, 3 repetitions
#   REPS=1 SCENARIOS=fanout SERVERS="node-single socketioxide" bash benches/compare.sh
#   # two cores for the servers (shardio --shards 2, Node cluster 2 workers), generator unpinned:
#   RESULTS=benches/RESULTS-2cores.md SERVER_CPUS=0-1 BENCH_CPU=none bash benches/compare.sh
#
# Each server runs in turn pinned with `taskset -c $SERVER_CPUS` (one shardio shard and one Node
# cluster worker per core named there), the generator pinned to $BENCH_CPU (taskset and --cpu;
# BENCH_CPU=none or empty: not pinned, it then shares the servers' cores); every run is bounded
# by `timeout`. Servers listen on 127.0.0.1 only. A server that is missing or fails to start is
# marked "not available" and the other rows are still produced. Raw JSON of every run goes to
# $OUT_DIR.
#
# Sizes (env vars, defaults in brackets):
#   FANOUT_SUBS [1000] FANOUT_ROOMS [10] FANOUT_PUBS [10] FANOUT_RATE [0 = flat out]
#   FANOUT_DURATION [10] FANOUT_WINDOW [32] FANOUT_PACED_RATE [10 per publisher per second]
#   CONNECT_COUNT [5000] IDLE_COUNT [5000]
#   TENK_SUBS [10000] TENK_RATES ["4 10 25 50 100 150 200 300" publishes/s] TENK_DURATION [10]
#   CROSS_SUBS [1000] CROSS_ROOMS [10] CROSS_PUBS [10] CROSS_RATE [20 per publisher per second]
#   API_PUBS [4 backend connections] API_RATE [0 = flat out, emits per second per connection]
#   API_BATCH [1 emit per request]
#   FLOOR_DURATION [5]
#   SCALE_SHARDS ["1 2 4 8 16"]  SMALL_SUBS [10000] SMALL_ROOMS [1000] SMALL_SHARDS [8]
#   IDLE_DURATION [10] REPS [3] SERVER_CPUS [0] BENCH_CPU [1]
#   SERVERS ["shardio shardio-before node-single node-cluster socketioxide"]; also
#     shardio-scraped: shardio with a `GET /metrics` every second (curl, on the generator's
#     core) for the whole run, to show what a Prometheus scrape costs;
#     shardio-streams (cross, fanout, fanout-paced): shardio with --redis-mode streams, its
#     broadcasts through a Redis stream instead of Pub/Sub (on one machine too: fanout and
#     fanout-paced then start a redis-server for it, and its CPU counts);
#     shardio-streams-recovery (the same scenarios): shardio-streams with --recovery-window,
#     sessions kept in Redis and every recoverable packet, local ones included, delivered
#     from the stream;
#     shardio-recovery (not cross): shardio with --recovery-window alone (sessions and packets
#     kept in the process, no Redis)
#   BASELINE [732947b]: the commit `shardio-before` is built from (main just before the first
#     tuning commit of the benchmark issue, with the gateway and the generator), in target/baseline; its rows and the shardio /
#     shardio-before ratios are the before/after figures of that tuning, from the same run.
#     BASELINE_ABOUT: what the report says of it instead (for another baseline).
#   SCENARIOS ["fanout fanout-paced connect idle fanout-10k cross api floor"]; also
#     shard-scaling and small-rooms (below)
#   RESULTS [benches/RESULTS.md] OUT_DIR [benches/results/<UTC time>]
#
# `fanout` is flat out (throughput; its latency is mostly the queue that the publish window
# allows), `fanout-paced` is the same shape at a fixed rate every server sustains (latency).
#
# `fanout-10k`: TENK_SUBS subscribers in one room, one publisher at a fixed rate. Per server a
# ladder: the rates of TENK_RATES in increasing order, a fresh server for each, TENK_DURATION s
# each, stopping at the first rate not held. A rate is HELD when every subscriber joined, lost
# is 0, every publish was acknowledged ok (publishes_acked = publishes_sent), the publisher kept
# the pace (publishes_per_s >= 0.95 x rate: the window of unacknowledged publishes never held it
# back) and the backlog did not grow: drain_s <= 1 (the last expected delivery arrived at most
# 1 s after publishing stopped). Then one more run at half the highest held rate (the ladder's
# run is reused when that rate was on it) gives the latency figures. One ladder per server, not
# REPS: every rung is a single run.
#
# `cross`: publishers on server A, subscribers on server B, rooms shared through a redis-server
# the script starts on a free port (pinned to SERVER_CPUS too: A, B and Redis share the same
# cores). shardio: two processes with --redis; Node: two single-process servers with the redis
# adapter (node-single's row); node-cluster is not run for cross and socketioxide has no Redis
# adapter. Server CPU sums A, B and Redis. Duration FANOUT_DURATION, window FANOUT_WINDOW.
#
# `api`: the fanout shape (FANOUT_SUBS subscribers in FANOUT_ROOMS rooms) published by a backend
# through shardio's HTTP API: API_PUBS keep-alive connections posting `/api/v1/emit`
# (API_BATCH emits per request, FANOUT_WINDOW requests pipelined). shardio only.
#
# `connect-tls`: `connect` over TLS (shardio only): shardio with --tls-cert/--tls-key (a
# self-signed ECDSA P-256 certificate made with openssl for the run), the generator on an
# https:// URL with --tls-insecure. Run it beside `connect` (SCENARIOS="connect connect-tls")
# for handshakes per server CPU second with TLS and without, from the same run.
#
# `floor`: no server. shardio-bench floor writes 80 B per pass to each of TENK_SUBS loopback
# sockets (capped by the descriptor limit: both ends are in one process) at 50 passes/s for
# FLOOR_DURATION s, writer on the first core of SERVER_CPUS (where a server would write), reader
# on BENCH_CPU: the kernel's own cost of a fan-out on this machine. Run once, not per server.
#
# `shard-scaling` (shardio servers only): the fanout shape flat out on every shard count of
# SCALE_SHARDS, all the shards on the cores of SERVER_CPUS (one core by default: what each
# shard adds to a broadcast, beside the scheduler's share), REPS repetitions, the servers and the
# shard counts taking turns within each. `small-rooms` (shardio servers only): SMALL_SUBS
# subscribers in SMALL_ROOMS rooms (10 members each by default) on SMALL_SHARDS shards, the
# fanout otherwise as above: where sending a broadcast only to the shards with members counts.
# With BASELINE=<commit> SERVERS="shardio shardio-before", before and after in one run.
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
TENK_SUBS=${TENK_SUBS:-10000}
TENK_RATES=${TENK_RATES:-"4 10 25 50 100 150 200 300"}
TENK_DURATION=${TENK_DURATION:-10}
CROSS_SUBS=${CROSS_SUBS:-1000}
CROSS_ROOMS=${CROSS_ROOMS:-10}
CROSS_PUBS=${CROSS_PUBS:-10}
CROSS_RATE=${CROSS_RATE:-20}
API_PUBS=${API_PUBS:-4}
API_RATE=${API_RATE:-0}
API_BATCH=${API_BATCH:-1}
API_KEY=compare-sh-api-key-0123456789
FLOOR_DURATION=${FLOOR_DURATION:-5}
SCALE_SHARDS=${SCALE_SHARDS:-"1 2 4 8 16"}
SMALL_SUBS=${SMALL_SUBS:-10000}
SMALL_ROOMS=${SMALL_ROOMS:-1000}
SMALL_SHARDS=${SMALL_SHARDS:-8}
REPS=${REPS:-3}
SERVER_CPUS=${SERVER_CPUS:-0}
BENCH_CPU=${BENCH_CPU-1}   # empty (or none): the generator is not pinned
SERVERS=${SERVERS:-"shardio shardio-before node-single node-cluster socketioxide"}
BASELINE=${BASELINE:-732947b}
SCENARIOS=${SCENARIOS:-"fanout fanout-paced connect connect-tls idle fanout-10k cross api floor"}
SKIP_BUILD=${SKIP_BUILD:-0}
OUT_DIR=${OUT_DIR:-"$ROOT/benches/results/$(date -u +%Y%m%dT%H%M%SZ)"}
RESULTS=${RESULTS:-"$ROOT/benches/RESULTS.md"}

BENCH="$ROOT/target/release/shardio-bench"
SHARDIO="$ROOT/target/release/shardio"
BASELINE_SHARDIO="$ROOT/target/baseline/release/shardio"
# The commit the binaries are built from (read now: the tree may change while the runs go on).
RESULTS_COMMIT=${RESULTS_COMMIT:-"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '-dirty')"}
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

# How the generator runs: pinned (taskset on the process, --cpu for its threads) or not at all.
if [[ -z $BENCH_CPU || $BENCH_CPU == none ]]; then
  BENCH_CPU=none BENCH_PIN="" BENCH_CPU_ARG=""
else
  BENCH_PIN="taskset -c $BENCH_CPU " BENCH_CPU_ARG=" --cpu $BENCH_CPU"
fi

log() { printf '[compare] %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install and build what the runs need.

ulimit -n "$(ulimit -Hn)"   # the servers inherit it: thousands of connections need descriptors

declare -A UNAVAILABLE=()

if [[ $SKIP_BUILD != 1 ]]; then
  command -v node >/dev/null || { log "node is required (the Node peer and the summary)"; exit 1; }
  if [[ ! -d $NODE_DIR/node_modules || $NODE_DIR/package-lock.json -nt $NODE_DIR/node_modules/.package-lock.json ]]; then
    log "npm ci in benches/peers/node"
    (cd "$NODE_DIR" && nice -n 10 npm ci --no-audit --no-fund >&2)
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server"
    apt-get install -y redis-server >&2 || { apt-get update >&2 && apt-get install -y redis-server >&2; }
  fi
  if [[ " $SCENARIOS " == *" connect-tls "* ]] && ! command -v openssl >/dev/null; then
    log "installing openssl"
    apt-get install -y openssl >&2 || { apt-get update >&2 && apt-get install -y openssl >&2; }
  fi
  log "cargo build --release --bin shardio-bench"
  nice -n 10 cargo build --release --bin shardio-bench >&2
  log "cargo build --release --bin shardio"
  if ! nice -n 10 cargo build --release --bin shardio >&2; then
    UNAVAILABLE[shardio]="does not build"
  fi
  if [[ " $SERVERS " == *" shardio-before "* ]]; then
    log "cargo build --release --bin shardio of $BASELINE (shardio-before) into target/baseline"
    src=$(mktemp -d)
    if ! { git archive "$BASELINE" | tar -x -C "$src" &&
      (cd "$src" && CARGO_TARGET_DIR="$ROOT/target/baseline" nice -n 10 cargo build --release --bin shardio >&2); }; then
      UNAVAILABLE[shardio-before]="commit $BASELINE does not build"
    fi
    rm -rf "$src"
  fi
  log "cargo build --release (benches/peers/socketioxide)"
  if ! (cd benches/peers/socketioxide && nice -n 10 cargo build --release >&2); then
    UNAVAILABLE[socketioxide]="does not build"
  fi
fi
[[ -x $BENCH ]] || { log "no $BENCH: build it first"; exit 1; }
[[ -x $SHARDIO ]] || UNAVAILABLE[shardio]=${UNAVAILABLE[shardio]:-"binary missing"}
[[ -x $BASELINE_SHARDIO ]] || UNAVAILABLE[shardio-before]=${UNAVAILABLE[shardio-before]:-"binary missing"}
[[ -x $SIOXIDE ]] || UNAVAILABLE[socketioxide]=${UNAVAILABLE[socketioxide]:-"binary missing"}
command -v redis-server >/dev/null || UNAVAILABLE[node-cluster]="redis-server missing"
mkdir -p "$OUT_DIR"
cut -d' ' -f1-3 /proc/loadavg >"$OUT_DIR/loadavg-start"

# connect-tls: a self-signed certificate for the run (ECDSA P-256, as most sites serve).
TLS_CERT="$OUT_DIR/tls-cert.pem" TLS_KEY="$OUT_DIR/tls-key.pem"
if [[ " $SCENARIOS " == *" connect-tls "* ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null || { log "openssl could not make the certificate"; exit 1; }
fi
RUN_TLS=""   # set by bench_run for connect-tls: the server gets the certificate
RUN_SHARDS=""   # set for shard-scaling and small-rooms: shardio's --shards (else one per core)

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

SERVER_PIDS=""     # every process whose CPU and RSS count (comma separated)
SERVER_CMD=""      # how the server(s) were started, for the report
STARTED=()         # every process to stop after the run: servers and their redis-server
REDIS_URL=""

# launch LOG CMD...: starts CMD in the background, logging to $OUT_DIR/LOG.log; sets LAUNCHED.
launch() {
  local name=$1
  shift
  "$@" >>"$OUT_DIR/$name.log" 2>&1 &
  LAUNCHED=$!
  STARTED+=("$LAUNCHED")
}

# A redis-server on a free port, on the servers' cores; sets REDIS_URL.
start_redis() {
  local rport
  rport=$(free_port)
  launch redis taskset -c "$SERVER_CPUS" redis-server --port "$rport" --bind 127.0.0.1 --save '' \
    --appendonly no --loglevel warning
  wait_port "$rport" "$LAUNCHED" || { log "redis-server did not start"; return 1; }
  REDIS_URL=redis://127.0.0.1:$rport
}

# server_cmd NAME PORT: the command that starts one server NAME on PORT, joined to the
# redis-server at $REDIS_URL when one runs.
server_cmd() {
  local name=$1 port=$2 redis=${REDIS_URL:+ --redis $REDIS_URL}
  case $name in
    shardio | shardio-scraped) echo "taskset -c $SERVER_CPUS $SHARDIO --listen 127.0.0.1:$port --shards ${RUN_SHARDS:-$CORES} --api-key $API_KEY$redis${RUN_TLS:+ --tls-cert $TLS_CERT --tls-key $TLS_KEY}" ;;
    shardio-streams) echo "taskset -c $SERVER_CPUS $SHARDIO --listen 127.0.0.1:$port --shards ${RUN_SHARDS:-$CORES}$redis --redis-mode streams" ;;
    shardio-streams-recovery) echo "taskset -c $SERVER_CPUS $SHARDIO --listen 127.0.0.1:$port --shards ${RUN_SHARDS:-$CORES}$redis --redis-mode streams --recovery-window" ;;
    shardio-recovery) echo "taskset -c $SERVER_CPUS $SHARDIO --listen 127.0.0.1:$port --shards ${RUN_SHARDS:-$CORES} --recovery-window" ;;
    shardio-before) echo "taskset -c $SERVER_CPUS $BASELINE_SHARDIO --listen 127.0.0.1:$port --shards ${RUN_SHARDS:-$CORES}$redis" ;;
    node-single) echo "taskset -c $SERVER_CPUS node $NODE_DIR/server.js --mode single$redis --port $port" ;;
    node-cluster) echo "taskset -c $SERVER_CPUS node $NODE_DIR/server.js --mode cluster --workers $CORES$redis --port $port" ;;
    socketioxide) echo "taskset -c $SERVER_CPUS $SIOXIDE --port $port" ;;
    *) log "unknown server $name"; return 1 ;;
  esac
}

# start_servers NAME PORT [PORT_B]: server NAME on PORT (node-cluster and the shardio-streams
# kinds with their redis-server); with PORT_B a second one there, both on a fresh redis-server
# (cross). Sets SERVER_PIDS and SERVER_CMD; fails if one does not come up.
start_servers() {
  local name=$1 port cmd w
  STARTED=() REDIS_URL="" SERVER_PIDS="" SERVER_CMD=""
  : >"$OUT_DIR/$name.log"
  : >"$OUT_DIR/redis.log"
  if [[ $# -gt 2 || $name == node-cluster || $name == shardio-streams* ]] && ! start_redis; then
    stop_servers
    return 1
  fi
  for port in "${@:2}"; do
    cmd=$(server_cmd "$name" "$port") || return 1
    launch "$name" $cmd
    if ! wait_port "$port" "$LAUNCHED"; then
      stop_servers
      return 1
    fi
    SERVER_PIDS+="${SERVER_PIDS:+,}$LAUNCHED"
    if [[ $name == node-cluster ]]; then
      for w in $(pgrep -P "$LAUNCHED"); do SERVER_PIDS+=",$w"; done
    fi
    SERVER_CMD+="${SERVER_CMD:+ & }$cmd"
    # shardio-scraped: Prometheus's load, one GET /metrics a second, from the generator's core.
    if [[ $name == shardio-scraped ]]; then
      launch scraper $BENCH_PIN bash -c "while :; do curl -sf -o /dev/null http://127.0.0.1:$port/metrics; sleep 1; done"
      SERVER_CMD+=" & (GET /metrics every second)"
    fi
  done
  # Redis too: the whole deployment's CPU and memory.
  if [[ -n $REDIS_URL ]]; then SERVER_PIDS+=",${STARTED[0]}"; fi
}

stop_servers() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  STARTED=()
}
trap stop_servers EXIT

# ---------------------------------------------------------------------------------------------
# The runs.

scenario_args() {
  case $1 in
    fanout | shard-scaling) echo "fanout --subscribers $FANOUT_SUBS --rooms $FANOUT_ROOMS --publishers $FANOUT_PUBS --rate $FANOUT_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    small-rooms) echo "fanout --subscribers $SMALL_SUBS --rooms $SMALL_ROOMS --publishers $FANOUT_PUBS --rate $FANOUT_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    fanout-paced) echo "fanout --subscribers $FANOUT_SUBS --rooms $FANOUT_ROOMS --publishers $FANOUT_PUBS --rate $FANOUT_PACED_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    cross) echo "cross --subscribers $CROSS_SUBS --rooms $CROSS_ROOMS --publishers $CROSS_PUBS --rate $CROSS_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    connect | connect-tls) echo "connect --count $CONNECT_COUNT --hold 1" ;;
    api) echo "api --api-key $API_KEY --batch $API_BATCH --subscribers $FANOUT_SUBS --rooms $FANOUT_ROOMS --publishers $API_PUBS --rate $API_RATE --duration $FANOUT_DURATION --window $FANOUT_WINDOW --drain 5" ;;
    idle) echo "idle --count $IDLE_COUNT --settle 2 --duration $IDLE_DURATION" ;;
  esac
}

# fanout-10k at $1 publishes/s.
tenk_args() {
  echo "fanout --subscribers $TENK_SUBS --rooms 1 --publishers 1 --rate $1 --duration $TENK_DURATION --window $FANOUT_WINDOW --drain 5"
}

scenario_limit() {  # seconds a run may take before it is killed
  case $1 in
    fanout | fanout-paced | cross | api | shard-scaling | small-rooms) echo $((FANOUT_DURATION + 120)) ;;
    fanout-10k) echo $((TENK_DURATION + 180)) ;;
    connect | connect-tls) echo 180 ;;
    idle) echo $((IDLE_DURATION + 180)) ;;
    floor) echo $((FLOOR_DURATION + 120)) ;;
  esac
}

# bench_run SERVER SCENARIO STEM ARGS...: a fresh server (two and a redis-server for cross), one
# generator run with ARGS, its output in $OUT_DIR/STEM.{json,txt}. Status 2: the server did not
# start (SERVER.unavailable says why); 1: the run failed (no JSON).
bench_run() {
  local server=$1 scenario=$2 stem=$3 ports cmd json
  shift 3
  RUN_TLS=""
  if [[ $scenario == connect-tls ]]; then RUN_TLS=1; fi
  ports=$(free_port)
  if [[ $scenario == cross ]]; then
    local other
    other=$(free_port)
    while [[ $other == "$ports" ]]; do other=$(free_port); done
    ports+=" $other"
  fi
  # shellcheck disable=SC2086 # one or two ports
  if ! start_servers "$server" $ports; then
    log "$server: failed to start (see $OUT_DIR/$server.log)"
    local why
    why=$(tail -n 3 "$OUT_DIR/$server.log" | tr '\n' ' ')
    echo "$server did not listen on 127.0.0.1:${ports// /, 127.0.0.1:} within 30 s${why:+: $why}" >"$OUT_DIR/$server.unavailable"
    return 2
  fi
  json="$OUT_DIR/$stem.json"
  local a b scheme=http tls_arg=""
  read -r a b <<<"$ports"
  if [[ -n $RUN_TLS ]]; then scheme=https tls_arg=" --tls-insecure"; fi
  cmd="$BENCH_PIN$BENCH $* --url $scheme://127.0.0.1:$a${b:+ --sub-url $scheme://127.0.0.1:$b}$tls_arg --server-pid $SERVER_PIDS$BENCH_CPU_ARG --json $json"
  log "$stem: $cmd"
  printf '%s\n  server: %s\n  bench:  %s\n' "$stem" "$SERVER_CMD" "$cmd" >>"$OUT_DIR/commands.txt"
  local status=0
  if ! timeout "$(scenario_limit "$scenario")" $cmd >"$OUT_DIR/$stem.txt" 2>&1; then
    log "$stem failed (see $OUT_DIR/$stem.txt)"
    rm -f "$json"
    status=1
  fi
  stop_servers
  return $status
}

# Why the fanout-10k run in JSON file $1 did not hold its rate (empty when it did): the rule in
# the header, applied to the generator's JSON.
tenk_not_held() {
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const why = [];
    if (r.subscribers_joined < r.subscribers) why.push(`${r.subscribers - r.subscribers_joined} subscribers did not join`);
    if (r.losses.lost > 0) why.push(`lost ${r.losses.lost}`);
    if (r.publishes_acked < r.publishes_sent) why.push(`${r.publishes_sent - r.publishes_acked} of ${r.publishes_sent} publishes not acked ok`);
    if (r.publishes_per_s < 0.95 * r.rate_per_publisher) why.push(`published only ${r.publishes_per_s.toFixed(1)}/s`);
    if (r.drain_s > 1) why.push(`drain ${r.drain_s.toFixed(2)} s`);
    if (why.length && r.generator && r.generator.busy_share > 0.9) why.push(`generator saturated (${(r.generator.busy_share * 100).toFixed(0)}% busy)`);
    console.log(why.join(", "));
  ' "$1"
}

# The fanout-10k ladder of one server; writes SERVER-fanout-10k.ladder ("RATE held" or
# "RATE not held: why" per rung) and SERVER-fanout-10k-half.json. Status 2: no server.
run_tenk() {
  local server=$1 rate why held="" half stem
  : >"$OUT_DIR/$server-fanout-10k.ladder"
  for rate in $TENK_RATES; do
    stem="$server-fanout-10k-rate-$rate"
    # shellcheck disable=SC2046 # the arguments are words
    bench_run "$server" fanout-10k "$stem" $(tenk_args "$rate") || [[ $? == 1 ]] || return 2
    if [[ -f $OUT_DIR/$stem.json ]]; then why=$(tenk_not_held "$OUT_DIR/$stem.json"); else why="run failed"; fi
    echo "$rate ${why:+not }held${why:+: $why}" >>"$OUT_DIR/$server-fanout-10k.ladder"
    log "$server fanout-10k at $rate/s: ${why:-held}"
    [[ -z $why ]] || break
    held=$rate
  done
  [[ -n $held ]] || return 0
  half=$(awk "BEGIN { print $held / 2 }")
  if [[ -f $OUT_DIR/$server-fanout-10k-rate-$half.json ]]; then
    cp "$OUT_DIR/$server-fanout-10k-rate-$half.json" "$OUT_DIR/$server-fanout-10k-half.json"
  else
    # shellcheck disable=SC2046 # the arguments are words
    bench_run "$server" fanout-10k "$server-fanout-10k-half" $(tenk_args "$half") || [[ $? == 1 ]] || return 2
  fi
}

# Why SERVER cannot run SCENARIO here (empty when it can).
not_applicable() {
  case $1:$2 in
    socketioxide:cross) echo "not available for cross: the socketioxide peer has no Redis adapter" ;;
    shardio-before:cross) echo "not run for cross: commit $BASELINE predates the Redis bridge" ;;
    node-cluster:cross) echo "not run for cross: the Node pair is node-single's row (two single-process servers on the redis adapter)" ;;
    shardio-streams*:cross | shardio-streams*:fanout | shardio-streams*:fanout-paced) ;;
    shardio-streams*:*) echo "not run for $2: --redis-mode streams is measured across machines (cross) and by the fanout it costs on one (fanout, fanout-paced)" ;;
    shardio-recovery:cross) echo "not run for cross: its sessions are kept on one machine (shardio-streams-recovery keeps them in Redis)" ;;
    shardio:api | shardio:connect-tls) ;;
    shardio*:shard-scaling | shardio*:small-rooms) ;;
    *:shard-scaling | *:small-rooms) echo "not run for $2: it varies shardio's shard count" ;;
    *:connect-tls) echo "not run for connect-tls: shardio only (the connect row compares the peers)" ;;
    shardio-before:api) echo "not run for api: commit $BASELINE predates the HTTP API" ;;
    *:api) echo "not available for api: no HTTP publish API (the peers that ship one, Soketi and Centrifugo, cannot be installed from this machine's registries)" ;;
  esac
}

: >"$OUT_DIR/commands.txt"

# The floor first, on a quiet machine: no server, both ends of every socket in one process.
if [[ " $SCENARIOS " == *" floor "* ]]; then
  floor_count=$(( ($(ulimit -n) - 200) / 2 ))
  if (( floor_count > TENK_SUBS )); then floor_count=$TENK_SUBS; fi
  if (( floor_count < TENK_SUBS )); then
    log "floor: $floor_count connections, not $TENK_SUBS: the descriptor limit is $(ulimit -n) and each needs two"
  fi
  writer_cpu=${SERVER_CPUS%%[,-]*}
  # Not under taskset: the writer must be able to pin itself outside BENCH_CPU.
  cmd="$BENCH floor --count $floor_count --size 80 --rate 50 --duration $FLOOR_DURATION --writer-cpu $writer_cpu$BENCH_CPU_ARG --json $OUT_DIR/floor.json"
  log "floor: $cmd"
  printf '%s\n  bench:  %s\n' "floor" "$cmd" >>"$OUT_DIR/commands.txt"
  if ! timeout "$(scenario_limit floor)" $cmd >"$OUT_DIR/floor.txt" 2>&1; then
    log "floor failed (see $OUT_DIR/floor.txt)"
    rm -f "$OUT_DIR/floor.json"
  fi
fi

for server in $SERVERS; do
  if [[ -n ${UNAVAILABLE[$server]:-} ]]; then
    log "$server: not available (${UNAVAILABLE[$server]})"
    echo "$server not available: ${UNAVAILABLE[$server]}" >"$OUT_DIR/$server.unavailable"
  fi
done

# Whether $1 runs $2: available (a server that failed to start is not run again) and applicable.
runs() {
  local why
  [[ -z ${UNAVAILABLE[$1]:-} && ! -e $OUT_DIR/$1.unavailable ]] || return 1
  why=$(not_applicable "$1" "$2")
  [[ -z $why ]] || { echo "$why" >"$OUT_DIR/$1-$2.unavailable"; return 1; }
}

# Per scenario, the servers take turns within each repetition, so that a slow spell of this
# shared machine falls on every server alike rather than on whichever ran then.
for scenario in $SCENARIOS; do
  case $scenario in
    floor) continue ;;
    shard-scaling | small-rooms)
      for rep in $(seq 1 "$REPS"); do
        if [[ $scenario == small-rooms ]]; then counts=$SMALL_SHARDS; else counts=$SCALE_SHARDS; fi
        for n in $counts; do
          for server in $SERVERS; do
            runs "$server" "$scenario" || continue
            stem="$server-$scenario-$rep"
            [[ $scenario == small-rooms ]] || stem="$server-$scenario-$n-$rep"
            # shellcheck disable=SC2046 # the arguments are words
            RUN_SHARDS=$n bench_run "$server" "$scenario" "$stem" $(scenario_args "$scenario") || true
          done
        done
      done
      continue
      ;;
    fanout-10k)
      for server in $SERVERS; do
        if runs "$server" "$scenario"; then run_tenk "$server" || true; fi
      done
      continue
      ;;
  esac
  for rep in $(seq 1 "$REPS"); do
    for server in $SERVERS; do
      runs "$server" "$scenario" || continue
      # shellcheck disable=SC2046 # the arguments are words
      bench_run "$server" "$scenario" "$server-$scenario-$rep" $(scenario_args "$scenario") || true
    done
  done
done

# ---------------------------------------------------------------------------------------------
# Medians and the report.

cut -d' ' -f1-3 /proc/loadavg >"$OUT_DIR/loadavg-end"
export RESULTS_SERVERS=$SERVERS RESULTS_SCENARIOS=$SCENARIOS RESULTS_REPS=$REPS
export RESULTS_SERVER_CPUS=$SERVER_CPUS RESULTS_BENCH_CPU=$BENCH_CPU RESULTS_CORES=$CORES
export RESULTS_TENK_RATES=$TENK_RATES RESULTS_BASELINE=$BASELINE
export RESULTS_SCALE_SHARDS=$SCALE_SHARDS RESULTS_SMALL_SHARDS=$SMALL_SHARDS
if [[ -n ${BASELINE_ABOUT:-} ]]; then export RESULTS_BASELINE_ABOUT=$BASELINE_ABOUT; fi
export RESULTS_COMMIT
node "$ROOT/benches/summarize.js" "$OUT_DIR" >"$RESULTS"
log "wrote $RESULTS (raw runs in $OUT_DIR)"
