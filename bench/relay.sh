#!/usr/bin/env bash
# Benchmark of the ox-push relay alone (issue 9): throughput into a fast loopback
# receiver, CPU per notification, connections, RSS with 100,000 spooled notifications.
# Usage (as root): bench/relay.sh   env: N CLIENTS RUNS CONCURRENCY SPOOLED RELAY_EXTRA
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "bench/relay.sh: run as root" >&2; exit 1; }
id -u ox-push >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ox-push
(cd "$ROOT" && cargo build --release -q -p ox-push-relay --bins --examples)
WORK=$(mktemp -d /tmp/relay-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
mkdir -p "$WORK/examples"
T=${CARGO_TARGET_DIR:-$ROOT/target}/release
cp "$T/ox-push-relay" "$WORK/"
cp "$T/examples/relay_load" "$T/examples/bench_receiver" "$WORK/examples/"
echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); machine: $(nproc) CPUs," \
     "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
timeout --foreground -k 30 "${BENCH_TIMEOUT:-1800}" python3 "$ROOT/bench/relay.py" "$WORK"
