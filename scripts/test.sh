#!/usr/bin/env bash
# Runs every test of shardio. Installs what the tests need when it is missing:
# redis-server and haproxy (Debian packages; the Redis bridge and load balancer tests start
# their own), and the npm packages of the real-client tests (tests/js, from package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "scripts/test.sh: $tool is required" >&2; exit 1; }
done

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "scripts/test.sh: install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi

# npm packages for the real-client tests, installed exactly from the lock file.
if ! (cd tests/js && npm ls --silent >/dev/null 2>&1); then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo test --all-targets "$@"
# Doc examples are compiled (and run where they can) too.
cargo test --doc "$@"
