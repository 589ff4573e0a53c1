# ox_push: Rust `ox` push driver for Dovecot, its relay service, and mock-middleware.
# The two commands of the README: `make demo` and `make test`.

CARGO ?= cargo
SPOOL_DIR ?= /var/spool/dovecot-ox-push
DOVECOT_CONFIG ?= /usr/lib/dovecot/dovecot-config
export SPOOL_DIR DOVECOT_CONFIG

.PHONY: all deps plugin install deb header lint test demo bench bench-middleware clean dovecot-2.4 dovecot-2.4-smoke \
	settings-module dovecot-2.4-settings-test

all: plugin

deps:
	@scripts/install-deps.sh

# For the Dovecot that DOVECOT_CONFIG (its dovecot-config) describes, default
# the system's: the Dovecot module lib30_ox_push_plugin.so (target/release for
# the system's Dovecot, target/dovecot-<ABI>/release for another), for 2.4 the
# settings module beside it, the relay and ox-push-stats (target/release: they
# do not depend on Dovecot). The last lines are the paths of what was built.
plugin: deps
	@CARGO="$(CARGO)" scripts/plugin.sh "$(DOVECOT_CONFIG)"

# The plugin (and for 2.4 the settings module) into that Dovecot's module dir,
# the relay into its libexec dir, ox-push-stats, conf.d/95-ox-push.conf in that
# Dovecot's syntax; the relay's user and spool. DESTDIR= stages it
# (tests/install.sh checks that; tests/install-2.4.sh for 2.4).
install: plugin
	scripts/install.sh

# dovecot-ox-push_<version>_<arch>.deb for that Dovecot (target/deb/<its ABI
# package>/) and mock-middleware_<version>_<arch>.deb (target/deb/); the last
# two lines are their paths. tests/deb.sh installs and removes them.
deb: deps
	@CARGO="$(CARGO)" scripts/deb.sh "$(DOVECOT_CONFIG)"

# Regenerates include/ox_push.h from src/ffi.rs (the build fails while it is stale).
header:
	OX_PUSH_UPDATE_HEADER=1 $(CARGO) build -p ox-push

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# Everything: the workspace's tests against the system's Dovecot 2.3, the
# install check, then the plugin's real-Dovecot suites against Dovecot 2.4.
test: deps
	python3 tests/corpus/generate.py --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace -- --test-threads=2
	tests/install.sh
	tests/install-2.4.sh
	scripts/test-dovecot-2.4.sh
	tests/deb.sh

demo: deps
	@scripts/demo.sh

# The delivery benchmark (docs/BENCHMARKS.md) against the system's Dovecot, or
# against the Dovecot 2.4 of a root made by `make dovecot-2.4` with
# DOVECOT_CONFIG=ROOT/usr/lib/dovecot/dovecot-config or DOVECOT_PREFIX=ROOT;
# then one relay alone.
bench: deps
	@bench/delivery.sh
	@bench/relay.sh

bench-middleware: deps
	@bench/middleware-load.sh

# A Debian 13 root with Debian's Dovecot 2.4.1, cached outside the clone
# (OX_PUSH_TRIXIE_ROOT, default /var/cache/ox-push/trixie). Its last output
# line is the path of that Dovecot's dovecot-config.
dovecot-2.4:
	@scripts/dovecot-2.4.sh

# A private Dovecot 2.4 in that root: built-in ox driver, LMTP and LDA
# deliveries, a plain service program under the 2.4 master (about 5 s).
dovecot-2.4-smoke: dovecot-2.4
	@scripts/dovecot-2.4-smoke.sh "$$(scripts/dovecot-2.4.sh 2>/dev/null | tail -n 1)"

# The Dovecot 2.4 settings module (C, not part of the cdylib) for the Dovecot
# that DOVECOT_CONFIG describes: target/dovecot-<ABI>/libox_push_settings.so.
settings-module:
	@dovecot-plugin/settings/build.sh "$(DOVECOT_CONFIG)"

# The settings module in the 2.4 root: doveconf and a mail process (about 5 s).
dovecot-2.4-settings-test: dovecot-2.4
	@scripts/dovecot-2.4-settings-test.sh "$$(scripts/dovecot-2.4.sh 2>/dev/null | tail -n 1)"

clean:
	$(CARGO) clean
