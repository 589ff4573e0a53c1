#!/usr/bin/env bash
# Proves the settings module (dovecot-plugin/settings/) in the
# Debian 13 root made by `make dovecot-2.4`:
#  1. without it, Dovecot 2.4 rejects ox_push's keys;
#  2. with it, doveconf shows their defaults and accepts good values, in
#     `push_notification <name> { }` blocks and globally;
#  3. it rejects each kind of bad value with a clear message;
#  4. a mail process reads the values per block (a test plugin logs them at
#     user init, next to what the built-in ox driver reads in that block).
#
# The cached root is never changed: the module is shown to Dovecot by
# bind-mounting a private copy of $moduledir/settings over the root's, inside
# private mount namespaces (unshare -m) that end with the commands run in them.
#
# Usage: scripts/dovecot-2.4-settings-test.sh [ROOT/usr/lib/dovecot/dovecot-config]
# Keep the temp dir with OX_PUSH_SMOKE_KEEP=1.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
helper="$here/dovecot-2.4/smoke-helper.py"
config=${1:-$("$here/dovecot-2.4.sh" | tail -n 1)}
eval "$("$here/dovecot-env.sh" "$config")"
root=$DOVECOT_SYSROOT
[ -n "$root" ] || { echo "dovecot-2.4-settings-test: $config is not inside a root" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "dovecot-2.4-settings-test: must run as root" >&2; exit 1; }
settings_dir=$DOVECOT_MODULEDIR_IN_ROOT/settings

t=$(mktemp -d "$root/tmp/oxpush-settings.XXXXXX")
tin=${t#"$root"}
failures=0

master_pid() { cat "$t/run/master.pid" 2>/dev/null || true; }
stop_master() {
	local pid
	pid=$(master_pid)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	return 0
}
cleanup() {
	local rc=$?
	stop_master
	if [ $rc != 0 ] && [ -f "$t/dovecot.log" ]; then
		echo "--- dovecot.log (last 30 lines)" >&2
		tail -n 30 "$t/dovecot.log" >&2
	fi
	if [ "${OX_PUSH_SMOKE_KEEP:-0}" = 1 ]; then
		echo "kept $t" >&2
	else
		rm -rf --one-file-system "$t"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs CMD inside the root, with $t/settings as its $moduledir/settings.
# shellcheck disable=SC2016 # the inner shell expands $1..$3
in_root() {
	unshare --mount --propagation private -- sh -c \
		'mount --bind "$1" "$2$3" && r=$2 && shift 3 && exec chroot "$r" "$@"' \
		sh "$t/settings" "$root" "$settings_dir" "$@"
}

mkdir -p "$t/settings" "$t/plugins" "$t/run" "$t/state" "$t/home/alice"
chmod 0755 "$t"
chown 5000:5000 "$t/home/alice"
echo "alice:{PLAIN}pw:5000:5000::$tin/home/alice::" >"$t/users"
# The root's own settings modules (Pigeonhole's), as hard links.
for so in "$root$settings_dir"/*.so; do
	ln "$so" "$t/settings/"
done
mapfile -t built < <("$top/dovecot-plugin/settings/build.sh" --test-plugin "$config" "$t/build")
for so in "$DOVECOT_MODULEDIR"/*.so; do
	ln -s "$DOVECOT_MODULEDIR_IN_ROOT/$(basename "$so")" "$t/plugins/"
done
cp "${built[1]}" "$t/plugins/"
read -r lmtp_port < <(python3 "$helper" ports 1)
printf 'dummy CA for the test\n' >"$t/ca.pem"

base_conf() {
	cat <<EOF
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = $tin/run
state_dir = $tin/state
instance_name = $(basename "$t")
log_path = $tin/dovecot.log
listen = 127.0.0.1
protocols = lmtp
ssl = no
first_valid_uid = 1000
mail_driver = maildir
mail_path = ~/Maildir
mail_plugin_dir = $tin/plugins
mail_attribute {
  dict file {
    path = %{home}/dovecot-attributes
  }
}
passdb passwd-file {
  passwd_file_path = $tin/users
  default_password_scheme = PLAIN
}
userdb passwd-file {
  passwd_file_path = $tin/users
}
service lmtp {
  inet_listener lmtp {
    listen = 127.0.0.1
    port = $lmtp_port
  }
}
mail_plugins {
  notify = yes
  push_notification = yes
  ox_push_settings_test = yes
}
EOF
}

# One config with the given lines inside `push_notification ox2 { }`.
block_conf() {
	base_conf
	echo "push_notification ox2 {"
	echo "  driver = ox"
	echo "  ox_url = http://127.0.0.1:9/notify"
	printf '  %s\n' "$@"
	echo "}"
}

{
	base_conf
	cat <<EOF
# Global defaults for every block:
push_notification_ox_push_max_age = 30mins
push_notification ox {
  ox_url = http://127.0.0.1:9/notify
}
push_notification ox2 {
  driver = ox
  ox_url = http://login:secret@127.0.0.1:9/preliminary/http-notify/v1/notify
  ox_cache_ttl = 10s
  ox_user_from_metadata = yes
  http_client_request_timeout = 2s
  http_client_request_max_attempts = 2
  ssl_client_ca_file = $tin/ca.pem
  ox_push_relay_socket = /run/ox-push/relay
  ox_push_max_age = 1h
  ox_push_shutdown_timeout = 2s
  ox_push_folders = INBOX Work "Sent Items"
  ox_push_events = messageNew messageRead flagsSet
  ox_push_notification_id = yes
}
EOF
} >"$t/dovecot.conf"

echo "==> 1. without the settings module, 2.4 rejects the keys"
block_conf "ox_push_max_age = 1h" >"$t/plain.conf"
if in_root doveconf -c "$tin/plain.conf" -n >/dev/null 2>"$t/err"; then
	echo "FAIL: accepted without the module"; failures=$((failures + 1))
fi
cat "$t/err"
cp "${built[0]}" "$t/settings/"

echo "==> 2. doveconf -d: the defaults (module $settings_dir/libox_push_settings.so)"
in_root doveconf -c "$tin/dovecot.conf" -d | grep -E '^push_notification_(ox_push_|ox_|driver|name)'
echo "==> doveconf -n"
in_root doveconf -c "$tin/dovecot.conf" -n | sed -n '/^push_notification/,$p'

echo "==> 3. bad values are rejected"
check_bad() {
	block_conf "$1" >"$t/bad.conf"
	if in_root doveconf -c "$tin/bad.conf" -n >/dev/null 2>"$t/err"; then
		echo "FAIL: accepted: $1"; failures=$((failures + 1))
	else
		printf '%-42s -> %s\n' "$1" "$(tail -n 1 "$t/err" | sed 's|/tmp/oxpush-settings[^:]*:|CONF:|')"
	fi
}
check_bad "ox_push_shutdown_timeout = 11s"
check_bad "ox_push_shutdown_timeout = soon"
check_bad "ox_push_max_age = 10"
check_bad "ox_push_max_age = 0"
check_bad "ox_push_events = messageNew messageDeleted"
check_bad "ox_push_folders = INBOX *"
check_bad "ox_push_relay_socket = relative/path"
check_bad "ox_push_notification_id = maybe"
check_bad "ox_push_spool_dir = /var/spool/x"
check_bad "user_from_metadata = yes"

echo "==> 4. a mail process reads them per block (test plugin, LMTP delivery)"
# Starts the master with the given config, delivers one message to alice.
start_and_deliver() {
	# shellcheck disable=SC2016 # the inner shell expands $1..$4
	unshare --mount --propagation private -- sh -c \
		'mount -t proc proc "$2/proc" && mount --bind "$1" "$2$3" && exec chroot "$2" /usr/sbin/dovecot -c "$4"' \
		sh "$t/settings" "$root" "$settings_dir" "$1"
	python3 "$helper" wait-greeting "$lmtp_port" 15
	printf 'From: bob@example.org\r\nSubject: settings\r\n\r\nbody\r\n' >"$t/msg.eml"
	python3 "$helper" lmtp "$lmtp_port" alice "$t/msg.eml"
}
start_and_deliver "$tin/dovecot.conf"
python3 "$helper" wait-log "$t/dovecot.log" 'lmtp(alice)' 10
grep -a 'ox-push-settings-test' "$t/dovecot.log" | grep -a 'lmtp(alice)' |
	sed 's/^.*ox-push-settings-test: //'
expect() {
	grep -aq -- "$1" "$t/dovecot.log" || { echo "FAIL: not logged: $1"; failures=$((failures + 1)); }
}
expect "ox: ox_push_relay_socket=$tin/run/ox-push ox_push_max_age=1800s ox_push_shutdown_timeout=100ms ox_push_folders=INBOX ox_push_events=messageNew ox_push_notification_id=no"
expect "ox2: ox_push_relay_socket=/run/ox-push/relay ox_push_max_age=3600s ox_push_shutdown_timeout=2000ms ox_push_folders=INBOX,Work,Sent Items ox_push_events=messageNew,messageRead,flagsSet ox_push_notification_id=yes"
expect "ox2: ox_url=http://login:secret@127.0.0.1:9/preliminary/http-notify/v1/notify ox_cache_ttl=10000ms ox_user_from_metadata=yes http_client_request_timeout=2000ms http_client_request_max_attempts=2 ssl_client_ca_file=$tin/ca.pem (22 bytes of PEM)"
expect "ox: settings_try_get_filter(ox_push) = 0"
expect "ox2: settings_try_get_filter(ox_push) = 1"
if grep -a -E ': (Error|Fatal|Panic):' "$t/dovecot.log"; then
	failures=$((failures + 1))
fi

echo "==> 5. a mail process whose config lacks the module cannot read the info"
stop_master
rm "$t/settings/libox_push_settings.so"
mv "$t/dovecot.log" "$t/dovecot-4.log"
{
	base_conf
	printf 'push_notification ox {\n  ox_url = http://127.0.0.1:9/notify\n}\n'
} >"$t/nomodule.conf"
start_and_deliver "$tin/nomodule.conf"
python3 "$helper" wait-log "$t/dovecot.log" 'lmtp(alice)' 10
grep -a 'ox-push-settings-test: ox:' "$t/dovecot.log" | grep -a 'lmtp(alice)' | head -n 1 |
	sed 's/^.*ox-push-settings-test: //'
expect "Configuration has no settings struct named 'push_notification_ox_push'"

echo "$((failures == 0 ? 1 : 0)) passed, $failures failed"
[ $failures = 0 ]
