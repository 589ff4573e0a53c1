#!/usr/bin/env bash
# Describes the Dovecot that a dovecot-config file belongs to, as shell
# assignments for `eval "$(scripts/dovecot-env.sh PATH)"`:
#
#   DOVECOT_CONFIG         absolute path of that dovecot-config
#   DOVECOT_SYSROOT        "" for a Dovecot installed on this host (Debian's, or
#                          one built into a prefix); ROOT for one inside a root
#                          made by `make dovecot-2.4` (paths inside
#                          dovecot-config are relative to that root)
#   DOVECOT_INCLUDE_DIR    host path of the headers (has config.h)
#   DOVECOT_MODULEDIR      host path of the module dir; ..._IN_ROOT as Dovecot sees it
#   DOVECOT_PKGLIBEXECDIR  host path of dovecot-lda etc.; ..._IN_ROOT as Dovecot sees it
#   DOVECOT_VERSION        e.g. 2.4.1-4, DOVECOT_VERSION_MAJOR/_MINOR/_MICRO
#   DOVECOT_ABI_VERSION    e.g. 2.4.ABIv1 or 2.3.ABIv19(2.3.19.1)
#   DOVECOT_RUN            command prefix that runs a program of that Dovecot:
#                          "" or "chroot ROOT"
#
# The root is recognised by where the file lies: ROOT/<dovecot_pkglibdir>/dovecot-config.
# Default PATH: /usr/lib/dovecot/dovecot-config (the system's Dovecot).
set -euo pipefail

config=${1:-/usr/lib/dovecot/dovecot-config}
[ -f "$config" ] || { echo "dovecot-env: $config: no such file" >&2; exit 1; }
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

# dovecot-config is a shell fragment of plain assignments, written by Dovecot's
# own build.
# shellcheck source=/dev/null
dirs=$(. "$config" && printf '%s\n' "${dovecot_pkglibdir:?}" "${dovecot_pkgincludedir:?}" \
	"${dovecot_moduledir:?}" "${dovecot_pkglibexecdir:?}")
{ read -r pkglibdir; read -r pkgincludedir; read -r moduledir; read -r pkglibexecdir; } <<<"$dirs"

if [ "$config" = "$pkglibdir/dovecot-config" ]; then
	sysroot=
elif [ "${config%"$pkglibdir/dovecot-config"}" != "$config" ]; then
	sysroot=${config%"$pkglibdir/dovecot-config"}
else
	echo "dovecot-env: $config is neither $pkglibdir/dovecot-config nor ROOT$pkglibdir/dovecot-config" >&2
	exit 1
fi
config_h=$sysroot$pkgincludedir/config.h
[ -f "$config_h" ] || { echo "dovecot-env: $config_h missing (install dovecot-dev)" >&2; exit 1; }
define() { sed -n "s/^#define $1 \"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$config_h"; }

out() { printf '%s=%q\n' "$1" "$2"; }
out DOVECOT_CONFIG "$config"
out DOVECOT_SYSROOT "$sysroot"
out DOVECOT_INCLUDE_DIR "$sysroot$pkgincludedir"
out DOVECOT_MODULEDIR "$sysroot$moduledir"
out DOVECOT_MODULEDIR_IN_ROOT "$moduledir"
out DOVECOT_PKGLIBEXECDIR "$sysroot$pkglibexecdir"
out DOVECOT_PKGLIBEXECDIR_IN_ROOT "$pkglibexecdir"
out DOVECOT_VERSION "$(define DOVECOT_VERSION)"
out DOVECOT_VERSION_MAJOR "$(define DOVECOT_VERSION_MAJOR)"
out DOVECOT_VERSION_MINOR "$(define DOVECOT_VERSION_MINOR)"
out DOVECOT_VERSION_MICRO "$(define DOVECOT_VERSION_MICRO)"
out DOVECOT_ABI_VERSION "$(define DOVECOT_ABI_VERSION)"
out DOVECOT_RUN "${sysroot:+chroot $sysroot}"
