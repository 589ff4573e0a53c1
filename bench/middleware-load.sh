#!/usr/bin/env bash
# Benchmark of mock-middleware on loopback, side by side with a bare client loop, both pushing
# into the same fake APNs sink (TLS, HTTP/2, JWT checked). Prints one table per round and a
# table of medians with the issue's targets.
#
# Then, unless CLUSTER=0, bench/middleware-cluster.sh: one node vs three nodes on PostgreSQL.
#
# Usage: bench/middleware-load.sh            (RUNS=3 PUSHES=50000 USERS=1000 SUBS=100000)
# Env:   RUNS, PUSHES, USERS, SUBS, CONNECTIONS, LAT_RATE, LAT_SECONDS, CARGO_TARGET_DIR,
#        MM_BIN (skip the build), CLUSTER (1), CLUSTER_PUSHES (20000)
# Bounded: every phase has a time limit; all processes are stopped on exit, also on failure.
set -euo pipefail

RUNS=${RUNS:-3}
PUSHES=${PUSHES:-50000}
USERS=${USERS:-1000}
SUBS=${SUBS:-100000}
CONNECTIONS=${CONNECTIONS:-64}
LAT_RATE=${LAT_RATE:-2000}
LAT_SECONDS=${LAT_SECONDS:-5}
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
json() { python3 -c 'import json,sys; print(eval(sys.argv[2], {}, {"d": json.loads(sys.argv[1])}))' "$1" "$2"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

declare -a R_BARE R_BARE_CPU R_E2E R_CPU R_RATIO R_SP50 R_SP99 R_P50 R_P99 R_CONN R_RSS R_HWM
for run in $(seq 1 "$RUNS"); do
  D="$WORK/run$run"
  HTTP=$(free_port); ADMIN=$(free_port); APNS=$(free_port); FCM=$(free_port); FADMIN=$(free_port)
  OUT=$("$MM_BIN" init-demo --dir "$D" --http-port "$HTTP" --admin-port "$ADMIN" --apns-port "$APNS" --fcm-port "$FCM" --fake-admin-port "$FADMIN")
  URL=$(sed -n 's/^http-notify URL for Dovecot: //p' <<<"$OUT")
  PASS=$(sed -E 's#^http://dovecot:([^@]*)@.*#\1#' <<<"$URL")
  TOKEN=$(cat "$D/admin.token")
  printf 'mock.recordings.max=1000\nmock.push.concurrency=512\nmock.queue.capacity=65536\nmock.fake.records.max=1000\n' >> "$D/mock.properties"
  "$MM_BIN" load seed --db "$D/mock-middleware.sqlite" --users "$SUBS" >/dev/null
  RUST_LOG=warn "$MM_BIN" fake-providers --config-dir "$D" 2>"$D/fakes.log" & PIDS+=($!)
  RUST_LOG=warn "$MM_BIN" serve --config-dir "$D" 2>"$D/serve.log" & SERVE=$!; PIDS+=($SERVE)
  wait_http "http://127.0.0.1:$FADMIN/fake/stats" 30
  wait_http "http://127.0.0.1:$ADMIN/metrics" 60
  A="http://127.0.0.1:$ADMIN"
  AUTH=(-H "Authorization: Bearer $TOKEN")
  NURL="http://127.0.0.1:$HTTP/preliminary/http-notify/v1/notify"
  conns() { json "$(curl -s "http://127.0.0.1:$FADMIN/fake/stats")" 'd["connections"]'; }
  RSS_IDLE=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$SERVE/status")

  # 1. The bare client loop: the same pushes straight into the sink.
  BARE=$(timeout 300 "$MM_BIN" load bare --url "https://127.0.0.1:$APNS" --ca-file "$D/fake-ca.pem" \
    --key "$D/apns-key.p8" --key-id DEMOKEY123 --team-id DEMOTEAM12 --topic com.openexchange.mailapp \
    --pushes "$PUSHES" --tokens "$USERS")
  BARE_PS=$(json "$BARE" 'round(d["pushes_per_s"])')
  BARE_CPU=$(json "$BARE" 'round(d["cpu_us_per_push"], 1)')

  # 2. End to end at saturation: PUSHES notifications for USERS subscribed users, one push each.
  curl -s "${AUTH[@]}" "$A/mock/latency?reset=true" >/dev/null
  C0=$(conns); CPU0=$(cpu_ticks "$SERVE"); DONE0=$(metric_sum "$A" 'mock_pushes_total{')
  START=$(date +%s.%N)
  LOAD=$("$MM_BIN" load run --url "$NURL" --password "$PASS" --users "$USERS" --connections "$CONNECTIONS" --seconds 120 --max-requests "$PUSHES")
  ACC=$(json "$LOAD" 'd["accepted"]')
  END_LIMIT=$((SECONDS + 120))
  while :; do
    DONE=$(( $(metric_sum "$A" 'mock_pushes_total{') - DONE0 ))
    (( DONE >= ACC )) && break
    (( SECONDS < END_LIMIT )) || { echo "pushes did not drain: $DONE of $ACC" >&2; break; }
    sleep 0.02
  done
  STOP=$(date +%s.%N)
  CPU1=$(cpu_ticks "$SERVE")
  E2E_PS=$(python3 -c "print(round($DONE/($STOP-$START)))")
  CPU_US=$(python3 -c "print(round(($CPU1-$CPU0)/$TCK*1e6/max($DONE,1), 1))")
  RATIO=$(python3 -c "print(round($E2E_PS/max($BARE_PS,1), 2))")
  LAT=$(curl -s "${AUTH[@]}" "$A/mock/latency")
  SP50=$(json "$LAT" '"%.2f" % d["p50_ms"]'); SP99=$(json "$LAT" '"%.2f" % d["p99_ms"]')
  CONN=$(( $(conns) - C0 ))
  HWM=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$SERVE/status")

  # 3. Latency at a steady rate.
  curl -s "${AUTH[@]}" "$A/mock/latency?reset=true" >/dev/null
  "$MM_BIN" load run --url "$NURL" --password "$PASS" --users "$USERS" --connections 16 --seconds "$LAT_SECONDS" --rate "$LAT_RATE" >/dev/null
  sleep 1
  LAT=$(curl -s "${AUTH[@]}" "$A/mock/latency")
  P50=$(json "$LAT" '"%.2f" % d["p50_ms"]'); P99=$(json "$LAT" '"%.2f" % d["p99_ms"]')

  printf '\nround %d: bare %s\n           middleware %s\n' "$run" "$BARE" "$LOAD"
  printf '| %-52s | %12s |\n' \
    "bare client loop, pushes/s" "$BARE_PS" "bare client loop, CPU µs per push" "$BARE_CPU" \
    "mock-middleware end to end, pushes/s" "$E2E_PS" "mock-middleware CPU µs per push" "$CPU_US" \
    "ratio end to end / bare" "$RATIO" \
    "latency p50 / p99 ms at saturation" "$SP50 / $SP99" \
    "latency p50 / p99 ms at $LAT_RATE/s" "$P50 / $P99" \
    "connections opened to the sink by mock-middleware" "$CONN" \
    "RSS MiB idle, $SUBS subscriptions" "$RSS_IDLE" "RSS MiB peak (VmHWM)" "$HWM"
  R_BARE+=("$BARE_PS"); R_BARE_CPU+=("$BARE_CPU"); R_E2E+=("$E2E_PS"); R_CPU+=("$CPU_US"); R_RATIO+=("$RATIO")
  R_SP50+=("$SP50"); R_SP99+=("$SP99"); R_P50+=("$P50"); R_P99+=("$P99"); R_CONN+=("$CONN")
  R_RSS+=("$RSS_IDLE"); R_HWM+=("$HWM")
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mark() { python3 -c "print('met' if $1 else 'NOT met')"; }
M_RATIO=$(median "${R_RATIO[@]}"); M_CPU=$(median "${R_CPU[@]}"); M_P99=$(median "${R_P99[@]}")
M_CONN=$(median "${R_CONN[@]}"); M_RSS=$(median "${R_RSS[@]}")
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $RUNS rounds ($PUSHES pushes, $USERS users, $CONNECTIONS notify connections, $SUBS subscriptions):"
printf '| %-52s | %12s | %-22s |\n' "metric" "median" "target" \
  "bare client loop, pushes/s" "$(median "${R_BARE[@]}")" "-" \
  "bare client loop, CPU µs per push" "$(median "${R_BARE_CPU[@]}")" "-" \
  "mock-middleware end to end, pushes/s" "$(median "${R_E2E[@]}")" "-" \
  "ratio end to end / bare (same round)" "$M_RATIO" "≥ 0.7: $(mark "$M_RATIO >= 0.7")" \
  "mock-middleware CPU µs per push" "$M_CPU" "≤ 30: $(mark "$M_CPU <= 30")" \
  "latency p50 ms at saturation" "$(median "${R_SP50[@]}")" "-" \
  "latency p99 ms at saturation" "$(median "${R_SP99[@]}")" "-" \
  "latency p50 ms at $LAT_RATE/s" "$(median "${R_P50[@]}")" "-" \
  "latency p99 ms at $LAT_RATE/s" "$M_P99" "≤ 5: $(mark "$M_P99 <= 5")" \
  "connections opened to the sink" "$M_CONN" "1: $(mark "$M_CONN == 1")" \
  "RSS MiB idle, $SUBS subscriptions" "$M_RSS" "≤ 64: $(mark "$M_RSS <= 64")" \
  "RSS MiB peak (VmHWM)" "$(median "${R_HWM[@]}")" "-"

if [[ "${CLUSTER:-1}" == 1 ]]; then
  echo
  echo "== one node vs three nodes on PostgreSQL (bench/middleware-cluster.sh)"
  MM_BIN="$MM_BIN" RUNS="$RUNS" PUSHES="${CLUSTER_PUSHES:-20000}" USERS="$USERS" SUBS="$SUBS" \
    "$ROOT/bench/middleware-cluster.sh"
fi
