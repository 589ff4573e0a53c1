#!/usr/bin/env bash
# `make install` into a staging root (DESTDIR): the module lands in Dovecot's
# mail_plugin_dir with mode 0644 and the symbols Dovecot looks for, the spool
# directory with mode 1777, and Dovecot loads and initialises it from there
# (doveadm with mail_plugins = ... ox_push; no user is needed for that).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=$(mktemp -d /tmp/ox-push-install.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
fail() { echo "tests/install.sh: FAILED: $*" >&2; exit 1; }

make -s install DESTDIR="$STAGE" SPOOL_DIR=/var/spool/dovecot-ox-push >/dev/null
moddir="$STAGE$(doveconf -h mail_plugin_dir)"
so="$moddir/lib30_ox_push_plugin.so"
[[ -f "$so" ]] || fail "$so not installed"
[[ $(stat -c %a "$so") == 644 ]] || fail "$so has mode $(stat -c %a "$so"), want 644"
spool="$STAGE/var/spool/dovecot-ox-push"
[[ -d "$spool" && $(stat -c %a "$spool") == 1777 ]] || fail "$spool missing or not mode 1777"
for sym in ox_push_plugin_init ox_push_plugin_deinit ox_push_plugin_version; do
  nm -D --defined-only "$so" | grep -qw "$sym" || fail "$so does not export $sym"
done

# Load it: the system's modules plus the installed one in one directory.
mods="$STAGE/modules"
mkdir -p "$mods"
for m in "$(doveconf -h mail_plugin_dir)"/*.so; do ln -s "$m" "$mods/"; done
cp "$so" "$mods/"
cat >"$STAGE/dovecot.conf" <<CONF
base_dir = $STAGE/run
log_path = /dev/stderr
mail_plugin_dir = $mods
mail_plugins = notify push_notification ox_push
plugin {
  push_notification_driver = ox:url=http://127.0.0.1:9/notify spool_dir=$spool
}
CONF
# The user lookup fails (no auth service runs); the modules are loaded before it.
out=$(doveadm -c "$STAGE/dovecot.conf" -D mailbox list -u nobody 2>&1 || true)
grep -q "Module loaded: $mods/lib30_ox_push_plugin.so" <<<"$out" \
  || fail "the installed module was not loaded: $out"
if grep -Ei "panic|fatal|segmentation|push-notification-ox: .*error" <<<"$out"; then
  fail "loading the installed module went wrong: $out"
fi
echo "tests/install.sh: ok ($so)"
