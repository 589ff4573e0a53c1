#!/usr/bin/env bash
# `make dovecot-2.4`: a Debian 13 (trixie) root holding Debian 13's own
# Dovecot 2.4 (dovecot-core, -imapd, -lmtpd, -dev), made with debootstrap, so
# that a Debian 12 host can build and test against 2.4 next to its own 2.3.
#
# - Cached outside the clone, in $OX_PUSH_TRIXIE_ROOT
#   (default /var/cache/ox-push/trixie).
# - Idempotent: the root carries a stamp file (.ox-push-root) naming the recipe
#   it was made from and the package versions installed. When the recipe
#   matches, nothing is done (a second run takes well under a second).
# - Safe when interrupted: the root is made in a temporary directory beside it,
#   inside a private mount namespace (`unshare -m`: every mount made while
#   building disappears with the build, whatever kills it), and renamed into
#   place only when complete. Leftovers of an interrupted run are removed by
#   the next one. Concurrent runs wait for each other (flock).
# - Nothing in the root is started: a policy-rc.d refuses every service start.
#
# Its last output line is the absolute host path of the root's dovecot-config.
# The paths inside that file are relative to the root (see
# scripts/dovecot-env.sh, which turns it into host paths).
#
# Environment:
#   OX_PUSH_TRIXIE_ROOT     where the root lives (default /var/cache/ox-push/trixie)
#   OX_PUSH_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   OX_PUSH_TRIXIE_REBUILD  set to 1 to make the root anew even when it is current
#
# Needs root (debootstrap, chroot, mount namespaces). Run on Debian 12.
set -euo pipefail

ROOT=${OX_PUSH_TRIXIE_ROOT:-/var/cache/ox-push/trixie}
MIRROR=${OX_PUSH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# What the root holds. Changing this list (or RECIPE_VERSION, for any other
# change in how the root is made) makes the next run rebuild it.
PACKAGES=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-dev)
RECIPE_VERSION=3
RECIPE="ox-push trixie root v$RECIPE_VERSION: debootstrap --variant=minbase $SUITE; apt-get install ${PACKAGES[*]}; useradd ox-push"
STAMP_NAME=.ox-push-root
CONFIG_REL=usr/lib/dovecot/dovecot-config

log() { echo "==> $*" >&2; }
die() { echo "dovecot-2.4: $*" >&2; exit 1; }

root_is_current() {
	[ "${OX_PUSH_TRIXIE_REBUILD:-0}" != 1 ] &&
		[ -f "$ROOT/$STAMP_NAME" ] && [ -f "$ROOT/$CONFIG_REL" ] &&
		[ "$(head -n 1 "$ROOT/$STAMP_NAME")" = "recipe: $RECIPE" ]
}

# Removes a directory tree without ever crossing into a mount point (a /proc
# or /dev left mounted inside must never be descended into).
safe_rm() {
	local dir=$1
	[ -e "$dir" ] || return 0
	if grep -qF -e " $dir/" -e " $dir " /proc/self/mountinfo; then
		die "refusing to remove $dir: something is still mounted below it"
	fi
	rm -rf --one-file-system -- "$dir"
}

# Runs in a private mount namespace: makes the root in $1.
build_root() {
	local target=$1
	shift
	# Nothing mounted here is visible outside, and everything is unmounted
	# when the last process of this namespace exits.
	log "debootstrap $SUITE into $target (minbase)"
	debootstrap --variant=minbase --keyring="$KEYRING" \
		"$SUITE" "$target" "$MIRROR" >"$target.debootstrap.log" 2>&1 || {
		tail -n 30 "$target.debootstrap.log" >&2
		die "debootstrap failed (full log: $target.debootstrap.log)"
	}
	rm -f "$target.debootstrap.log"

	# Debian's dovecot-core would start a Dovecot on the host's network.
	printf '#!/bin/sh\n# ox-push: never start services in this root.\nexit 101\n' \
		>"$target/usr/sbin/policy-rc.d"
	chmod 0755 "$target/usr/sbin/policy-rc.d"
	mount -t proc proc "$target/proc"

	log "apt-get install ${PACKAGES[*]} (in the root)"
	if ! chroot "$target" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
		sh -c "apt-get -q update && apt-get -y -q --no-install-recommends install $*" \
		>"$target.apt.log" 2>&1; then
		tail -n 30 "$target.apt.log" >&2
		die "apt-get in the root failed (full log: $target.apt.log)"
	fi
	rm -f "$target.apt.log"
	chroot "$target" apt-get clean
	# debootstrap writes no /etc/hosts: localhost must resolve (tests use it).
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
		>"$target/etc/hosts"
	# The relay's user, as `make install` and the package create it.
	chroot "$target" useradd --system --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin ox-push
	umount "$target/proc"

	{
		echo "recipe: $RECIPE"
		echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) from $MIRROR"
		# shellcheck disable=SC2016 # dpkg-query's own ${...} format
		chroot "$target" dpkg-query -W -f '${Package} ${Version}\n' "${PACKAGES[@]}"
	} >"$target/$STAMP_NAME"
	[ -f "$target/$CONFIG_REL" ] || die "$CONFIG_REL missing in the new root"
}

if [ "${1:-}" = --build-in-namespace ]; then
	build_root "$2" "${PACKAGES[@]}"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount namespaces)"

if root_is_current; then
	sed -n '3,$p' "$ROOT/$STAMP_NAME" | sed 's/^/    /' >&2
	echo "$ROOT/$CONFIG_REL"
	exit 0
fi

if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends debootstrap debian-archive-keyring >/dev/null
fi
[ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"

parent=$(dirname "$ROOT")
name=$(basename "$ROOT")
mkdir -p "$parent"
exec 9>"$parent/.$name.lock"
flock 9
# Another run may have made it while we waited for the lock.
if root_is_current; then
	echo "$ROOT/$CONFIG_REL"
	exit 0
fi

for stale in "$parent/.$name.tmp."* "$parent/.$name.old."*; do
	case $stale in *.log) rm -f "$stale"; continue ;; esac
	[ -d "$stale" ] || continue
	log "removing $stale (left by an interrupted run)"
	safe_rm "$stale"
done

tmp=$(mktemp -d "$parent/.$name.tmp.XXXXXX")
chmod 0755 "$tmp"
trap 'safe_rm "$tmp"' EXIT
start=$(date +%s)
unshare --mount --propagation private -- "$0" --build-in-namespace "$tmp"

if [ -e "$ROOT" ]; then
	old=$(mktemp -u "$parent/.$name.old.XXXXXX")
	mv -T "$ROOT" "$old"
	mv -T "$tmp" "$ROOT"
	safe_rm "$old"
else
	mv -T "$tmp" "$ROOT"
fi
trap - EXIT
log "made $ROOT in $(($(date +%s) - start)) s:"
sed -n '3,$p' "$ROOT/$STAMP_NAME" | sed 's/^/    /' >&2
echo "$ROOT/$CONFIG_REL"
