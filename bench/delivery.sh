#!/usr/bin/env bash
# Delivery-path benchmark of the Dovecot plugin: (a) no push, (b) Dovecot's built-in ox
# driver, (c) ox_push through the ox-push-relay service, against a loopback HTTP receiver
# that is healthy, hangs, or is down for OUTAGE_SECS. Builds the release plugin and relay,
# then runs bench/delivery.py.
#
# Usage (as root):  bench/delivery.sh [NAME=VALUE ...]      or      make bench
# Which Dovecot:    the host's (default), or a Dovecot 2.4 in a root made by `make dovecot-2.4`:
#                   DOVECOT_CONFIG=ROOT/usr/lib/dovecot/dovecot-config (what that prints last)
#                   or DOVECOT_PREFIX=ROOT. The plugin is then built against that root's
#                   headers (target/dovecot-2.4) with its settings module, and every Dovecot
#                   command runs chrooted in a private mount namespace (see delivery.py).
# Env / arguments:  N=2000 CONNS=4 USERS=1 RUNS=3 WARMUP=40 HANG_N=40 HANG_RUNS=3 HANG_SECS=10 HANG_WAIT=30
#                   OUTAGE_SECS=60 OUTAGE_N=400 OUTAGE_RUNS=1 OUTAGE_WAIT=60
#                   SCENARIOS=healthy,hang,outage PERF=1 PERF_RECORD=0 MAIL_DEBUG=0
#                   OUT=DIR (results.json + every Dovecot log; default a new /tmp dir)
#                   PLUGIN_SO=path (skip the build; RELAY=, SETTINGS_SO= likewise)
#                   BENCH_TIMEOUT=1200 (hard limit, seconds)
#                   RECEIVER=rust|python (the loopback receiver; default rust)
# Only 127.0.0.1 is used. Every Dovecot and receiver it starts is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "bench/delivery.sh: run as root" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# The Dovecot: DOVECOT_PREFIX (a root) or DOVECOT_CONFIG; the host's when neither names a root
# (`make` exports DOVECOT_CONFIG=/usr/lib/dovecot/dovecot-config, the host's, by default).
HOST_CONFIG=/usr/lib/dovecot/dovecot-config
if [[ -n "${DOVECOT_PREFIX:-}" && "${DOVECOT_PREFIX%/}" != "" ]]; then
  [[ "${DOVECOT_CONFIG:-$HOST_CONFIG}" == "$HOST_CONFIG" ]] ||
    { echo "bench/delivery.sh: set DOVECOT_PREFIX or DOVECOT_CONFIG, not both" >&2; exit 1; }
  DOVECOT_CONFIG=${DOVECOT_PREFIX%/}$HOST_CONFIG
fi
SYSROOT=
if [[ "${DOVECOT_CONFIG:-$HOST_CONFIG}" != "$HOST_CONFIG" ]]; then
  env_vars=$("$ROOT/scripts/dovecot-env.sh" "$DOVECOT_CONFIG")  # fails for a bad path
  eval "$env_vars"
  SYSROOT=$DOVECOT_SYSROOT
fi

WORK=$(mktemp -d /tmp/delivery-bench-plugin.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [[ -z "$SYSROOT" ]]; then
  command -v dovecot >/dev/null || { echo "dovecot is not installed (make deps)" >&2; exit 1; }
  if [[ -z "${PLUGIN_SO:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p ox-push -p ox-push-relay)
    PLUGIN_SO="$TARGET/release/libox_push.so"
  fi
  RELAY=${RELAY:-$(dirname "$PLUGIN_SO")/ox-push-relay}
  id -u ox-push >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ox-push
  DOVECOT_DESC="Dovecot $(dovecot --version)"
else
  # A root's Dovecot: the plugin against its headers, in a target dir of its own; the relay
  # does not depend on Dovecot (the host's build); 2.4's settings module.
  [[ "$DOVECOT_VERSION_MAJOR.$DOVECOT_VERSION_MINOR" == 2.4 ]] ||
    { echo "bench/delivery.sh: $DOVECOT_CONFIG is Dovecot $DOVECOT_VERSION; a root must hold 2.4" >&2; exit 1; }
  grep -q '^ox-push:' "$SYSROOT/etc/passwd" ||
    { echo "bench/delivery.sh: no user ox-push in $SYSROOT (make it anew: make dovecot-2.4)" >&2; exit 1; }
  T24=$TARGET/dovecot-2.4
  if [[ -z "${PLUGIN_SO:-}" ]]; then
    (cd "$ROOT" && DOVECOT_CONFIG=$DOVECOT_CONFIG cargo build --release -q -p ox-push --target-dir "$T24")
    (cd "$ROOT" && cargo build --release -q -p ox-push-relay)
    PLUGIN_SO="$T24/release/libox_push.so"
  fi
  RELAY=${RELAY:-$TARGET/release/ox-push-relay}
  if [[ -z "${SETTINGS_SO:-}" ]]; then
    SETTINGS_SO=$("$ROOT/dovecot-plugin/settings/build.sh" "$DOVECOT_CONFIG" "$T24" | tail -n 1)
  fi
  cp "$SETTINGS_SO" "$WORK/libox_push_settings.so"
  DOVECOT_DESC="Dovecot $(chroot "$SYSROOT" dovecot --version) in a Debian $(cat "$SYSROOT/etc/debian_version") root ($SYSROOT)"
fi
# Private copies: a concurrent rebuild must not change them under a running benchmark.
cp "$PLUGIN_SO" "$WORK/libox_push.so"
cp "$RELAY" "$WORK/ox-push-relay"
# The loopback receiver, in Rust (it shares the CPUs with Dovecot); RECEIVER=python for the
# Python one in delivery.py.
if [[ "${RECEIVER:-rust}" == rust ]]; then
  (cd "$ROOT" && cargo build --release -q -p ox-push-relay --example bench_receiver)
  cp "$TARGET/release/examples/bench_receiver" "$WORK/bench_receiver"
  export RECEIVER_BIN="$WORK/bench_receiver"
fi

echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src dovecot-plugin 2>/dev/null || echo ' (+ uncommitted changes in src/ or dovecot-plugin/)')"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)," \
     "Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), $DOVECOT_DESC, load $(cut -d' ' -f1-3 /proc/loadavg)"

ARGS=(--plugin="$WORK/libox_push.so" --relay="$WORK/ox-push-relay")
[[ -n "$SYSROOT" ]] && ARGS+=(--dovecot-config="$DOVECOT_CONFIG" --settings-module="$WORK/libox_push_settings.so")
[[ -n "${OUT:-}" ]] && ARGS+=(--out="$OUT")
# The Python driver reads the other settings from the environment and NAME=VALUE arguments.
timeout --foreground -s TERM -k 30 "${BENCH_TIMEOUT:-1200}" python3 "$ROOT/bench/delivery.py" "${ARGS[@]}" "$@"
