#!/usr/bin/env bash
# Proves that the root made by `make dovecot-2.4` runs a private Dovecot 2.4:
# starts one inside the root (own base_dir/state_dir/log_path in a temp dir
# under the root's /tmp, loopback ports, passwd-file users with uid 5000+,
# METADATA in a file dict, the built-in push_notification `ox` driver aimed at
# an HTTP capture on the host), enables push with doveadm, delivers by LMTP
# from the host and by dovecot-lda, prints the captured PUT requests, and
# checks what a plain (non-libdovecot) service program gets from the 2.4
# master: listener fd, RESTRICT_* environment, how its stderr is logged.
# Everything it starts is stopped again, also on failure.
#
# Usage: scripts/dovecot-2.4-smoke.sh [PATH/usr/lib/dovecot/dovecot-config]
#        (default: what scripts/dovecot-2.4.sh prints; it makes the root first
#        when needed). Keep the temp dir with OX_PUSH_SMOKE_KEEP=1.
#
# Run time in the root:
# - Nothing is bind-mounted. debootstrap made real /dev nodes (null, zero,
#   random, urandom, tty, ...). Dovecot, doveadm and dovecot-lda work without
#   /proc (only debug lines "open(/proc/self/io) failed" per mail process), but
#   a /proc is mounted for the master anyway, in a private mount namespace
#   (unshare -m) that lives exactly as long as the master and its children: no
#   mount to undo, none visible on the host, nothing left when a test dies.
# - doveadm and dovecot-lda run from the host as
#   `nsenter --target <master pid> --mount -- chroot ROOT CMD ...`
#   (the master's namespace, with its /proc); plain `chroot ROOT CMD` works too.
# - Users: the root's own /etc/passwd has dovecot and dovenull (made by
#   dovecot-core's postinst, uids differ from the host's). The test users'
#   uids (5000+) need no passwd entry: passwd-file userdb gives uid, gid, home.
# - The host reaches the root's Dovecot on 127.0.0.1 (no network namespace)
#   and its unix sockets at ROOT/<path inside the root>.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
helper="$here/dovecot-2.4/smoke-helper.py"
config=${1:-$("$here/dovecot-2.4.sh" | tail -n 1)}
root=${config%/usr/lib/dovecot/dovecot-config}
if [ "$root" = "$config" ] || [ ! -x "$root/usr/sbin/dovecot" ]; then
	echo "dovecot-2.4-smoke: $config is not ROOT/usr/lib/dovecot/dovecot-config of a root with Dovecot" >&2
	exit 1
fi
[ "$(id -u)" = 0 ] || { echo "dovecot-2.4-smoke: must run as root" >&2; exit 1; }

t=$(mktemp -d "$root/tmp/oxpush-smoke.XXXXXX")
tin=${t#"$root"}        # the same directory, as seen inside the root
capture_pid=

master_pid() { cat "$t/run/master.pid" 2>/dev/null || true; }
in_root() { nsenter --target "$(master_pid)" --mount -- chroot "$root" "$@"; }

cleanup() {
	local rc=$? pid
	pid=$(master_pid)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	fi
	[ -n "$capture_pid" ] && kill "$capture_pid" 2>/dev/null
	if [ $rc != 0 ] && [ -f "$t/dovecot.log" ]; then
		echo "--- dovecot.log (last 40 lines)" >&2
		tail -n 40 "$t/dovecot.log" >&2
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

read -r lmtp_port imap_port http_port < <(python3 "$helper" ports 3)
chmod 0755 "$t"
mkdir -p "$t/run" "$t/state" "$t/home"
: >"$t/users"
for i in 0 1; do
	user=$([ $i = 0 ] && echo alice || echo bob)
	mkdir "$t/home/$user"
	chown $((5000 + i)):$((5000 + i)) "$t/home/$user"
	echo "$user:{PLAIN}pw:$((5000 + i)):$((5000 + i))::$tin/home/$user::" >>"$t/users"
done
cc -O2 -Wall -o "$t/service-probe" "$here/dovecot-2.4/service-probe.c"

cat >"$t/dovecot.conf" <<EOF
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = $tin/run
state_dir = $tin/state
instance_name = $(basename "$t")
log_path = $tin/dovecot.log
mail_debug = yes
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain
first_valid_uid = 1000
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_driver = maildir
mail_path = ~/Maildir
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
service imap-login {
  inet_listener imap {
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    listen = 127.0.0.1
    port = $lmtp_port
  }
}
protocol imap {
  imap_metadata = yes
}
mail_plugins {
  notify = yes
  push_notification = yes
}
push_notification ox {
  ox_url = http://login:secret@127.0.0.1:$http_port/preliminary/http-notify/v1/notify
  ox_user_from_metadata = yes
}
# The relay's service block in 2.4 syntax, run by a stand-in program. 2.3's
# \$default_internal_group is written \$SET:default_internal_group in 2.4
# (the 2.3 spelling passes doveconf but the master then fails with
# "Group doesn't exist: \$default_internal_group").
service ox-push {
  executable = $tin/service-probe --status
  user = dovenull
  process_limit = 1
  process_min_avail = 1
  unix_listener ox-push {
    mode = 0660
    group = \$SET:default_internal_group
  }
}
# The same with drop_priv_before_exec: the master drops privileges itself.
service ox-push-dropped {
  executable = $tin/service-probe --status
  user = dovenull
  drop_priv_before_exec = yes
  process_limit = 1
  process_min_avail = 1
  unix_listener ox-push-dropped {
    mode = 0660
    group = \$SET:default_internal_group
  }
}
EOF

python3 "$helper" capture "$http_port" "$t/capture.log" &
capture_pid=$!

echo "==> doveconf -n (inside the root)"
chroot "$root" doveconf -c "$tin/dovecot.conf" -n | grep -v '^# \(OS\|Hostname\)'
echo "==> starting Dovecot: $(chroot "$root" dovecot --version), root $root, dir $tin"
started_ms=$(( $(date +%s%N) / 1000000 ))
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's
unshare --mount --propagation private -- sh -c \
	'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/dovecot -c "$2"' \
	sh "$root" "$tin/dovecot.conf"
python3 "$helper" wait-greeting "$lmtp_port" 15
python3 "$helper" wait-greeting "$imap_port" 15
echo "ready after $(( $(date +%s%N) / 1000000 - started_ms )) ms"

in_root doveadm -c "$tin/dovecot.conf" mailbox metadata set -u alice -s "" \
	/private/vendor/vendor.dovecot/http-notify "user=3@1"
echo "==> METADATA of alice: $(in_root doveadm -c "$tin/dovecot.conf" mailbox metadata get \
	-u alice -s "" /private/vendor/vendor.dovecot/http-notify)"

printf 'From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: smoke via LMTP\r\n\r\nHello "world"\r\n' >"$t/msg-lmtp.eml"
python3 "$helper" lmtp "$lmtp_port" alice "$t/msg-lmtp.eml"
python3 "$helper" wait-requests "$t/capture.log" 1 10
printf 'From: Bob <bob@example.org>\nSubject: smoke via dovecot-lda\n\nbody\n' |
	in_root /usr/lib/dovecot/dovecot-lda -c "$tin/dovecot.conf" -d alice -f sender@example.org
echo "dovecot-lda delivery to alice: exit 0"
python3 "$helper" wait-requests "$t/capture.log" 2 10
echo "==> captured requests"
cat "$t/capture.log"

echo "==> plain service programs under the 2.4 master"
for svc in ox-push ox-push-dropped; do
	echo "$svc socket: $(stat -c '%A %U(%u):%G(%g)' "$t/run/$svc") (host names; root's dovecot group is $(chroot "$root" getent group dovecot))"
	echo "$svc greets: $(python3 "$helper" unix "$t/run/$svc")"
done
# (A service started before the log process has its first lines logged only
# when it writes the next one: the greeting's log line brings them.)
python3 "$helper" wait-log "$t/dovecot.log" 'ox-push-dropped: Info: greeted a client' 10
grep -a 'ox-push' "$t/dovecot.log" | sed 's/^[A-Z][a-z][a-z] [0-9]* [0-9:]* //'
for expect in 'ox-push: Error: a plain stderr line' 'ox-push: Debug: a debug line' \
	'ox-push: Info: an info line' 'ox-push: Warning: a warning line' \
	'ox-push: Info: env RESTRICT_SETUID=' 'ox-push: Info: started: uid=0 ' \
	'ox-push: Info: listener is fd 8' 'ox-push-dropped: Info: listener is fd 8' \
	'ox-push-dropped: Info: env RESTRICT_SETUID=' 'ox-push-dropped: Info: started: uid=[1-9]'; do
	grep -aq "$expect" "$t/dovecot.log" || { echo "missing in dovecot.log: $expect" >&2; exit 1; }
done

echo "==> errors in dovecot.log other than the probes' own"
if grep -a -E ': (Error|Fatal|Panic):' "$t/dovecot.log" | grep -a -v -E 'ox-push(-dropped)?: Error: an? (plain stderr|error) line'; then
	exit 1
fi
echo "(none)"
echo "smoke test passed"
