#!/usr/bin/env bash
# Builds libox_push_settings.so, the Dovecot 2.4 settings module that
# registers ox_push's keys (a small C library of its own: the config process
# that loads it has no lib-storage and no push_notification plugin, so it is
# not part of the Rust cdylib).
#
# Usage: dovecot-plugin/settings/build.sh [--test-plugin] [DOVECOT_CONFIG [OUTDIR]]
#   DOVECOT_CONFIG  default /usr/lib/dovecot/dovecot-config; a root's made by
#                   `make dovecot-2.4` works too (scripts/dovecot-env.sh)
#   OUTDIR          default target/dovecot-<ABI version>
#   --test-plugin   also build lib99_ox_push_settings_test_plugin.so (tests only)
# Prints the paths of what it built as its last output lines. Install the
# module as $dovecot_moduledir/settings/libox_push_settings.so.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
test_plugin=no
if [ "${1:-}" = --test-plugin ]; then
	test_plugin=yes
	shift
fi
eval "$("$top/scripts/dovecot-env.sh" "${1:-/usr/lib/dovecot/dovecot-config}")"
if [ "$DOVECOT_VERSION_MAJOR" -lt 2 ] ||
	{ [ "$DOVECOT_VERSION_MAJOR" = 2 ] && [ "$DOVECOT_VERSION_MINOR" -lt 4 ]; }; then
	echo "settings module: Dovecot $DOVECOT_VERSION has no settings modules (2.4 and later only)" >&2
	exit 1
fi
out=${2:-$top/target/dovecot-$DOVECOT_ABI_VERSION}
mkdir -p "$out"

cc=${CC:-cc}
cflags=(-std=gnu11 -O2 -g -fPIC -Wall -W -Wmissing-prototypes -Wmissing-declarations
	-Wno-unused-parameter -Werror=implicit-function-declaration
	-DHAVE_CONFIG_H -I"$DOVECOT_INCLUDE_DIR" -I"$here")
# Dovecot's symbols resolve when the config process (or a mail process)
# dlopen()s the module, as for every Dovecot plugin: no -ldovecot.
"$cc" "${cflags[@]}" -shared -o "$out/libox_push_settings.so" \
	"$here/ox-push-settings.c" "$here/ox-push-settings-module.c"
built=("$out/libox_push_settings.so")
if [ $test_plugin = yes ]; then
	"$cc" "${cflags[@]}" -shared -o "$out/lib99_ox_push_settings_test_plugin.so" \
		"$here/ox-push-settings.c" "$here/test/ox-push-settings-test-plugin.c"
	built+=("$out/lib99_ox_push_settings_test_plugin.so")
fi
printf '%s\n' "${built[@]}"
