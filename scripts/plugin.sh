#!/usr/bin/env bash
# `make plugin [DOVECOT_CONFIG=PATH]`: builds, in release mode, for the Dovecot
# that PATH (its dovecot-config; default the system's) describes:
#   - the plugin, lib30_ox_push_plugin.so, against that Dovecot's headers, in a
#     cargo target dir of its own (target/release for the system's Dovecot,
#     target/dovecot-<ABI>/release for any other: scripts/build-paths.sh);
#   - for Dovecot 2.4, the settings module libox_push_settings.so beside it;
#   - ox-push-relay and ox-push-stats in target/release (they do not depend on
#     Dovecot: the same binaries serve 2.3 and 2.4).
# Its last output lines are the absolute paths of what it built.
#
# Usage: scripts/plugin.sh [DOVECOT_CONFIG]   (CARGO= names cargo)
set -euo pipefail
# shellcheck source=scripts/build-paths.sh
. "$(dirname "$0")/build-paths.sh"
ox_push_build_paths "${1:-${DOVECOT_CONFIG:-/usr/lib/dovecot/dovecot-config}}"
cargo=${CARGO:-cargo}
cd "$OX_PUSH_TOP"

echo "==> ox_push for Dovecot $DOVECOT_VERSION (ABI $DOVECOT_ABI_VERSION${DOVECOT_SYSROOT:+, in $DOVECOT_SYSROOT}) into ${OX_PUSH_PLUGIN_DIR#"$OX_PUSH_TOP"/}" >&2
DOVECOT_CONFIG=$DOVECOT_CONFIG "$cargo" build --release -p ox-push --target-dir "$OX_PUSH_CARGO_TARGET_DIR"
cp "$OX_PUSH_PLUGIN_DIR/libox_push.so" "$OX_PUSH_PLUGIN_DIR/lib30_ox_push_plugin.so.tmp"
mv -f "$OX_PUSH_PLUGIN_DIR/lib30_ox_push_plugin.so.tmp" "$OX_PUSH_PLUGIN_DIR/lib30_ox_push_plugin.so"
built=("$OX_PUSH_PLUGIN_DIR/lib30_ox_push_plugin.so")
if [ "$OX_PUSH_V24" = yes ]; then
	dovecot-plugin/settings/build.sh "$DOVECOT_CONFIG" "$OX_PUSH_PLUGIN_DIR" >/dev/null
	built+=("$OX_PUSH_PLUGIN_DIR/libox_push_settings.so")
fi
"$cargo" build --release -p ox-push-relay --target-dir "$OX_PUSH_TOP/target"
built+=("$OX_PUSH_BIN_DIR/ox-push-relay" "$OX_PUSH_BIN_DIR/ox-push-stats")
printf '%s\n' "${built[@]}"
