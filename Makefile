# ox_push: Rust `ox` push driver for Dovecot 2.3, plus mock-middleware.
# The two commands of the README: `make demo` and `make test`.

CARGO ?= cargo
PLUGIN_SO := lib30_ox_push_plugin.so
RELEASE_DIR := target/release
SPOOL_DIR ?= /var/spool/dovecot-ox-push

.PHONY: all deps plugin install header lint test demo bench bench-middleware clean dovecot-2.4 dovecot-2.4-smoke \
	settings-module dovecot-2.4-settings-test

all: plugin

deps:
	@scripts/install-deps.sh

# The Dovecot module: target/release/lib30_ox_push_plugin.so
plugin: deps
	$(CARGO) build --release -p ox-push
	cp $(RELEASE_DIR)/libox_push.so $(RELEASE_DIR)/$(PLUGIN_SO)
	@echo "built $(RELEASE_DIR)/$(PLUGIN_SO)"

# DESTDIR= installs under a staging root (packaging; tests/install.sh).
install: plugin
	install -D -m 0644 $(RELEASE_DIR)/$(PLUGIN_SO) "$(DESTDIR)$$(doveconf -h mail_plugin_dir)/$(PLUGIN_SO)"
	install -d -m 1777 "$(DESTDIR)$(SPOOL_DIR)"
	@echo
	@echo "Installed $(DESTDIR)$$(doveconf -h mail_plugin_dir)/$(PLUGIN_SO); spool $(DESTDIR)$(SPOOL_DIR) (mode 1777)."
	@echo "Add to your Dovecot configuration (see dovecot-plugin/95-ox-push.conf):"
	@echo
	@echo "  mail_plugins = \$$mail_plugins notify push_notification ox_push"
	@echo "  plugin {"
	@echo "    push_notification_driver = ox:url=http://login:pass@node1.example.com:8009/preliminary/http-notify/v1/notify user_from_metadata"
	@echo "  }"

# Regenerates include/ox_push.h from src/ffi.rs (the build fails while it is stale).
header:
	OX_PUSH_UPDATE_HEADER=1 $(CARGO) build -p ox-push

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

test: deps
	python3 tests/corpus/generate.py --check
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace -- --test-threads=2
	tests/install.sh

demo: deps
	@scripts/demo.sh

bench: deps
	@bench/delivery.sh

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
DOVECOT_CONFIG ?= /usr/lib/dovecot/dovecot-config
settings-module:
	@dovecot-plugin/settings/build.sh "$(DOVECOT_CONFIG)"

# The settings module in the 2.4 root: doveconf and a mail process (about 5 s).
dovecot-2.4-settings-test: dovecot-2.4
	@scripts/dovecot-2.4-settings-test.sh "$$(scripts/dovecot-2.4.sh 2>/dev/null | tail -n 1)"

clean:
	$(CARGO) clean
