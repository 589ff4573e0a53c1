#!/usr/bin/env bash
# Benchmark of mock-middleware on loopback: fake providers answering at once, subscriptions
# pre-created, PUT load from a second process. Prints one table per run and a median table.
#
# Usage: bench/middleware-load.sh            (RUNS=3 SECONDS_LOAD=10 SUBS=100000 by default)
# Env:   RUNS, SECONDS_LOAD, SUBS, CONNECTIONS, LAT_RATE, CARGO_TARGET_DIR, MM_BIN (skip the build)
# Bounded: every phase has a time limit; all processes are stopped on exit, also on failure.
set -euo pipefail

RUNS=${RUNS:-3}
SECONDS_LOAD=${SECONDS_LOAD:-10}
SUBS=${SUBS:-100000}
CONNECTIONS=${CONNECTIONS:-64}
LAT_RATE=${LAT_RATE:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${MM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p mock-middleware)
  MM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/mock-middleware"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # url, seconds
  local end=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    (( SECONDS < end )) || { echo "timeout waiting for $1" >&2; return 1; }
    sleep 0.1
  done
}
metric_sum() { # admin, metric name prefix with labels filter
  curl -s "$1/metrics" | awk -v pat="$2" 'index($0, pat) == 1 { s += $NF } END { printf "%d", s }'
}

declare -a R_ACC0 R_ACC R_PPS R_P50 R_P99 R_RSS R_HWM
for run in $(seq 1 "$RUNS"); do
  D="$WORK/run$run"
  HTTP=$(free_port); ADMIN=$(free_port); APNS=$(free_port); FCM=$(free_port); FADMIN=$(free_port)
  OUT=$("$MM_BIN" init-demo --dir "$D" --http-port "$HTTP" --admin-port "$ADMIN" --apns-port "$APNS" --fcm-port "$FCM" --fake-admin-port "$FADMIN")
  URL=$(sed -n 's/^http-notify URL for Dovecot: //p' <<<"$OUT")
  PASS=$(sed -E 's#^http://dovecot:([^@]*)@.*#\1#' <<<"$URL")
  printf 'mock.recordings.max=1000\nmock.push.concurrency=512\nmock.queue.capacity=65536\nmock.fake.records.max=1000\n' >> "$D/mock.properties"
  "$MM_BIN" load seed --db "$D/mock-middleware.sqlite" --users "$SUBS" >/dev/null
  RUST_LOG=warn "$MM_BIN" fake-providers --config-dir "$D" 2>"$D/fakes.log" & PIDS+=($!)
  RUST_LOG=warn "$MM_BIN" serve --config-dir "$D" 2>"$D/serve.log" & SERVE=$!; PIDS+=($SERVE)
  wait_http "http://127.0.0.1:$FADMIN/fake/stats" 30
  wait_http "http://127.0.0.1:$ADMIN/metrics" 60
  A="http://127.0.0.1:$ADMIN"
  NURL="http://127.0.0.1:$HTTP/preliminary/http-notify/v1/notify"
  RSS_IDLE=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$SERVE/status")

  # Phase 0: accept path only (users without subscriptions: parsed, recorded, no push).
  LOAD0=$("$MM_BIN" load run --url "$NURL" --password "$PASS" --users "$SUBS" --user-offset "$SUBS" --connections "$CONNECTIONS" --seconds "$SECONDS_LOAD")
  ACC0_PS=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(d["accepted_per_s"]))' "$LOAD0")

  # Phase 1: throughput with one push per notification, as fast as the load generator can go.
  START=$(date +%s.%N)
  LOAD=$("$MM_BIN" load run --url "$NURL" --password "$PASS" --users "$SUBS" --connections "$CONNECTIONS" --seconds "$SECONDS_LOAD")
  ACC=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["accepted"])' "$LOAD")
  ACC_PS=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(d["accepted_per_s"]))' "$LOAD")
  # Wait (bounded) until every accepted notification's push has completed.
  END_LIMIT=$((SECONDS + 120))
  while :; do
    DONE=$(metric_sum "$A" 'mock_pushes_total{')
    (( DONE >= ACC )) && break
    (( SECONDS < END_LIMIT )) || { echo "pushes did not drain: $DONE of $ACC" >&2; break; }
    sleep 0.05
  done
  STOP=$(date +%s.%N)
  PPS=$(python3 -c "print(round($DONE/($STOP-$START)))")
  HWM=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$SERVE/status")

  # Phase 2: latency at a sustainable rate.
  curl -s "$A/mock/latency?reset=true" >/dev/null
  "$MM_BIN" load run --url "$NURL" --password "$PASS" --users "$SUBS" --connections 16 --seconds 5 --rate "$LAT_RATE" >/dev/null
  sleep 1
  LAT=$(curl -s "$A/mock/latency")
  P50=$(python3 -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["p50_ms"])' "$LAT")
  P99=$(python3 -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["p99_ms"])' "$LAT")

  printf '\nrun %d: %s\n' "$run" "$LOAD"
  printf '| %-42s | %12s |\n' "notifications/s accepted, no push" "$ACC0_PS" \
    "notifications/s accepted, 1 push each" "$ACC_PS" "pushes/s end to end (phase 1)" "$PPS" \
    "latency p50 ms (at $LAT_RATE/s)" "$P50" "latency p99 ms (at $LAT_RATE/s)" "$P99" \
    "RSS MiB idle, $SUBS subscriptions" "$RSS_IDLE" "RSS MiB peak (VmHWM)" "$HWM"
  R_ACC0+=("$ACC0_PS"); R_ACC+=("$ACC_PS"); R_PPS+=("$PPS"); R_P50+=("$P50"); R_P99+=("$P99"); R_RSS+=("$RSS_IDLE"); R_HWM+=("$HWM")
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "median of $RUNS runs ($SECONDS_LOAD s load, $CONNECTIONS connections, $SUBS subscriptions):"
printf '| %-42s | %12s |\n' "metric" "value" "notifications/s accepted, no push" "$(median "${R_ACC0[@]}")" \
  "notifications/s accepted, 1 push each" "$(median "${R_ACC[@]}")" \
  "pushes/s end to end" "$(median "${R_PPS[@]}")" "latency p50 ms (at $LAT_RATE/s)" "$(median "${R_P50[@]}")" \
  "latency p99 ms (at $LAT_RATE/s)" "$(median "${R_P99[@]}")" "RSS MiB idle, $SUBS subscriptions" "$(median "${R_RSS[@]}")" \
  "RSS MiB peak (VmHWM)" "$(median "${R_HWM[@]}")"
