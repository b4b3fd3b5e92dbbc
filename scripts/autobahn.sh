#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against the plain WebSocket echo of the
# conformance app (/ws-echo), and prints the verdicts per section. Without arguments: sections
# 1-10 (12 and 13 are compression, not offered). With --websocket-compression: the server
# accepts permessage-deflate and every section runs, 12 and 13 included.
# Exits non-zero unless every case is OK or INFORMATIONAL. Needs Python 2.7 (wstest runs on
# nothing newer): set PYTHON2, or have python2.7 on the PATH or under pyenv. Reports go to
# target/autobahn/reports/ (index.html).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/autobahn
venv=$dir/venv
port=${PORT:-9001}
compression=
case "${1:-}" in
  --websocket-compression) compression=--websocket-compression ;;
  "") ;;
  *) echo "usage: scripts/autobahn.sh [--websocket-compression]" >&2; exit 2 ;;
esac

is_py27() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; }
if [ ! -x "$venv/bin/wstest" ]; then
  candidates=("${PYTHON2:-}" python2.7 python2)
  if command -v pyenv >/dev/null; then
    candidates+=("$(pyenv root)"/versions/2.7*/bin/python)
  fi
  py2=
  for c in "${candidates[@]}"; do
    if is_py27 "$c"; then py2=$c; break; fi
  done
  [ -n "$py2" ] || { echo "scripts/autobahn.sh: needs Python 2.7 (set PYTHON2 to its path)" >&2; exit 1; }
  "$py2" -m pip --version >/dev/null 2>&1 || "$py2" -m ensurepip >/dev/null
  "$py2" -m pip install --quiet --disable-pip-version-check "virtualenv<20.22"
  mkdir -p "$dir"
  "$py2" -m virtualenv --quiet "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check autobahntestsuite
fi

cargo build --release --example conformance
target/release/examples/conformance --listen "127.0.0.1:$port" --shards 2 $compression &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

mkdir -p "$dir"
python3 - "$port" "$compression" tests/autobahn/fuzzingclient.json >"$dir/fuzzingclient.json" <<'PY'
import json, sys
port, compression, path = sys.argv[1:]
spec = json.load(open(path))
spec["servers"][0]["url"] = spec["servers"][0]["url"].replace("127.0.0.1:9001", "127.0.0.1:" + port)
if compression:
    spec["exclude-cases"] = []
print(json.dumps(spec, indent=2))
PY
rm -rf "$dir/reports"
(cd "$dir" && venv/bin/wstest -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1)

python3 - "$dir/reports/index.json" <<'PY'
import collections, json, sys
cases = json.load(open(sys.argv[1]))["shardio"]
key = lambda c: [int(p) for p in c.split(".")]
verdicts = collections.Counter()
sections = collections.defaultdict(collections.Counter)
bad = []
for case in sorted(cases, key=key):
    r = cases[case]
    verdicts[(r["behavior"], r["behaviorClose"])] += 1
    sections[key(case)[0]][r["behavior"]] += 1
    if r["behavior"] not in ("OK", "INFORMATIONAL") or r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
        bad.append(f'{case}: behavior {r["behavior"]}, close {r["behaviorClose"]}')
print(f"{len(cases)} cases")
for (behavior, close), n in sorted(verdicts.items()):
    print(f"  {n:4d}  behavior {behavior}, close {close}")
print("per section (behavior):")
for section in sorted(sections):
    counts = ", ".join(f"{n} {b}" for b, n in sorted(sections[section].items()))
    print(f"  {section:2d}: {counts}")
print("\n".join(bad) if bad else "every case OK or INFORMATIONAL")
sys.exit(1 if bad else 0)
PY
