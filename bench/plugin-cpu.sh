#!/usr/bin/env bash
# CPU per notification of the plugin's own code (examples/submit_cost.rs), on
# one thread as in a Dovecot process: the commit path (JSON, spool record,
# request written on a kept-alive loopback connection) and the ioloop callback
# (answer read, spool record acknowledged), with the spool on disk (/var/tmp)
# and on tmpfs (/dev/shm). RUNS runs each, medians printed. Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
COUNT=${COUNT:-20000}
cargo build --release -q --example submit_cost
BIN=${CARGO_TARGET_DIR:-target}/release/examples/submit_cost
printf 'spool\tcommit path µs\tioloop callback µs\ttotal µs\tnotifications/s\n'
for base in /var/tmp /dev/shm; do
  [ -d "$base" ] || continue
  results=()
  for _ in $(seq "$RUNS"); do
    d=$(mktemp -d "$base/ox-push-cost.XXXXXX")
    results+=("$("$BIN" "$d" "$COUNT" | awk -F'\t' '
      /commit path/ {c=$2} /ioloop callbacks/ {s=$2} /plugin total/ {t=$2} /throughput/ {r=$2}
      END {print c, s, t, r}')")
    rm -rf "$d"
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print("'"$base"'\t%.1f\t%.1f\t%.1f\t%.0f" % tuple(med))'
done
