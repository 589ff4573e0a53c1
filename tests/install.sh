#!/usr/bin/env bash
# `make install` into a staging root (DESTDIR): the module lands in Dovecot's
# module directory (from dovecot-config) with mode 0644 and the symbols Dovecot
# looks for, the relay and ox-push-stats with mode 0755, the conf.d snippet,
# the spool directory with mode 0700 owned by the relay's user; Dovecot accepts
# the snippet (doveconf), loads and initialises the installed module, and its
# master starts the installed relay as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=$(mktemp -d /tmp/ox-push-install.XXXXXX)
chmod 0755 "$STAGE"
cleanup() {
  [[ -f "$STAGE/run/master.pid" ]] && kill "$(cat "$STAGE/run/master.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$STAGE"
}
trap cleanup EXIT
fail() { echo "tests/install.sh: FAILED: $*" >&2; exit 1; }
mode() { stat -c %a "$1"; }

id -u ox-push >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ox-push
make -s install DESTDIR="$STAGE" SPOOL_DIR=/var/spool/dovecot-ox-push >/dev/null
moddir="$STAGE$(. /usr/lib/dovecot/dovecot-config && echo "$dovecot_moduledir")"
so="$moddir/lib30_ox_push_plugin.so"
relay="$STAGE/usr/lib/dovecot/ox-push-relay"
stats="$STAGE/usr/local/bin/ox-push-stats"
snippet="$STAGE/etc/dovecot/conf.d/95-ox-push.conf"
spool="$STAGE/var/spool/dovecot-ox-push"
[[ -f "$so" && $(mode "$so") == 644 ]] || fail "$so missing or not mode 644"
[[ -f "$relay" && $(mode "$relay") == 755 ]] || fail "$relay missing or not mode 755"
[[ -f "$stats" && $(mode "$stats") == 755 ]] || fail "$stats missing or not mode 755"
[[ -f "$snippet" && $(mode "$snippet") == 644 ]] || fail "$snippet missing or not mode 644"
grep -q "executable = /usr/lib/dovecot/ox-push-relay --spool /var/spool/dovecot-ox-push" "$snippet" \
  || fail "$snippet does not name the installed relay"
[[ -d "$spool" && $(mode "$spool") == 700 && $(stat -c %U "$spool") == ox-push ]] \
  || fail "$spool missing, not mode 700 or not owned by ox-push"
for sym in ox_push_plugin_init ox_push_plugin_deinit ox_push_plugin_version; do
  nm -D --defined-only "$so" | grep -qw "$sym" || fail "$so does not export $sym"
done

# Load it: the system's modules plus the installed one in one directory, the
# installed snippet with the staged paths, the plugin lines switched on.
mods="$STAGE/modules"
mkdir -p "$mods"
for m in /usr/lib/dovecot/modules/*.so; do
  [[ $(basename "$m") == lib30_ox_push_plugin.so ]] || ln -s "$m" "$mods/"
done
cp "$so" "$mods/"
sed -e "s|/usr/lib/dovecot/ox-push-relay|$relay|" -e "s|--spool /var/spool/dovecot-ox-push|--spool $spool|" \
    -e 's|^#mail_plugins|mail_plugins|' -e 's|^#mail_attribute_dict|mail_attribute_dict|' \
    "$snippet" > "$STAGE/95-ox-push.conf"
cat >"$STAGE/dovecot.conf" <<CONF
base_dir = $STAGE/run
state_dir = $STAGE/state
instance_name = ox-push-install-test
log_path = $STAGE/dovecot.log
protocols =
listen = 127.0.0.1
mail_plugin_dir = $mods
!include $STAGE/95-ox-push.conf
plugin {
  push_notification_driver = ox:url=http://127.0.0.1:9/notify
}
CONF
doveconf -n -c "$STAGE/dovecot.conf" >/dev/null 2>"$STAGE/doveconf.err" \
  || fail "doveconf refuses the installed snippet: $(cat "$STAGE/doveconf.err")"
# The user lookup fails (no auth service runs); the modules are loaded before it.
out=$(doveadm -c "$STAGE/dovecot.conf" -D mailbox list -u nobody 2>&1 || true)
grep -q "Module loaded: $mods/lib30_ox_push_plugin.so" <<<"$out" \
  || fail "the installed module was not loaded: $out"
if grep -Ei "panic|fatal|segmentation|push-notification-ox: .*error" <<<"$out"; then
  fail "loading the installed module went wrong: $out"
fi
# The master starts the installed relay, as ox-push.
dovecot -c "$STAGE/dovecot.conf" || fail "dovecot did not start: $(cat "$STAGE/dovecot.log" 2>/dev/null)"
for _ in $(seq 100); do
  [[ -S "$STAGE/run/ox-push" ]] && "$stats" "$STAGE/run/ox-push" >/dev/null 2>&1 && break
  sleep 0.1
done
"$stats" "$STAGE/run/ox-push" | grep -q "spool $spool" || fail "the relay does not answer: $(cat "$STAGE/dovecot.log")"
pid=$(pgrep -f "^dovecot-ox-push-install-test/ox-push-relay" || pgrep -f "$relay" | head -1)
[[ -n "$pid" && $(stat -c %U "/proc/$pid") == ox-push ]] || fail "the relay does not run as ox-push"
echo "tests/install.sh: ok ($so, $relay)"
