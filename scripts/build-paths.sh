# Sourced by scripts/plugin.sh, scripts/install.sh and scripts/deb.sh: where
# `make plugin` puts what it builds for the Dovecot that a dovecot-config
# describes, and how Debian names that Dovecot's module ABI.
#
#   . scripts/build-paths.sh
#   ox_push_build_paths [DOVECOT_CONFIG]    # default /usr/lib/dovecot/dovecot-config
#
# Sets everything scripts/dovecot-env.sh sets (DOVECOT_SYSROOT, DOVECOT_VERSION,
# DOVECOT_ABI_VERSION, DOVECOT_MODULEDIR_IN_ROOT, ...) and:
#
#   OX_PUSH_TOP               the source tree
#   OX_PUSH_V24               yes for Dovecot 2.4 and later (settings module,
#                             2.4 configuration syntax), else no
#   OX_PUSH_CARGO_TARGET_DIR  the plugin's cargo target dir: target/ for the
#                             system's Dovecot (/usr/lib/dovecot/dovecot-config),
#                             target/dovecot-<ABI>/ for any other, so that builds
#                             for 2.3 and 2.4 do not overwrite each other
#   OX_PUSH_PLUGIN_DIR        $OX_PUSH_CARGO_TARGET_DIR/release: the plugin
#                             (lib30_ox_push_plugin.so) and, for 2.4, the
#                             settings module (libox_push_settings.so)
#   OX_PUSH_BIN_DIR           target/release: ox-push-relay, ox-push-stats and
#                             mock-middleware, which do not depend on Dovecot
#                             (no Dovecot header, no libdovecot): one build
#                             serves every Dovecot
#   OX_PUSH_DEB_ABI           the virtual package Debian's dovecot-core provides
#                             for this ABI: dovecot-abi-<DOVECOT_ABI_VERSION without
#                             its "(...)" part, lower case>, e.g.
#                             dovecot-abi-2.3.abiv19, dovecot-abi-2.4.abiv1
#   OX_PUSH_DEB_DIR           target/deb/<OX_PUSH_DEB_ABI>: where `make deb` puts
#                             dovecot-ox-push_<version>_<arch>.deb for this Dovecot
#   OX_PUSH_VERSION           the workspace's version (Cargo.toml)
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file

ox_push_build_paths() {
	local config=${1:-/usr/lib/dovecot/dovecot-config} env abi
	OX_PUSH_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	env=$("$OX_PUSH_TOP/scripts/dovecot-env.sh" "$config") || return 1
	eval "$env"
	if [ "$DOVECOT_VERSION_MAJOR" -gt 2 ] ||
		{ [ "$DOVECOT_VERSION_MAJOR" = 2 ] && [ "$DOVECOT_VERSION_MINOR" -ge 4 ]; }; then
		OX_PUSH_V24=yes
	else
		OX_PUSH_V24=no
	fi
	if [ "$DOVECOT_CONFIG" = /usr/lib/dovecot/dovecot-config ]; then
		# The system's Dovecot keeps target/release (bench/, scripts/demo.sh).
		OX_PUSH_CARGO_TARGET_DIR=$OX_PUSH_TOP/target
	else
		# 2.3.ABIv19(2.3.19.1) -> 2.3.ABIv19-2.3.19.1; 2.4.ABIv1 stays.
		abi=$(printf '%s' "$DOVECOT_ABI_VERSION" |
			sed -e 's/(\(.*\))$/-\1/' -e 's/[^A-Za-z0-9._-]/_/g')
		[ -n "$abi" ] || { echo "build-paths: no DOVECOT_ABI_VERSION in $DOVECOT_INCLUDE_DIR/config.h" >&2; return 1; }
		OX_PUSH_CARGO_TARGET_DIR=$OX_PUSH_TOP/target/dovecot-$abi
	fi
	OX_PUSH_PLUGIN_DIR=$OX_PUSH_CARGO_TARGET_DIR/release
	OX_PUSH_BIN_DIR=$OX_PUSH_TOP/target/release
	OX_PUSH_DEB_ABI=dovecot-abi-$(printf '%s' "$DOVECOT_ABI_VERSION" | sed 's/(.*$//' | tr '[:upper:]' '[:lower:]')
	OX_PUSH_DEB_DIR=$OX_PUSH_TOP/target/deb/$OX_PUSH_DEB_ABI
	OX_PUSH_VERSION=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$OX_PUSH_TOP/Cargo.toml")
}
