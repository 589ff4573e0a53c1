#!/usr/bin/env bash
# Installs what building and testing need, only when it is missing.
# Debian 12: Dovecot 2.3.19.1 (core, imapd, lmtpd, dev headers), libclang for
# bindgen, binutils (nm, for tests/install.sh), python3 for the corpus generator
# check (and tests/attacks.rs's socket client), python3-pip (mock-middleware's
# third-party client test installs aioapns from PyPI with it), strace
# (tests/attacks.rs watches which files Dovecot and the relay open), dpkg-dev
# (dpkg-shlibdeps for `make deb`), systemd (systemd-analyze verify in
# tests/deb.sh), postgresql (mock-middleware's cluster tests and benchmark
# initdb a private server; the package's own cluster is not needed and is not
# started: policy-rc.d below). Rust comes with the machine.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in dovecot-core dovecot-imapd dovecot-lmtpd dovecot-dev libclang-dev clang binutils python3 python3-pip strace ca-certificates dpkg-dev systemd postgresql; do
  have_pkg "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing: ${need[*]}"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  # Debian's dovecot-core (and postgresql) would start a system service: we only want the binaries.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
