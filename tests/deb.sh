#!/usr/bin/env bash
# The Debian packages of `make deb`, installed and removed for real:
#
# 1. dovecot-ox-push for Debian 12's Dovecot 2.3, on this host (dpkg -i):
#    Depends on dovecot-abi-2.3.abiv19 (what the host's dovecot-core
#    provides); installing changes nothing the system's Dovecot does (doveconf
#    -n of /etc/dovecot is the same); the postinst made the relay's user and
#    the spool (0700); with the snippet's lines switched on in a private
#    configuration, doveconf accepts it, a mail user loads the installed
#    module, and a private master starts the installed relay as ox-push.
#    dpkg -r leaves the conffile, the spool and the user; dpkg -P leaves
#    nothing (file lists and user database compared with before).
# 2. The same for Debian 13's Dovecot 2.4 in a throwaway copy of the root
#    `make dovecot-2.4` caches (chroot COPY dpkg -i/-r/-P), where the package
#    also creates and removes the relay's user; its settings module makes
#    doveconf know the ox_push_* keys.
# 3. mock-middleware on this host: systemd-analyze verify passes for its
#    unit; the binary runs; with the installed configuration it serves as
#    the unprivileged user the postinst made; remove/purge as above.
#
# Leaves the host and the cached root as it found them, also when it fails:
# files at the packages' paths that dpkg would overwrite (a `make install`)
# are moved aside and put back, the packages are purged, masters stopped.
# shellcheck disable=SC2016 # dpkg-query's own ${...} formats
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/pkg-lib.sh
. tests/pkg-lib.sh
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i, chroot)"
start=$(date +%s)

T=$(mktemp -d /tmp/ox-push-deb.XXXXXX)
chmod 0755 "$T"
SAVED=$T/saved
mkdir "$SAVED"
installed_here=()
claimed=()
made_policy=
cleanup() {
	local status=$? p
	set +e
	for d in "$T"/h23 "$T"/copy/tmp/*/; do stop_master "${d%/}/run"; done
	for p in "${installed_here[@]}"; do
		if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -qv 'not-installed$'; then
			echo "deb.sh: purging $p" >&2
			dpkg -P "$p" >/dev/null 2>&1
		fi
	done
	# What a broken package could leave at the paths set aside (they were
	# free before), and the users and statoverrides the packages make.
	for p in "${claimed[@]}"; do rm -rf "$p"; done
	for p in "ox-push:ox-push relay (dovecot-ox-push package)" \
		"mock-middleware:mock-middleware service (mock-middleware package)"; do
		if [ "$(getent passwd "${p%%:*}" | cut -d: -f5)" = "${p#*:}" ]; then userdel "${p%%:*}"; fi
	done
	for p in $(dpkg-statoverride --list | awk '$4 ~ /^\/etc\/mock-middleware/ { print $4 }'); do
		dpkg-statoverride --remove "$p"
	done
	# Put back what was moved aside.
	(cd "$SAVED" && find . -mindepth 1 -maxdepth 1 -printf '%P\n') | while read -r name; do
		orig=$(printf '%s' "$name" | sed 's|%|/|g')
		rm -rf "$orig"
		mv "$SAVED/$name" "$orig"
	done
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
	if [ -d "$T/copy" ]; then
		release_root "$T/copy" && rm -rf --one-file-system "$T"
	else
		rm -rf "$T"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# dpkg runs dovecot-core's trigger when files in /usr/lib/dovecot/modules
# come or go: "invoke-rc.d dovecot restart". No system Dovecot may start
# here (as in scripts/install-deps.sh): a policy-rc.d refuses while we run.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\n# tests/deb.sh: no service starts while it runs.\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	made_policy=1
fi

# Moves a host path aside (to be put back by cleanup) so that dpkg finds
# the path free, as on a machine where nothing was installed by hand.
set_aside() {
	local path
	for path; do
		claimed+=("$path")
		if [ -e "$path" ] || [ -L "$path" ]; then
			echo "deb.sh: $path exists (not from a package); set aside until the end" >&2
			mv "$path" "$SAVED/$(printf '%s' "$path" | sed 's|/|%|g')"
		fi
	done
}

# Not installed yet: this test would remove an operator's installation.
not_installed() {
	local root=$1 pkg=$2 status
	status=$(in_root "$root" dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null || true)
	case $status in
	"" | *not-installed) ;;
	*) fail "$pkg is on ${root:-this host} ($status); this test installs and purges it (dpkg -P $pkg first)" ;;
	esac
}

# --- build --------------------------------------------------------------
step "building the packages (make deb, for 2.3 and for 2.4)"
config24=$(scripts/dovecot-2.4.sh 2>/dev/null | tail -n 1)
[ -f "$config24" ] || fail "make dovecot-2.4 gave no dovecot-config"
make -s deb >"$T/build23.out" 2>"$T/build23.log" || fail "make deb: $(tail -20 "$T/build23.log")"
make -s deb DOVECOT_CONFIG="$config24" >"$T/build24.out" 2>"$T/build24.log" ||
	fail "make deb DOVECOT_CONFIG=$config24: $(tail -20 "$T/build24.log")"
mapfile -t debs23 < <(tail -n 2 "$T/build23.out")
mapfile -t debs24 < <(tail -n 2 "$T/build24.out")
deb23=${debs23[0]}
deb24=${debs24[0]}
mmdeb=${debs23[1]}
for f in "$deb23" "$deb24" "$mmdeb"; do [ -f "$f" ] || fail "make deb did not make $f"; done

depends() { dpkg-deb -f "$1" Depends; }
grep -q '^dovecot-abi-2\.3\.abiv19, ' <<<"$(depends "$deb23")" || fail "$deb23: Depends: $(depends "$deb23")"
grep -q '^dovecot-abi-2\.4\.abiv1, ' <<<"$(depends "$deb24")" || fail "$deb24: Depends: $(depends "$deb24")"
dpkg-query -W -f '${Provides}' dovecot-core | grep -qw 'dovecot-abi-2.3.abiv19' ||
	fail "the host's dovecot-core does not provide dovecot-abi-2.3.abiv19"
grep -q ' ./usr/lib/dovecot/modules/settings/libox_push_settings.so$' <<<"$(dpkg-deb -c "$deb24")" ||
	fail "$deb24 has no settings module"
if grep -q 'settings/' <<<"$(dpkg-deb -c "$deb23")"; then fail "$deb23 has a settings module (2.3 has none)"; fi

# --- dovecot-ox-push installed on a root, checked, removed, purged ---------
# ROOT: "" (host) or a copy. DIR: a private test directory as Dovecot sees it.
plugin_package() {
	local root=$1 deb=$2 dir=$3 version expected out
	local hostdir=$root$dir spool=/var/spool/dovecot-ox-push conf=/etc/dovecot/conf.d/95-ox-push.conf
	local moddir pkgdeb=$deb
	version=$(in_root "$root" dovecot --version | cut -d' ' -f1)
	# shellcheck source=/dev/null disable=SC2154 # dovecot-config sets it
	moddir=$(. "$root/usr/lib/dovecot/dovecot-config" && echo "$dovecot_moduledir")
	not_installed "$root" dovecot-ox-push
	snapshot "$root" >"$T/before"
	users "$root" >"$T/users-before"
	in_root "$root" doveconf -n 2>&1 | grep -v '^# ' >"$T/doveconf-before" || true

	step "${root:-host}: dpkg -i $(basename "$deb") (Dovecot $version)"
	if [ -n "$root" ]; then
		cp "$deb" "$root/tmp/"
		pkgdeb=/tmp/$(basename "$deb")
	fi
	in_root "$root" dpkg -i "$pkgdeb" >"$T/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$T/dpkg-i.log")"
	[ -z "$root" ] || rm -f "$root$pkgdeb"
	[ -n "$root" ] || installed_here+=(dovecot-ox-push)

	# Installing changes nothing the system's Dovecot does.
	in_root "$root" doveconf -n 2>&1 | grep -v '^# ' >"$T/doveconf-after" || true
	cmp -s "$T/doveconf-before" "$T/doveconf-after" ||
		fail "installing changed doveconf -n: $(diff "$T/doveconf-before" "$T/doveconf-after")"
	# The postinst's user and spool.
	in_root "$root" id -u ox-push >/dev/null || fail "no user ox-push after dpkg -i"
	[ "$(stat -c '%a %u' "$root$spool")" = "700 $(in_root "$root" id -u ox-push)" ] ||
		fail "$spool: $(stat -c '%a %U' "$root$spool"), not 700 ox-push"
	in_root "$root" dpkg-query -W -f '${Conffiles}\n' dovecot-ox-push | grep -q " $conf " ||
		fail "$conf is not a conffile"

	# The snippet's lines switched on, in a private configuration.
	mkdir -p "$hostdir"
	switch_on "$root$conf" >"$hostdir/95-ox-push.conf"
	grep -q '^service ox-push {$' "$hostdir/95-ox-push.conf" || fail "switch_on found no service block"
	private_config "$hostdir" "$dir" "$version" "$dir/95-ox-push.conf"
	out=$(in_root "$root" doveconf -n -c "$dir/dovecot.conf" 2>&1 >/dev/null) ||
		fail "doveconf refuses the installed snippet (switched on): $out"
	if [ -n "$root" ]; then
		# The settings module registered our keys (with their defaults).
		in_root "$root" doveconf -d 2>/dev/null | grep -q '^push_notification_ox_push_max_age = 10 mins$' ||
			fail "doveconf -d does not show push_notification_ox_push_max_age"
	fi
	step "${root:-host}: private master: the module loads for a user, the relay runs as ox-push"
	check_dovecot "$root" "$hostdir" "$dir" "$moddir" /usr/lib/dovecot/ox-push-relay "$spool"
	rm -rf "$hostdir"

	step "${root:-host}: dpkg -r, dpkg -P"
	in_root "$root" dpkg -r dovecot-ox-push >"$T/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$T/dpkg-r.log")"
	snapshot "$root" >"$T/after-remove"
	users "$root" >"$T/users-after-remove"
	# Left after remove: the conffile (dpkg keeps it), the spool with what the
	# relay wrote and the user (the postrm removes them at purge).
	expected=$( {
		echo "+${conf#/}"
		(cd "${root:-/}" && find "${spool#/}" -printf '+%p\n')
	} | sort)
	expect_diff "$T/before" "$T/after-remove" "$expected" "after dpkg -r"
	expect_users "$T/users-before" "$T/users-after-remove" ox-push + "after dpkg -r"
	in_root "$root" dpkg -P dovecot-ox-push >"$T/dpkg-P.log" 2>&1 || fail "dpkg -P: $(cat "$T/dpkg-P.log")"
	snapshot "$root" >"$T/after-purge"
	users "$root" >"$T/users-after-purge"
	expect_diff "$T/before" "$T/after-purge" "" "after dpkg -P"
	expect_users "$T/users-before" "$T/users-after-purge" ox-push "" "after dpkg -P"
	out=$(find "$root/var/lib/dpkg/info" -name 'dovecot-ox-push.*')
	[ -z "$out" ] || fail "dpkg still has $out"
}

# 1. Debian 12, Dovecot 2.3, on the host.
set_aside /usr/lib/dovecot/modules/lib30_ox_push_plugin.so /usr/lib/dovecot/ox-push-relay \
	/usr/bin/ox-push-stats /etc/dovecot/conf.d/95-ox-push.conf /var/spool/dovecot-ox-push
mkdir -p "$T/h23"
plugin_package "" "$deb23" "$T/h23"

# 2. Debian 13, Dovecot 2.4, in a copy of the cached root.
root24=${config24%/usr/lib/dovecot/dovecot-config}
step "copying $root24"
copy_root "$root24" "$T/copy"
# A fresh Debian 13 has no ox-push user: the package makes it (and removes it).
if chroot "$T/copy" id -u ox-push >/dev/null 2>&1; then chroot "$T/copy" userdel ox-push; fi
grep -qw 'dovecot-abi-2.4.abiv1' <<<"$(chroot "$T/copy" dpkg-query -W -f '${Provides}' dovecot-core)" ||
	fail "the root's dovecot-core does not provide dovecot-abi-2.4.abiv1"
plugin_package "$T/copy" "$deb24" /tmp/t24
release_root "$T/copy"

# 3. mock-middleware on the host.
not_installed "" mock-middleware
set_aside /usr/bin/mock-middleware /usr/lib/systemd/system/mock-middleware.service /etc/mock-middleware \
	/var/lib/mock-middleware
snapshot "" >"$T/before"
users "" >"$T/users-before"
step "host: dpkg -i $(basename "$mmdeb")"
dpkg -i "$mmdeb" >"$T/dpkg-i.log" 2>&1 || fail "dpkg -i: $(cat "$T/dpkg-i.log")"
installed_here+=(mock-middleware)
id -u mock-middleware >/dev/null || fail "no user mock-middleware"
[ "$(stat -c '%a %U %G' /etc/mock-middleware)" = "750 root mock-middleware" ] ||
	fail "/etc/mock-middleware: $(stat -c '%a %U %G' /etc/mock-middleware)"
for f in mock.properties zz-service.properties; do
	[ "$(stat -c '%a %U %G' "/etc/mock-middleware/$f")" = "640 root mock-middleware" ] ||
		fail "/etc/mock-middleware/$f: $(stat -c '%a %U %G' "/etc/mock-middleware/$f")"
done
unit=/usr/lib/systemd/system/mock-middleware.service
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit warns: $out"
exposure=$(systemd-analyze security --offline=true "$unit" 2>&1 | tail -n 1)
step "systemd-analyze security: $exposure"
mock-middleware --help | grep -q 'serve' || fail "mock-middleware --help"
[ "$(mock-middleware --version)" = "mock-middleware $(dpkg-deb -f "$mmdeb" Version)" ] ||
	fail "mock-middleware --version: $(mock-middleware --version)"

# The installed configuration, served as the service user would (systemd is
# not needed: ports 0, and the database and admin token in a scratch state
# directory instead of /var/lib/mock-middleware, on top).
step "host: mock-middleware serve with /etc/mock-middleware as user mock-middleware"
cfg=$T/mm-config
state=$T/mm-state
mkdir -p "$cfg" "$state"
cp -p /etc/mock-middleware/*.properties "$cfg/"
printf 'mock.http.listen=127.0.0.1:0\nmock.admin.listen=127.0.0.1:0\nmock.db=%s/db.sqlite\nmock.admin.token_file=%s/admin.token\n' \
	"$state" "$state" >"$cfg/zzz-test.properties"
chown -R root:mock-middleware "$cfg" && chmod 0750 "$cfg"
chown mock-middleware: "$state" && chmod 0700 "$state"
setpriv --reuid mock-middleware --regid mock-middleware --init-groups --no-new-privs -- \
	/usr/bin/mock-middleware serve --config-dir "$cfg" >"$T/mm.log" 2>&1 &
mmpid=$!
for _ in $(seq 100); do grep -q 'mock-middleware listening' "$T/mm.log" && break; sleep 0.1; done
line=$(grep 'mock-middleware listening' "$T/mm.log" | sed 's/\x1b\[[0-9;]*m//g') ||
	{ kill "$mmpid" 2>/dev/null; fail "mock-middleware did not start: $(cat "$T/mm.log")"; }
http=$(sed -n 's/.*http_addr=\([0-9.:]*\).*/\1/p' <<<"$line")
code=$(python3 - "$http" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=5)
c.request("PUT", "/preliminary/http-notify/v1/notify", body=b'{"user":"3@1","event":"messageNew"}',
          headers={"Content-Type": "application/json"})
print(c.getresponse().status)
PY
) || code=none
kill -TERM "$mmpid"
wait "$mmpid" || fail "mock-middleware exited with $? on SIGTERM: $(cat "$T/mm.log")"
# No credentials configured yet: every notify is refused.
[ "$code" = 401 ] || fail "PUT notify without credentials answered $code, not 401: $(cat "$T/mm.log")"

step "host: dpkg -r, dpkg -P mock-middleware"
dpkg -r mock-middleware >"$T/dpkg-r.log" 2>&1 || fail "dpkg -r: $(cat "$T/dpkg-r.log")"
snapshot "" >"$T/after-remove"
users "" >"$T/users-after-remove"
expect_diff "$T/before" "$T/after-remove" "$(printf '%s\n' +etc/mock-middleware \
	+etc/mock-middleware/mock.properties +etc/mock-middleware/zz-service.properties)" "after dpkg -r"
expect_users "$T/users-before" "$T/users-after-remove" mock-middleware + "after dpkg -r"
dpkg -P mock-middleware >"$T/dpkg-P.log" 2>&1 || fail "dpkg -P: $(cat "$T/dpkg-P.log")"
snapshot "" >"$T/after-purge"
users "" >"$T/users-after-purge"
expect_diff "$T/before" "$T/after-purge" "" "after dpkg -P mock-middleware"
expect_users "$T/users-before" "$T/users-after-purge" mock-middleware "" "after dpkg -P"
if dpkg-statoverride --list | grep -q mock-middleware; then fail "statoverrides left: $(dpkg-statoverride --list | grep mock-middleware)"; fi
if id -u mock-middleware >/dev/null 2>&1; then fail "the user mock-middleware is left"; fi

echo "tests/deb.sh: ok ($(basename "$deb23") for 2.3 on the host, for 2.4 in a copy of $root24, $(basename "$mmdeb"); $(($(date +%s) - start)) s)"
