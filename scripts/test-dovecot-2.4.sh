#!/usr/bin/env bash
# The plugin's real-Dovecot suites against Debian 13's Dovecot 2.4 (the root
# `make dovecot-2.4` prepares): the plugin built against that Dovecot's
# headers (target/dovecot-2.4), its settings module, and the same tests as
# for 2.3, told by OX_PUSH_DOVECOT_CONFIG to run that Dovecot (tests/support/env.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$(scripts/dovecot-2.4.sh | tail -n 1)
T=target/dovecot-2.4
DOVECOT_CONFIG=$CONFIG cargo build -q -p ox-push --target-dir "$T"
dovecot-plugin/settings/build.sh "$CONFIG" "$T" >/dev/null
export OX_PUSH_DOVECOT_CONFIG=$CONFIG
export OX_PUSH_PLUGIN=$PWD/$T/debug/libox_push.so
export OX_PUSH_SETTINGS_MODULE=$PWD/$T/libox_push_settings.so
echo "==> the real-Dovecot suites against $(grep -h '^#define DOVECOT_VERSION ' "${CONFIG%/usr/lib/dovecot/dovecot-config}/usr/include/dovecot/config.h" | cut -d' ' -f3) ($CONFIG)"
cargo test -p ox-push --tests -- --test-threads=2
