#!/usr/bin/env bash
# Runs every test of shardio. Installs what the tests need when it is missing: redis-server,
# redis-cli, haproxy, openssl and chromium (Debian packages; the Redis bridge, Redis Cluster,
# Sentinel and load balancer tests start their own, the JWT tests make their keys with openssl,
# the demo page test drives a headless Chromium), a Prometheus binary (unpacked from Debian's
# package under target/, for the scrape test), the npm packages of the real-client tests
# (tests/js, from package-lock.json) and the python-socketio client (tests/py/.venv, from
# tests/py/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null || { echo "scripts/test.sh: $tool is required" >&2; exit 1; }
done

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
# redis-cli builds the Redis Cluster of the sharded-mode tests (redis-server --sentinel is the
# sentinel of the Sentinel test: no other package).
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v openssl >/dev/null || missing+=(openssl)   # the JWT tests make their keys with it
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ -x /usr/bin/chromium ] || missing+=(chromium)   # the demo page test's browser (tests/js/demo_browser.mjs)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "scripts/test.sh: install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

# A Prometheus server for the scrape test (tests/it/ops.rs): Debian's package, unpacked under
# target/ (the binary only: nothing is installed system-wide, no service is started).
if [ -z "${SHARDIO_TEST_PROMETHEUS:-}" ]; then
  if command -v prometheus >/dev/null; then
    SHARDIO_TEST_PROMETHEUS=$(command -v prometheus)
  else
    tools=target/test-tools/prometheus
    if [ ! -x "$tools/usr/bin/prometheus" ]; then
      command -v apt-get >/dev/null || { echo "scripts/test.sh: install prometheus" >&2; exit 1; }
      rm -rf "$tools" && mkdir -p "$tools"
      (
        cd "$tools"
        apt-get download prometheus >/dev/null 2>&1 \
          || { apt-get update >/dev/null && apt-get download prometheus >/dev/null 2>&1; }
        dpkg-deb -x prometheus_*.deb . && rm prometheus_*.deb
      )
    fi
    SHARDIO_TEST_PROMETHEUS=$PWD/$tools/usr/bin/prometheus
  fi
  export SHARDIO_TEST_PROMETHEUS
fi

# npm packages for the real-client tests, installed exactly from the lock file.
if ! (cd tests/js && npm ls --silent >/dev/null 2>&1); then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# The python-socketio client, in a virtualenv; reinstalled when the requirements change.
venv=tests/py/.venv
if ! cmp -s tests/py/requirements.txt "$venv/requirements.installed" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "scripts/test.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
  cp tests/py/requirements.txt "$venv/requirements.installed"
fi

cargo test --all-targets "$@"
# Doc examples are compiled (and run where they can) too.
cargo test --doc "$@"
