#!/usr/bin/env bash
# The plugin's real-Dovecot suites against Debian 13's Dovecot 2.4 (the root
# `make dovecot-2.4` prepares): the plugin and its settings module as
# `make plugin DOVECOT_CONFIG=...` builds them for that Dovecot, and the same
# tests as for 2.3, told by OX_PUSH_DOVECOT_CONFIG to run that Dovecot
# (tests/support/env.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$(scripts/dovecot-2.4.sh | tail -n 1)
# shellcheck source=scripts/build-paths.sh
. scripts/build-paths.sh
ox_push_build_paths "$CONFIG"
make -s plugin DOVECOT_CONFIG="$CONFIG" >/dev/null
export OX_PUSH_DOVECOT_CONFIG=$CONFIG
export OX_PUSH_PLUGIN=$OX_PUSH_PLUGIN_DIR/lib30_ox_push_plugin.so
export OX_PUSH_SETTINGS_MODULE=$OX_PUSH_PLUGIN_DIR/libox_push_settings.so
echo "==> the real-Dovecot suites against Dovecot $DOVECOT_VERSION ($CONFIG)"
cargo test -p ox-push --tests -- --test-threads=2
