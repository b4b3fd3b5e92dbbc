#!/usr/bin/env bash
# Record CPU flamegraphs of a one-shard shardio under the load generator.
#
#   bash flamegraphs/record.sh              # all: flamegraphs/{fanout,fanout10k,connect}.svg
#   SCENARIOS=fanout bash flamegraphs/record.sh
#
# What it does: builds the `profiling` profile (release + symbols) of `shardio` and
# `shardio-bench`; installs inferno into target/inferno when missing; then for each scenario
# starts `shardio --shards 1` pinned to $SERVER_CPU, attaches `perf record` to it, runs
# `shardio-bench` pinned to $BENCH_CPU, stops perf, and folds the stacks into an SVG. Only the
# server is profiled. Every step is bounded by `timeout`, and everything the script started is
# stopped on exit (its own pids only). Needs Linux `perf` (Debian: linux-perf) and permission to
# attach to the server: root, or kernel.perf_event_paranoid <= 1.
#
# Settings (env vars, defaults in brackets):
#   SCENARIOS ["fanout fanout10k connect"]  SERVER_CPU [0]  BENCH_CPU [1]  FREQ [999 samples/s]
#   SHARDS [1: shardio's --shards, all on SERVER_CPU; another count writes NAME-SHARDSshards.svg]
#   CALL_GRAPH [dwarf,32768; "fp" needs a build with frame pointers]
#   FANOUT_SUBS [1000] FANOUT_ROOMS [10] FANOUT_PUBS [10] FANOUT_DURATION [10 s, flat out]
#   TENK_SUBS [10000] TENK_RATE [50 publishes/s] (fanout10k: one room, one paced publisher)
#   CONNECT_COUNT [5000 per round] CONNECT_ROUNDS [4]  (20,000 handshakes in all)
#   MINWIDTH [0.2: frames narrower than this many pixels are left out, keeps the SVG small]
#   SKIP_BUILD [0]  KEEP_DATA [0: 1 keeps perf.data and the folded stacks in $WORK]
#   PROFILE [profiling: the binaries of target/PROFILE; with SKIP_BUILD=1, e.g. release (its
#     symbol table names functions, inlined frames are lost)]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SCENARIOS=${SCENARIOS:-"fanout fanout10k connect"}
SERVER_CPU=${SERVER_CPU:-0}
SHARDS=${SHARDS:-1}
PROFILE=${PROFILE:-profiling}
BENCH_CPU=${BENCH_CPU:-1}
FREQ=${FREQ:-999}
CALL_GRAPH=${CALL_GRAPH:-dwarf,32768}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_ROOMS=${FANOUT_ROOMS:-10}
FANOUT_PUBS=${FANOUT_PUBS:-10}
FANOUT_DURATION=${FANOUT_DURATION:-10}
TENK_SUBS=${TENK_SUBS:-10000}
TENK_RATE=${TENK_RATE:-50}
CONNECT_COUNT=${CONNECT_COUNT:-5000}
CONNECT_ROUNDS=${CONNECT_ROUNDS:-4}
MINWIDTH=${MINWIDTH:-0.2}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_DATA=${KEEP_DATA:-0}

OUT_DIR="$ROOT/flamegraphs"
SHARDIO="$ROOT/target/$PROFILE/shardio"
BENCH="$ROOT/target/$PROFILE/shardio-bench"
INFERNO_ROOT="$ROOT/target/inferno"
COLLAPSE="$INFERNO_ROOT/bin/inferno-collapse-perf"
FLAMEGRAPH="$INFERNO_ROOT/bin/inferno-flamegraph"
PERF=${PERF:-$(command -v perf || echo /usr/bin/perf)}

log() { printf '[flamegraphs] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools and binaries.

[[ -x $PERF ]] || die "perf not found (Debian: apt-get install linux-perf)"
for name in $SCENARIOS; do
  [[ $name == fanout || $name == fanout10k || $name == connect ]] ||
    die "unknown scenario '$name' (fanout, fanout10k, connect)"
done
command -v python3 >/dev/null || die "python3 is needed to pick a free port"
command -v taskset >/dev/null || die "taskset not found (Debian: util-linux)"
if [[ $(id -u) != 0 ]] && (($(cat /proc/sys/kernel/perf_event_paranoid) > 1)); then
  die "perf cannot attach to another process: run as root or set kernel.perf_event_paranoid=1"
fi
if ! "$PERF" record -q -F "$FREQ" -o /dev/null -- true >/dev/null 2>&1; then
  die "'perf record' does not work here ($PERF record -- true fails)"
fi

if [[ ! -x $COLLAPSE || ! -x $FLAMEGRAPH ]]; then
  log "installing inferno into $INFERNO_ROOT"
  nice -n 10 cargo install --locked --root "$INFERNO_ROOT" inferno --version '^0.12' >&2 ||
    die "cargo install inferno failed"
fi

if [[ $SKIP_BUILD != 1 ]]; then
  log "cargo build --profile profiling --bin shardio --bin shardio-bench"
  nice -n 10 cargo build --profile profiling --bin shardio --bin shardio-bench >&2 ||
    die "the profiling build failed"
fi
[[ -x $SHARDIO && -x $BENCH ]] || die "no $SHARDIO or $BENCH: build them first (SKIP_BUILD=0)"

ulimit -n "$(ulimit -Hn)" # thousands of connections need descriptors, on both sides

# The commit profiled; the SVGs this script rewrites do not make it dirty.
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- . ':(exclude)flamegraphs/*.svg' 2>/dev/null || COMMIT+="-dirty"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shardio-flamegraphs.XXXXXX")

# ---------------------------------------------------------------------------------------------
# Starting and stopping what we run.

SERVER_PID=""
PERF_PID=""

# Stops pid $1 with signal $2, then KILL after $3 tenths of a second.
stop_pid() {
  local pid=$1 sig=$2 tenths=$3
  [[ -n $pid ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$PERF_PID" INT 100
  stop_pid "$SERVER_PID" TERM 50
  PERF_PID="" SERVER_PID=""
  if [[ $KEEP_DATA == 1 ]]; then log "perf data kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts connections while pid $2 lives.
wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start_server() {
  local port=$1
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$SHARDIO" --listen "127.0.0.1:$port" --shards "$SHARDS" \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$port" "$SERVER_PID" || {
    tail -n 5 "$WORK/server.log" >&2 || true
    die "shardio did not listen on 127.0.0.1:$port within 10 s"
  }
}

# Attaches perf to the server until stop_perf.
start_perf() {
  local name=$1
  "$PERF" record -F "$FREQ" -g --call-graph "$CALL_GRAPH" -p "$SERVER_PID" \
    -o "$WORK/$name.perf.data" >"$WORK/$name.perf.log" 2>&1 &
  PERF_PID=$!
  sleep 1 # perf needs a moment to attach to every thread
  kill -0 "$PERF_PID" 2>/dev/null || {
    cat "$WORK/$name.perf.log" >&2
    die "perf record exited at once"
  }
}

stop_perf() {
  stop_pid "$PERF_PID" INT 300 # SIGINT: perf writes its data and exits
  PERF_PID=""
}

# ---------------------------------------------------------------------------------------------
# The scenarios.

run_load() {
  local name=$1 url=$2
  case $name in
    fanout)
      timeout $((FANOUT_DURATION + 90)) taskset -c "$BENCH_CPU" "$BENCH" fanout --url "$url" \
        --subscribers "$FANOUT_SUBS" --rooms "$FANOUT_ROOMS" --publishers "$FANOUT_PUBS" \
        --rate 0 --duration "$FANOUT_DURATION" --drain 5 --cpu "$BENCH_CPU" \
        --server-pid "$SERVER_PID"
      ;;
    fanout10k)
      timeout $((FANOUT_DURATION + 90)) taskset -c "$BENCH_CPU" "$BENCH" fanout --url "$url" \
        --subscribers "$TENK_SUBS" --rooms 1 --publishers 1 --rate "$TENK_RATE" \
        --duration "$FANOUT_DURATION" --drain 5 --cpu "$BENCH_CPU" --server-pid "$SERVER_PID"
      ;;
    connect)
      local round
      for round in $(seq 1 "$CONNECT_ROUNDS"); do
        log "connect round $round/$CONNECT_ROUNDS"
        timeout 120 taskset -c "$BENCH_CPU" "$BENCH" connect --url "$url" \
          --count "$CONNECT_COUNT" --hold 0 --cpu "$BENCH_CPU" --server-pid "$SERVER_PID" ||
          return 1
      done
      ;;
    *) return 1 ;;
  esac
}

# The load and its result (under perf: slower than without), the sampling, the kernel.
subtitle() {
  local name=$1 load result
  case $name in
    fanout)
      load="$FANOUT_SUBS subscribers / $FANOUT_ROOMS rooms / $FANOUT_PUBS publishers flat out, ${FANOUT_DURATION} s"
      result=$(awk '$1 == "deliveries/s" {print $2 " deliveries/s"; exit}' "$WORK/$name.bench.txt")
      ;;
    fanout10k)
      load="$TENK_SUBS subscribers in one room, one publisher at $TENK_RATE/s, ${FANOUT_DURATION} s"
      result=$(awk '$1 == "latency" {print "latency p50 " $3 " / p99 " $6 " ms"; exit}' "$WORK/$name.bench.txt")
      ;;
    connect)
      load="$CONNECT_ROUNDS x $CONNECT_COUNT handshakes, closed after each round"
      result="$(awk '$1 == "handshakes/s" {printf "%s%s", sep, $2; sep=", "}' "$WORK/$name.bench.txt") handshakes/s"
      ;;
  esac
  echo "$load: $result; perf -F $FREQ --call-graph $CALL_GRAPH; Linux $(uname -r); $(date -u +%Y-%m-%d)"
}

for name in $SCENARIOS; do
  port=$(free_port)
  log "$name: shardio on 127.0.0.1:$port (core $SERVER_CPU), generator on core $BENCH_CPU"
  start_server "$port"
  start_perf "$name"
  if ! run_load "$name" "http://127.0.0.1:$port" >"$WORK/$name.bench.txt" 2>&1; then
    cat "$WORK/$name.bench.txt" >&2
    die "$name: the load generator failed or timed out"
  fi
  stop_perf
  stop_pid "$SERVER_PID" TERM 50
  SERVER_PID=""
  grep -E 'deliveries/s|handshakes/s|lost|server CPU' "$WORK/$name.bench.txt" >&2 || true
  tail -n 2 "$WORK/$name.perf.log" >&2

  log "$name: folding stacks"
  # Inlined frames are kept (perf resolves them with addr2line; seconds here, with LTO on).
  timeout 600 "$PERF" script -i "$WORK/$name.perf.data" 2>"$WORK/$name.script.log" |
    "$COLLAPSE" --all >"$WORK/$name.folded" || die "$name: perf script or inferno-collapse-perf failed"
  [[ -s $WORK/$name.folded ]] || die "$name: no samples (see $WORK/$name.perf.log)"
  svg=$name.svg shards="1 shard"
  if [[ $SHARDS != 1 ]]; then svg=$name-${SHARDS}shards.svg shards="$SHARDS shards on cpu $SERVER_CPU"; fi
  title="shardio $name, $shards, commit $COMMIT"
  "$FLAMEGRAPH" --title "$title" --subtitle "$(subtitle "$name")" \
    --minwidth "$MINWIDTH" --width 1600 --colors rust "$WORK/$name.folded" >"$OUT_DIR/$svg" ||
    die "$name: inferno-flamegraph failed"
  log "$name: wrote flamegraphs/$svg ($(du -h "$OUT_DIR/$svg" | cut -f1))"
done
