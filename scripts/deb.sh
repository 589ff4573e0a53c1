#!/usr/bin/env bash
# `make deb [DOVECOT_CONFIG=PATH]`: Debian packages, with dpkg-deb, for the
# Dovecot that PATH (its dovecot-config; default the system's) describes:
#
#   target/deb/<abi>/dovecot-ox-push_<version>_<arch>.deb
#       the plugin and, for 2.4, its settings module (built against that
#       Dovecot's headers), the relay, ox-push-stats, the conf.d snippet in
#       that Dovecot's syntax as a conffile with every line commented out
#       (installing changes nothing), docs; Depends: on the virtual package
#       <abi> (e.g. dovecot-abi-2.3.abiv19) that exactly this Dovecot's
#       dovecot-core provides; maintainer scripts for the relay's user and spool
#       (packaging/dovecot-ox-push/).
#   target/deb/mock-middleware_<version>_<arch>.deb
#       the binary, a sandboxed systemd unit (installed, not enabled), its
#       configuration in /etc/mock-middleware, a system user
#       (packaging/mock-middleware/).
#
# Its last two output lines are the absolute paths of the two packages.
# Environment: CARGO, DEB_MAINTAINER (default: the last commit's author),
# SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail
# shellcheck source=scripts/build-paths.sh
. "$(dirname "$0")/build-paths.sh"
ox_push_build_paths "${1:-${DOVECOT_CONFIG:-/usr/lib/dovecot/dovecot-config}}"
cd "$OX_PUSH_TOP"
cargo=${CARGO:-cargo}
die() { echo "deb: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps strip; do
	command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh installs dpkg-dev and binutils)"
done

# The ABI virtual package, checked against the dovecot-core of that Dovecot
# when it is installed there (a Dovecot built from source has no dpkg).
run=()
[ -z "$DOVECOT_SYSROOT" ] || run=(chroot "$DOVECOT_SYSROOT")
# shellcheck disable=SC2016 # dpkg-query's own ${...} format
provides=$("${run[@]}" dpkg-query -W -f '${Provides}' dovecot-core 2>/dev/null || true)
if [ -n "$provides" ]; then
	grep -qw -- "$OX_PUSH_DEB_ABI" <<<"${provides//,/ }" ||
		die "dovecot-core${DOVECOT_SYSROOT:+ in $DOVECOT_SYSROOT} provides \"$provides\", not $OX_PUSH_DEB_ABI (derived from DOVECOT_ABI_VERSION $DOVECOT_ABI_VERSION)"
fi

scripts/plugin.sh "$DOVECOT_CONFIG" >/dev/null
"$cargo" build --release -p mock-middleware --target-dir "$OX_PUSH_TOP/target"

arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'ox-push <root@localhost>')}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mm_version=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' mock-middleware/Cargo.toml)
mkdir -p target/deb "$OX_PUSH_DEB_DIR"
work=$(mktemp -d "$OX_PUSH_TOP/target/deb/.stage.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 022
# dpkg-shlibdeps wants a debian/control naming the packages it looks at.
mkdir -p "$work/debian"
printf 'Source: ox-push\n\nPackage: dovecot-ox-push\nArchitecture: any\n\nPackage: mock-middleware\nArchitecture: any\n' \
	>"$work/debian/control"

# Strips like dh_strip: symbols that only a debugger needs.
strip_elf() {
	local f
	for f in "$@"; do
		case $f in
		*.so) strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f" ;;
		*) strip --remove-section=.comment --remove-section=.note "$f" ;;
		esac
	done
}

# Policy 12.3: documentation over 4 kB compressed with gzip -9n.
doc() {
	local dir=$1 version=$2 f
	shift 2
	install -d "$dir"
	for f in "$@"; do
		install -m 0644 "$f" "$dir/"
		if [ "$(stat -c %s "$f")" -gt 4096 ]; then gzip -9n "$dir/$(basename "$f")"; fi
	done
	install -m 0644 packaging/copyright "$dir/copyright"
	printf '%s (%s) unstable; urgency=medium\n\n  * Built by make deb from git commit %s.\n\n -- %s  %s\n' \
		"$(basename "$dir")" "$version" "$commit" "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" |
		gzip -9n >"$dir/changelog.gz"
}

# DEBIAN/: control (with the shared libraries' dependencies), md5sums,
# conffiles, maintainer scripts; then dpkg-deb.
build_deb() {
	local pkg=$1 version=$2 depends=$3 description=$4 out=$5 root=$work/debian/$1 shlibs
	local -a elf
	# Relative to $work (debian/<package>/...) and below a DEBIAN/, as
	# dpkg-shlibdeps expects.
	install -d -m 0755 "$root/DEBIAN"
	mapfile -t elf < <(cd "$work" && find "debian/$pkg" -type f \
		-exec sh -c 'head -c 4 "$1" | grep -q "ELF"' _ {} \; -print | sort)
	(cd "$work" && strip_elf "${elf[@]}")
	shlibs=$(cd "$work" && dpkg-shlibdeps -O "${elf[@]}" | sed -n 's/^shlibs:Depends=//p')
	[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies for $pkg"
	{
		echo "Package: $pkg"
		echo "Version: $version"
		echo "Architecture: $arch"
		echo "Maintainer: $maintainer"
		echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
		echo "Depends: ${depends:+$depends, }$shlibs"
		echo "Section: mail"
		echo "Priority: optional"
		printf '%s\n' "$description"
	} >"$root/DEBIAN/control"
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
		>"$root/DEBIAN/md5sums"
	(cd "$root" && find etc -type f -printf '/%p\n' 2>/dev/null | sort) >"$root/DEBIAN/conffiles"
	[ -s "$root/DEBIAN/conffiles" ] || rm -f "$root/DEBIAN/conffiles"
	local s
	for s in preinst postinst prerm postrm; do
		if [ -f "packaging/$pkg/$s" ]; then install -m 0755 "packaging/$pkg/$s" "$root/DEBIAN/$s"; fi
	done
	chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
	find "$root" -type d -exec chmod 0755 {} +
	dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
}

# --- dovecot-ox-push: what `make install` installs, staged by it ---
pkg=$work/debian/dovecot-ox-push
DESTDIR=$pkg BINDIR=/usr/bin CONF_DIR=/etc/dovecot/conf.d SPOOL_DIR=/var/spool/dovecot-ox-push \
	RELAY_USER=ox-push scripts/install.sh >/dev/null
# The postinst makes the spool (owned by the relay's user); dpkg must not own it.
rm -rf "${pkg:?}/var"
snippet=$pkg/etc/dovecot/conf.d/95-ox-push.conf
# Nothing active: the service block is commented out as well ('#' before
# each of its lines, so that removing exactly one '#' switches it on).
{
	cat <<'HEAD'
# Installed by the dovecot-ox-push package. NOTHING IN THIS FILE IS ACTIVE:
# installing the package does not change what Dovecot does. To turn push on:
#   1. uncomment the "service ox-push { ... }" block (the relay),
#   2. uncomment the plugin lines (mail_plugins, mail_attribute...) and set the
#      endpoint (see below),
#   3. doveadm reload.
# This file is a conffile: it stays when the package is removed (not purged).
# Comment the service block and the plugin lines out again before removing
# the package: Dovecot does not start while a service names a missing
# executable. Documentation: /usr/share/doc/dovecot-ox-push/.

HEAD
	sed -e '/^service ox-push {$/,/^}$/s/^/#/' "$snippet"
} >"$snippet.tmp"
mv "$snippet.tmp" "$snippet"
chmod 0644 "$snippet"
if grep -v '^[[:space:]]*#' "$snippet" | grep -q '[^[:space:]]'; then
	die "$snippet has an active line: $(grep -v '^[[:space:]]*#' "$snippet" | grep '[^[:space:]]' | head -1)"
fi
doc "$pkg/usr/share/doc/dovecot-ox-push" "$OX_PUSH_VERSION" README.md docs/PLUGIN.md docs/ARCHITECTURE.md
if [ "$OX_PUSH_V24" = yes ]; then
	settings_note=" and a settings module that registers its ox_push_* keys"
	example=dovecot-plugin/95-ox-push-2.4.conf
else
	settings_note=
	example=dovecot-plugin/95-ox-push.conf
fi
install -D -m 0644 "$example" "$pkg/usr/share/doc/dovecot-ox-push/examples/95-ox-push.conf"
deb=$OX_PUSH_DEB_DIR/dovecot-ox-push_${OX_PUSH_VERSION}_$arch.deb
build_deb dovecot-ox-push "$OX_PUSH_VERSION" "$OX_PUSH_DEB_ABI, passwd" \
	"Description: Dovecot push_notification \"ox\" driver that never blocks delivery
 ox_push takes over Dovecot's push_notification \"ox\" driver (OX App Suite
 http-notify) with the same configuration and byte-identical requests, but
 a delivery never waits for the middleware: each notification goes to
 ox-push-relay, one unprivileged service per host, which spools it and
 sends it with retries. Includes ox-push-stats (the relay's counters)$settings_note.
 .
 Built for Dovecot $DOVECOT_VERSION (module ABI $DOVECOT_ABI_VERSION). Nothing
 is switched on by installing it: /etc/dovecot/conf.d/95-ox-push.conf is
 all comments until the relay service and the plugin lines are uncommented." \
	"$deb"

# --- mock-middleware ---
mm=$work/debian/mock-middleware
install -D -m 0755 target/release/mock-middleware "$mm/usr/bin/mock-middleware"
install -D -m 0644 packaging/mock-middleware/mock-middleware.service \
	"$mm/usr/lib/systemd/system/mock-middleware.service"
install -d "$mm/etc/mock-middleware"
{
	echo "# /etc/mock-middleware/mock.properties (mock-middleware package): every key"
	echo "# with its default; docs: /usr/share/doc/mock-middleware/MOCK-MIDDLEWARE.md.gz."
	echo "# Until the basic-auth login and password are set, every notify gets 401."
	echo "# mock.db is set in zz-service.properties (read after this file)."
	sed -e '1,2d' mock-middleware/mock.properties.sample
} >"$mm/etc/mock-middleware/mock.properties"
install -m 0644 packaging/mock-middleware/zz-service.properties "$mm/etc/mock-middleware/"
# Passwords and keys: root and the service's group only (postinst sets the
# group; dpkg-statoverride keeps it).
chmod 0640 "$mm/etc/mock-middleware/mock.properties" "$mm/etc/mock-middleware/zz-service.properties"
doc "$mm/usr/share/doc/mock-middleware" "$mm_version" docs/MOCK-MIDDLEWARE.md
install -D -m 0644 mock-middleware/mock.properties.sample "$mm/usr/share/doc/mock-middleware/examples/mock.properties.sample"
mmdeb=$OX_PUSH_TOP/target/deb/mock-middleware_${mm_version}_$arch.deb
build_deb mock-middleware "$mm_version" "passwd" \
	"Description: stand-in for the OX App Suite middleware's push path
 mock-middleware receives Dovecot's http-notify requests as OX does, keeps
 the devices that subscribed through OX's client API and sends real pushes
 over APNs (HTTP/2, JWT or certificate), FCM v1 or legacy GCM; fake providers,
 recordings and fault injection for integration tests.
 .
 The systemd unit mock-middleware.service runs it sandboxed as the system
 user mock-middleware; it is installed, not enabled." \
	"$mmdeb"

printf '%s\n' "$deb" "$mmdeb"
