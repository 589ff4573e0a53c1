#!/usr/bin/env bash
# `make install`: the plugin, the relay, ox-push-stats and the conf.d snippet,
# for the Dovecot that DOVECOT_CONFIG (its dovecot-config) describes; creates
# the relay's user when missing and its spool directory (owned by that user,
# mode 0700). DESTDIR= stages everything under a root (packaging; nothing is
# created outside it then, and the spool is chowned only when the user exists).
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
DOVECOT_CONFIG=${DOVECOT_CONFIG:-/usr/lib/dovecot/dovecot-config}
RELEASE_DIR=${RELEASE_DIR:-target/release}
SPOOL_DIR=${SPOOL_DIR:-/var/spool/dovecot-ox-push}
RELAY_USER=${RELAY_USER:-ox-push}
CONF_DIR=${CONF_DIR:-/etc/dovecot/conf.d}
BINDIR=${BINDIR:-/usr/local/bin}

[[ -r "$DOVECOT_CONFIG" ]] || { echo "install: $DOVECOT_CONFIG not found (install dovecot-dev, or set DOVECOT_CONFIG=)" >&2; exit 1; }
# dovecot-config is a shell fragment written by Dovecot's build.
moddir=$(. "$DOVECOT_CONFIG" && echo "$dovecot_moduledir")
libexecdir=$(. "$DOVECOT_CONFIG" && echo "${dovecot_pkglibexecdir:-$(dirname "$dovecot_moduledir")}")

install -D -m 0644 "$RELEASE_DIR/lib30_ox_push_plugin.so" "$DESTDIR$moddir/lib30_ox_push_plugin.so"
install -D -m 0755 "$RELEASE_DIR/ox-push-relay" "$DESTDIR$libexecdir/ox-push-relay"
install -D -m 0755 "$RELEASE_DIR/ox-push-stats" "$DESTDIR$BINDIR/ox-push-stats"

snippet="$DESTDIR$CONF_DIR/95-ox-push.conf"
mkdir -p "$(dirname "$snippet")"
rendered=$(sed -e "s|/usr/lib/dovecot/ox-push-relay|$libexecdir/ox-push-relay|" \
               -e "s|--spool /var/spool/dovecot-ox-push|--spool $SPOOL_DIR|" \
               -e "s|user = ox-push|user = $RELAY_USER|" dovecot-plugin/95-ox-push.conf)
if [[ -e "$snippet" ]] && ! cmp -s <(printf '%s\n' "$rendered") "$snippet"; then
  # Never overwrite an operator's edits.
  printf '%s\n' "$rendered" > "$snippet.new"
  echo "install: $snippet exists; the new version is $snippet.new"
else
  printf '%s\n' "$rendered" > "$snippet"
  chmod 0644 "$snippet"
fi

if [[ -z "$DESTDIR" ]] && ! id -u "$RELAY_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RELAY_USER"
  echo "install: created the system user $RELAY_USER"
fi
install -d -m 0700 "$DESTDIR$SPOOL_DIR"
if id -u "$RELAY_USER" >/dev/null 2>&1; then
  chown "$RELAY_USER:" "$DESTDIR$SPOOL_DIR"
fi

cat <<MSG

Installed:
  $DESTDIR$moddir/lib30_ox_push_plugin.so
  $DESTDIR$libexecdir/ox-push-relay
  $DESTDIR$BINDIR/ox-push-stats
  $snippet (the relay's service block; the plugin lines are commented)
  $DESTDIR$SPOOL_DIR (owner $RELAY_USER, mode 0700)
To turn push on, in $CONF_DIR/95-ox-push.conf:
  mail_plugins = \$mail_plugins notify push_notification ox_push
  mail_attribute_dict = file:%h/dovecot-attributes
  plugin {
    push_notification_driver = ox:url=http://login:pass@node1.example.com:8009/preliminary/http-notify/v1/notify user_from_metadata
  }
then: doveadm reload
MSG
