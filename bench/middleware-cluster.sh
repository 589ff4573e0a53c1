#!/usr/bin/env bash
# One mock-middleware node vs three nodes on the same private PostgreSQL, same load, into one
# fake APNs sink. Every notification carries a fresh X-Notification-Id (the relay's
# notification_id option), so each is claimed in the database. Prints one table per round and
# the medians; ratios are taken within a round.
#
# Usage: bench/middleware-cluster.sh   (RUNS=3 PUSHES=20000 USERS=1000 SUBS=100000)
# Env:   RUNS, PUSHES, USERS, SUBS, CONNECTIONS, LAT_RATE, LAT_SECONDS, MM_BIN (skip the build),
#        IDS (1: every notification carries an X-Notification-Id; 0: none, nothing is claimed)
# Needs: PostgreSQL server binaries (Debian's postgresql, scripts/install-deps.sh), curl, python3.
# Bounded: every phase has a time limit; PostgreSQL and every node are stopped on exit.
set -euo pipefail

RUNS=${RUNS:-3}
PUSHES=${PUSHES:-20000}
USERS=${USERS:-1000}
SUBS=${SUBS:-100000}
CONNECTIONS=${CONNECTIONS:-48}
LAT_RATE=${LAT_RATE:-1000}
LAT_SECONDS=${LAT_SECONDS:-5}
IDS=${IDS:-1}
IDFLAG=(); [[ $IDS == 1 ]] && IDFLAG=(--ids)
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z "${MM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p mock-middleware)
  MM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/mock-middleware"
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[[ -x "$PGBIN/initdb" ]] || { echo "PostgreSQL not installed: run scripts/install-deps.sh" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
AS=()
if [[ $(id -u) == 0 ]]; then AS=(runuser -u postgres --); chown postgres "$WORK"; fi
pg() { "${AS[@]}" "$PGBIN/$1" "${@:2}"; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -f "$WORK/pg/postmaster.pid" ]] && pg pg_ctl -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_http() {
  local end=$((SECONDS + $2))
  until curl -sf -o /dev/null "$1"; do
    (( SECONDS < end )) || { echo "timeout waiting for $1" >&2; return 1; }
    sleep 0.1
  done
}
json() { python3 -c 'import json,sys; print(eval(sys.argv[2], {}, {"d": json.loads(sys.argv[1])}))' "$1" "$2"; }
metric_sum() { curl -s "$1/metrics" | awk -v pat="$2" 'index($0, pat) == 1 { s += $NF } END { printf "%d", s }'; }
TCK=$(getconf CLK_TCK)
# CPU ticks of the postmaster and all its children (backends, WAL writer, checkpointer, ...).
pg_ticks() {
  local pm; pm=$(head -n 1 "$WORK/pg/postmaster.pid")
  # (cat, not awk, reads the files: a process may end between the glob and the read, and
  # Debian's awk (mawk) stops with status 2 on a file that is gone.)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
    awk -v pm="$pm" '{ if ($1 == pm || $4 == pm) s += $14 + $15 } END { print s }'
}
node_ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PGPORT=$(free_port)
pg initdb -D "$WORK/pg" -U mm --auth=trust -E UTF8 >/dev/null
pg pg_ctl -D "$WORK/pg" -l "$WORK/pg.log" -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK -c max_connections=200" -w start >/dev/null
DBURL="postgres://mm@127.0.0.1:$PGPORT"

declare -a R_ACC1 R_ACC3 R_PS1 R_PS3 R_P991 R_P993 R_DB1 R_DB3 R_MM1 R_MM3 R_LOST1 R_LOST3 R_RATIO
for run in $(seq 1 "$RUNS"); do
  D="$WORK/run$run"; mkdir -p "$D"
  APNS=$(free_port); FCM=$(free_port); FADMIN=$(free_port)
  OUT=$("$MM_BIN" init-demo --dir "$D/conf" --http-port 1 --admin-port 2 --apns-port "$APNS" --fcm-port "$FCM" --fake-admin-port "$FADMIN")
  PASS=$(sed -n 's/^http-notify URL for Dovecot: //p' <<<"$OUT" | sed -E 's#^http://dovecot:([^@]*)@.*#\1#')
  TOKEN=$(cat "$D/conf/admin.token")
  (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$D/conf/cluster.key")
  pg createdb -h 127.0.0.1 -p "$PGPORT" -U mm "run$run"
  printf 'mock.recordings.max=1000\nmock.push.concurrency=512\nmock.queue.capacity=65536\nmock.fake.records.max=1000\nmock.db=%s/run%s\n' "$DBURL" "$run" >> "$D/conf/mock.properties"
  "$MM_BIN" load seed --db "$DBURL/run$run" --users "$SUBS" >/dev/null
  RUST_LOG=warn "$MM_BIN" fake-providers --config-dir "$D/conf" 2>"$D/fakes.log" & PIDS+=($!)
  wait_http "http://127.0.0.1:$FADMIN/fake/stats" 30
  sink() { json "$(curl -s "http://127.0.0.1:$FADMIN/fake/stats")" 'd["requests_total"]'; }

  # One configuration, N nodes: a directory per node with links to the shared files.
  start_nodes() { # count
    NODE_PIDS=(); NURLS=(); NADMINS=()
    for i in $(seq 1 "$1"); do
      local nd="$D/n$1-$i" http admin
      mkdir -p "$nd"; http=$(free_port); admin=$(free_port)
      for f in "$D/conf"/*; do [[ $(basename "$f") == mock.properties ]] || ln -sf "$f" "$nd/"; done
      { cat "$D/conf/mock.properties"; printf 'mock.http.listen=127.0.0.1:%s\nmock.admin.listen=127.0.0.1:%s\nmock.cluster.node_id=bench%s-%s\n' "$http" "$admin" "$1" "$i"; } > "$nd/mock.properties"
      RUST_LOG=warn "$MM_BIN" serve --config-dir "$nd" 2>"$nd/serve.log" & NODE_PIDS+=($!); PIDS+=($!)
      NURLS+=("http://127.0.0.1:$http/preliminary/http-notify/v1/notify"); NADMINS+=("http://127.0.0.1:$admin")
    done
    for a in "${NADMINS[@]}"; do wait_http "$a/metrics" 60; done
  }
  stop_nodes() { for p in "${NODE_PIDS[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done; }
  pushes_done() { local s=0; for a in "${NADMINS[@]}"; do s=$((s + $(metric_sum "$a" 'mock_pushes_total{'))); done; echo $s; }

  phase() { # nodes -> sets ACC PS P99 DB_US MM_US LOST
    start_nodes "$1"
    local urls; urls=$(IFS=,; echo "${NURLS[*]}")
    local s0 d0 c0 m0 start load stop c1 m1 done_ end_limit p99
    s0=$(sink); d0=$(pushes_done); c0=$(pg_ticks); m0=$(node_ticks "${NODE_PIDS[@]}")
    start=$(date +%s.%N)
    load=$("$MM_BIN" load run --url "$urls" "${IDFLAG[@]}" --password "$PASS" --users "$USERS" --connections "$CONNECTIONS" --seconds 120 --max-requests "$PUSHES")
    ACC=$(json "$load" 'd["accepted"]')
    local lstop; lstop=$(date +%s.%N)
    end_limit=$((SECONDS + 120))
    while :; do
      done_=$(( $(pushes_done) - d0 ))
      (( done_ >= ACC )) && break
      (( SECONDS < end_limit )) || { echo "pushes did not drain: $done_ of $ACC" >&2; break; }
      sleep 0.05
    done
    stop=$(date +%s.%N)
    c1=$(pg_ticks); m1=$(node_ticks "${NODE_PIDS[@]}")
    ACC_PS=$(python3 -c "print(round($ACC/($lstop-$start)))")
    PS=$(python3 -c "print(round($done_/($stop-$start)))")
    DB_US=$(python3 -c "print(round(($c1-$c0)/$TCK*1e6/max($ACC,1), 1))")
    MM_US=$(python3 -c "print(round(($m1-$m0)/$TCK*1e6/max($ACC,1), 1))")
    SINK=$(( $(sink) - s0 ))
    LOST=$(( ACC - SINK ))
    # p99 at a steady rate (latency at saturation is queueing): the worst node's p99.
    for a in "${NADMINS[@]}"; do curl -s -H "Authorization: Bearer $TOKEN" "$a/mock/latency?reset=true" >/dev/null; done
    "$MM_BIN" load run --url "$urls" "${IDFLAG[@]}" --password "$PASS" --users "$USERS" --connections 12 --seconds "$LAT_SECONDS" --rate "$LAT_RATE" >/dev/null
    sleep 1
    P99=0
    for a in "${NADMINS[@]}"; do
      p99=$(json "$(curl -s -H "Authorization: Bearer $TOKEN" "$a/mock/latency")" '"%.2f" % d["p99_ms"]')
      P99=$(python3 -c "print(max($P99, $p99))")
    done
    stop_nodes
    printf '  %s node(s): %s; pushes completed %s, requests at the sink %s\n' "$1" "$load" "$done_" "$SINK"
  }

  phase 1; R_ACC1+=("$ACC_PS"); R_PS1+=("$PS"); R_P991+=("$P99"); R_DB1+=("$DB_US"); R_MM1+=("$MM_US"); R_LOST1+=("$LOST"); PS_ONE=$PS
  phase 3; R_ACC3+=("$ACC_PS"); R_PS3+=("$PS"); R_P993+=("$P99"); R_DB3+=("$DB_US"); R_MM3+=("$MM_US"); R_LOST3+=("$LOST")
  R_RATIO+=("$(python3 -c "print(round($PS/max($PS_ONE,1), 2))")")
  printf 'round %d: 1 node %s/s accepted, %s pushes/s, p99 %s ms, DB %s µs, nodes %s µs, lost %s | 3 nodes %s/s, %s pushes/s, p99 %s ms, DB %s µs, nodes %s µs, lost %s\n' \
    "$run" "${R_ACC1[-1]}" "${R_PS1[-1]}" "${R_P991[-1]}" "${R_DB1[-1]}" "${R_MM1[-1]}" "${R_LOST1[-1]}" \
    "${R_ACC3[-1]}" "${R_PS3[-1]}" "${R_P993[-1]}" "${R_DB3[-1]}" "${R_MM3[-1]}" "${R_LOST3[-1]}"
  kill "${PIDS[0]}" 2>/dev/null || true; wait "${PIDS[0]}" 2>/dev/null || true
  PIDS=()
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}'), load average at start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $RUNS rounds ($PUSHES notifications, X-Notification-Id: $IDS, $USERS users, $CONNECTIONS connections, $SUBS subscriptions; p99 at $LAT_RATE/s):"
printf '| %-46s | %10s | %10s |\n' "metric" "1 node" "3 nodes" \
  "notifications/s accepted" "$(median "${R_ACC1[@]}")" "$(median "${R_ACC3[@]}")" \
  "pushes/s (first request to last push)" "$(median "${R_PS1[@]}")" "$(median "${R_PS3[@]}")" \
  "latency p99 ms at $LAT_RATE/s (worst node)" "$(median "${R_P991[@]}")" "$(median "${R_P993[@]}")" \
  "PostgreSQL CPU µs per notification" "$(median "${R_DB1[@]}")" "$(median "${R_DB3[@]}")" \
  "mock-middleware CPU µs per notification (all)" "$(median "${R_MM1[@]}")" "$(median "${R_MM3[@]}")" \
  "accepted minus pushed (>0 lost, <0 doubled)" "$(median "${R_LOST1[@]}")" "$(median "${R_LOST3[@]}")"
echo "pushes/s ratio 3 nodes / 1 node (same round): $(median "${R_RATIO[@]}") (rounds: ${R_RATIO[*]})"
