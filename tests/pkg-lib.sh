# Sourced by tests/deb.sh and tests/install-2.4.sh: a throwaway copy of the
# Debian 13 root, a private Dovecot master (on the host or in such a copy) that
# loads what was installed, and file-list snapshots for "removed cleanly".
#
# Everything acts on a "root": "" for the host, or the host path of a copy.
# Paths written into Dovecot's configuration are the paths Dovecot sees.
# shellcheck shell=bash

fail() { echo "${0##*/}: FAILED: $*" >&2; exit 1; }
step() { echo "==> ${0##*/} [${SECONDS}s]: $*" >&2; }

# Runs a command as the root's Dovecot would (chrooted for a copy).
in_root() {
	local root=$1
	shift
	if [ -n "$root" ]; then chroot "$root" "$@"; else "$@"; fi
}

# A copy of the cached root (ROOT) at DEST, taken while no `make dovecot-2.4`
# replaces it (that script holds the same lock, exclusively, while it builds).
# The cache itself is never written to.
copy_root() {
	local root=$1 dest=$2 lock
	lock=$(dirname "$root")/.$(basename "$root").lock
	if [ -e "$lock" ]; then
		flock -s "$lock" cp -a --reflink=auto "$root" "$dest"
	else
		cp -a --reflink=auto "$root" "$dest"
	fi
}

# Kills every process whose root directory is inside DIR (a copy about to be
# removed), and checks that nothing is mounted below it.
release_root() {
	local dir=$1 p r
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		case $r in "$dir" | "$dir"/*) kill -KILL "${p#/proc/}" 2>/dev/null || true ;; esac
	done
	if grep -qF " $dir/" /proc/self/mountinfo; then
		echo "${0##*/}: something is still mounted below $dir; not removing it" >&2
		return 1
	fi
}

# The paths, types, modes and owners (numeric) below a root's system
# directories: what a package and its maintainer scripts may touch. Left out:
# dpkg's and apt's own databases, logs, caches, temporary files, Dovecot's
# instance list (written by every master start), shadow's backup and lock
# files (useradd and userdel rewrite them).
snapshot() {
	(
		cd "${1:-/}" || exit 1
		find etc usr var opt srv -xdev \( -path var/lib/dpkg -o -path var/lib/apt -o -path var/log \
			-o -path var/cache -o -path var/tmp -o -path var/lib/systemd -o -path var/backups \
			-o -path var/lib/dovecot -o -path var/mail -o -path 'etc/*-' -o -path etc/.pwd.lock \
			-o -path etc/ld.so.cache \) -prune -o -printf '%p %y %m %U %G\n' 2>/dev/null | sort
	)
}

# The user and group databases of a root, one "file: line" per line.
users() {
	local f
	for f in passwd group shadow gshadow; do
		sed "s|^|$f: |" "${1:-}/etc/$f"
	done
}

# Paths added (+path) and removed (-path) between two snapshots, sorted.
path_diff() {
	diff <(cut -d' ' -f1 "$1") <(cut -d' ' -f1 "$2") | sed -n 's/^> /+/p; s/^< /-/p' | sort || true
}

# Fails unless the paths added and removed between two snapshots are exactly
# EXPECTED (path_diff's format; "" for none); with "", types, modes and
# owners must be equal too.
expect_diff() {
	local before=$1 after=$2 expected=$3 what=$4 got
	got=$(path_diff "$before" "$after")
	[ "$got" = "$expected" ] || fail "$what: expected these paths added/removed:
${expected:-  (none)}
but got:
${got:-  (none)}"
	if [ -z "$expected" ] && ! cmp -s "$before" "$after"; then
		fail "$what: types, modes or owners changed:
$(diff "$before" "$after" | head -20)"
	fi
}

# Fails unless the user databases differ only by lines of USER added ("+")
# or not at all ("").
expect_users() {
	local before=$1 after=$2 user=$3 how=$4 what=$5 changed
	changed=$(diff "$before" "$after" | grep '^[<>]' || true)
	case $how in
	"") [ -z "$changed" ] || fail "$what: the user database changed: $changed" ;;
	+) if grep -v "^> [a-z]*: $user:" <<<"$changed" | grep -q .; then
		fail "$what: the user database changed beyond $user: $changed"
	fi ;;
	esac
}

# Switches on every configuration line of an installed conf.d snippet (both
# syntaxes): every commented top-level block ("#name ... {" up to "#}"), every
# commented top-level setting ("#key = "), the 2.3 driver lines inside
# plugin { }; endpoints are pointed at a closed loopback port.
switch_on() {
	sed -e '/^#[a-z_][a-z_]* .*{$/,/^#}$/s/^#//' \
		-e 's/^#\([a-z_]* = \)/\1/' \
		-e 's/^\(  \)#\(push_notification_driver[0-9]* = \)/\1\2/' \
		-e 's|https\{0,1\}://[^ ]*/notify|http://127.0.0.1:9/preliminary/http-notify/v1/notify|' "$1"
}

# A private Dovecot configuration in DIR (host path HOSTDIR) for Dovecot
# VERSION (2.3... or 2.4...), including SNIPPET (a path Dovecot sees): own
# base_dir and log, no listeners, one passwd-file user alice (uid 5000).
private_config() {
	local hostdir=$1 dir=$2 version=$3 snippet=$4
	mkdir -p "$hostdir/run" "$hostdir/state" "$hostdir/home/alice"
	chown 5000:5000 "$hostdir/home/alice"
	echo "alice:{PLAIN}secret:5000:5000::$dir/home/alice::" >"$hostdir/users"
	case $version in
	2.3*)
		cat >"$hostdir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
instance_name = ox-push-pkg-test-${dir##*/}
log_path = $dir/dovecot.log
protocols =
listen = 127.0.0.1
first_valid_uid = 1000
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = $dir/users
}
userdb {
  driver = passwd-file
  args = $dir/users
}
!include $snippet
CONF
		;;
	*)
		cat >"$hostdir/dovecot.conf" <<CONF
dovecot_config_version = ${version%%-*}
dovecot_storage_version = ${version%%-*}
base_dir = $dir/run
state_dir = $dir/state
instance_name = ox-push-pkg-test-${dir##*/}
log_path = $dir/dovecot.log
protocols =
listen = 127.0.0.1
first_valid_uid = 1000
mail_driver = maildir
mail_path = ~/Maildir
passdb passwd-file {
  passwd_file_path = $dir/users
  default_password_scheme = PLAIN
}
userdb passwd-file {
  passwd_file_path = $dir/users
}
!include $snippet
CONF
		;;
	esac
}

# Starts the master of a private configuration (CONF as Dovecot sees it); in
# a copy of a root, in a mount namespace of its own that gives it /proc and
# vanishes with it.
start_master() {
	local root=$1 conf=$2
	if [ -n "$root" ]; then
		# shellcheck disable=SC2016 # for the inner sh
		unshare --mount --propagation private -- sh -c \
			'mount -t proc proc "$1/proc" && exec chroot "$1" /usr/sbin/dovecot -c "$2"' \
			sh "$root" "$conf"
	else
		dovecot -c "$conf"
	fi
}

# Stops the master whose base_dir is RUNDIR (host path), and its children.
stop_master() {
	local rundir=$1 pid
	pid=$(cat "$rundir/master.pid" 2>/dev/null) || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

# The private master in HOSTDIR (config DIR/dovecot.conf as Dovecot sees it)
# loads the installed module for a user, and its relay (EXE, as Dovecot sees
# it) runs as the relay user and answers on its socket with SPOOL.
check_dovecot() {
	local root=$1 hostdir=$2 dir=$3 moddir=$4 exe=$5 spool=$6
	local out pid relay_uid want_uid
	start_master "$root" "$dir/dovecot.conf" ||
		fail "dovecot did not start: $(cat "$hostdir/dovecot.log" 2>/dev/null)"
	for _ in $(seq 100); do
		[ -S "$hostdir/run/ox-push" ] && in_root "$root" ox-push-stats "$dir/run/ox-push" >/dev/null 2>&1 && break
		sleep 0.1
	done
	out=$(in_root "$root" ox-push-stats "$dir/run/ox-push" 2>&1) ||
		fail "the relay does not answer on $dir/run/ox-push: $out
$(cat "$hostdir/dovecot.log")"
	grep -q "spool $spool" <<<"$out" || fail "the relay does not use the spool $spool: $out"
	# A mail user with the plugin: the module is loaded and every driver
	# instance initialises without an error.
	out=$(in_root "$root" doveadm -c "$dir/dovecot.conf" -D mailbox list -u alice 2>&1) ||
		fail "doveadm mailbox list -u alice failed: $out"
	grep -q "Module loaded: $moddir/lib30_ox_push_plugin.so" <<<"$out" ||
		fail "the installed module was not loaded: $out"
	if grep -Ei "panic|fatal|error" <<<"$out" >&2; then
		fail "loading the installed module went wrong: $out"
	fi
	# The relay: a child of the master, the installed executable, the relay user.
	pid=
	for p in $(pgrep -P "$(cat "$hostdir/run/master.pid")"); do
		[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$root$exe" ] && pid=$p
	done
	[ -n "$pid" ] || fail "no $exe among the master's children"
	relay_uid=$(stat -c %u "/proc/$pid")
	want_uid=$(in_root "$root" id -u ox-push)
	[ "$relay_uid" = "$want_uid" ] || fail "the relay runs as uid $relay_uid, not as ox-push ($want_uid)"
	stop_master "$hostdir/run"
}
