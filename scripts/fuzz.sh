#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (or the ones named) for SECONDS each, default 60:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz when it is missing. Its AddressSanitizer build (the default) passes
# -Zsanitizer=address, which a stable rustc refuses; RUSTC_BOOTSTRAP=1 makes stable accept it, and
# the sanitizer's runtime ships with the stable standard library (x86_64 Linux), so no nightly
# toolchain is needed. SHARDIO_FUZZ_SANITIZER=none builds without it (no -Z flag at all): about
# three times the executions per second, finding panics, hangs and memory blow-ups, not memory
# errors (there is no unsafe code in shardio).
# New inputs go to fuzz/work/<target>/ (not committed); the seeds in fuzz/corpus/<target>/ are
# read, never written. A crash or hang is saved in fuzz/artifacts/<target>/; turn it into a
# corpus file and a regression test (README, "Fuzzing and the soak").
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
[ $# -gt 0 ] && shift
sanitizer=${SHARDIO_FUZZ_SANITIZER:-address}

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target"
  echo "== $target: ${secs}s, sanitizer $sanitizer"
  # -timeout: one input running past 10 s is reported as a hang; -rss_limit_mb: memory past
  # 2 GiB is reported as a leak or an unbounded allocation.
  if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "scripts/fuzz.sh: failures in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "scripts/fuzz.sh: ${#targets[@]} targets, ${secs}s each, no failure"
