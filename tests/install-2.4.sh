#!/usr/bin/env bash
# `make install` for Dovecot 2.4 (Debian 13's, in a throwaway copy of the root
# that `make dovecot-2.4` caches; tests/install.sh does 2.3 on the host):
# - DESTDIR= stages the 2.4 layout under DESTDIR with the paths Dovecot sees;
# - make install DOVECOT_CONFIG=COPY/usr/lib/dovecot/dovecot-config installs
#   into the copy as on a Debian 13 machine (what was built for the cached
#   root, which has the same ABI): the module into the module dir
#   of that dovecot-config, the settings module into its settings/, the relay
#   into its libexec dir, the conf.d snippet in 2.4 syntax, the relay's user
#   (the copy has none) and its spool (0700);
# - the root's own configuration with the installed snippet passes doveconf;
#   with the snippet's plugin lines switched on, a mail user loads the module
#   and a private master starts the installed relay as ox-push.
# The cached root is only read.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/pkg-lib.sh
. tests/pkg-lib.sh
[ "$(id -u)" = 0 ] || fail "needs root (chroot)"
T=$(mktemp -d /tmp/ox-push-install24.XXXXXX)
chmod 0755 "$T"
cleanup() {
	local status=$?
	set +e
	stop_master "$T/copy/tmp/t/run"
	if [ -d "$T/copy" ]; then
		release_root "$T/copy" && rm -rf --one-file-system "$T"
	else
		rm -rf "$T"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
mode() { stat -c %a "$1"; }

config=$(scripts/dovecot-2.4.sh 2>/dev/null | tail -n 1)
[ -f "$config" ] || fail "make dovecot-2.4 gave no dovecot-config"
root=${config%/usr/lib/dovecot/dovecot-config}

step "make install DESTDIR=... DOVECOT_CONFIG=$config"
make -s install DESTDIR="$T/stage" DOVECOT_CONFIG="$config" >"$T/stage.log" 2>&1 ||
	fail "make install DESTDIR: $(tail -20 "$T/stage.log")"
for f in usr/lib/dovecot/modules/lib30_ox_push_plugin.so usr/lib/dovecot/modules/settings/libox_push_settings.so \
	usr/lib/dovecot/ox-push-relay usr/local/bin/ox-push-stats etc/dovecot/conf.d/95-ox-push.conf; do
	[ -f "$T/stage/$f" ] || fail "DESTDIR: $f not staged: $(cd "$T/stage" && find . -type f)"
done
[ ! -e "$T/stage$root" ] || fail "DESTDIR: files staged under the root's host path $root"

# make install's second half (its first, make plugin, ran above: building
# again for the copy's dovecot-config would only make cargo rebuild the same
# plugin twice, for the copy and then for the cache).
step "copying $root; scripts/install.sh with DOVECOT_CONFIG=<the copy's>"
copy_root "$root" "$T/copy"
R=$T/copy
if chroot "$R" id -u ox-push >/dev/null 2>&1; then chroot "$R" userdel ox-push; fi
DOVECOT_CONFIG="$R/usr/lib/dovecot/dovecot-config" scripts/install.sh >"$T/install.log" 2>&1 ||
	fail "make install: $(tail -20 "$T/install.log")"
moddir=/usr/lib/dovecot/modules
so=$R$moddir/lib30_ox_push_plugin.so
settings=$R$moddir/settings/libox_push_settings.so
relay=$R/usr/lib/dovecot/ox-push-relay
stats=$R/usr/local/bin/ox-push-stats
snippet=$R/etc/dovecot/conf.d/95-ox-push.conf
spool=/var/spool/dovecot-ox-push
[[ -f "$so" && $(mode "$so") == 644 ]] || fail "$so missing or not mode 644"
[[ -f "$settings" && $(mode "$settings") == 644 ]] || fail "$settings missing or not mode 644"
[[ -f "$relay" && $(mode "$relay") == 755 ]] || fail "$relay missing or not mode 755"
[[ -f "$stats" && $(mode "$stats") == 755 ]] || fail "$stats missing or not mode 755"
[[ -f "$snippet" && $(mode "$snippet") == 644 ]] || fail "$snippet missing or not mode 644"
# shellcheck disable=SC2016 # a literal $SET
grep -qF '    group = $SET:default_internal_group' "$snippet" || fail "$snippet is not in 2.4 syntax"
grep -q "^  executable = /usr/lib/dovecot/ox-push-relay --spool $spool$" "$snippet" ||
	fail "$snippet does not name the installed relay"
uid=$(chroot "$R" id -u ox-push) || fail "make install did not create ox-push in the root"
[[ $(stat -c '%a %u' "$R$spool") == "700 $uid" ]] || fail "$spool: $(stat -c '%a %u' "$R$spool"), not 700 $uid"
if grep -qF "$R" "$snippet"; then fail "$snippet names host paths"; fi

# The root's own configuration, with the installed snippet as it is (the
# relay's service block active, the plugin lines commented).
out=$(chroot "$R" doveconf -n 2>&1) || fail "doveconf refuses the root's configuration with the snippet: $out"
grep -q '^service ox-push {' <<<"$out" || fail "doveconf -n does not show the relay's service"

# A private master with the plugin lines switched on.
step "private master in the copy: the module loads for a user, the relay runs as ox-push"
mkdir -p "$R/tmp/t"
switch_on "$snippet" >"$R/tmp/t/95-ox-push.conf"
private_config "$R/tmp/t" /tmp/t "$(chroot "$R" dovecot --version | cut -d' ' -f1)" /tmp/t/95-ox-push.conf
out=$(chroot "$R" doveconf -n -c /tmp/t/dovecot.conf 2>&1 >/dev/null) ||
	fail "doveconf refuses the snippet with its lines switched on: $out"
check_dovecot "$R" "$R/tmp/t" /tmp/t "$moddir" /usr/lib/dovecot/ox-push-relay "$spool"
echo "tests/install-2.4.sh: ok (${so#"$R"}, ${settings#"$R"}, ${relay#"$R"} in a copy of $root)"
