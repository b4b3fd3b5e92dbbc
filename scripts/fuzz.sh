#!/usr/bin/env bash
# Fuzzes every target of fuzz/ (or the ones named) for SECONDS each, default 60:
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz when it is missing. cargo-fuzz passes nightly-only flags (-Z) to rustc;
# on a stable toolchain RUSTC_BOOTSTRAP=1 lets it, and AddressSanitizer works with the stable
# standard library. SHARDIO_FUZZ_SANITIZER=none runs without it (faster, finds panics only).
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
