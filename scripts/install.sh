#!/usr/bin/env bash
# `make install`: the plugin, the relay, ox-push-stats and the conf.d snippet,
# for the Dovecot that DOVECOT_CONFIG (its dovecot-config) describes, from what
# `make plugin` built for it (scripts/build-paths.sh); for Dovecot 2.4 also the
# settings module (into <module dir>/settings/) and the snippet in 2.4 syntax.
# Creates the relay's user when missing and its spool directory (owned by
# that user, mode 0700).
#
# DESTDIR= stages everything under a root (packaging; nothing is created
# outside it then, and the spool is chowned only when the user exists).
# Without DESTDIR, a Dovecot inside a root (DOVECOT_CONFIG=ROOT/usr/lib/dovecot/
# dovecot-config, e.g. the one `make dovecot-2.4` makes) is installed into
# that root: its paths, its users (useradd runs chrooted).
set -euo pipefail
# shellcheck source=scripts/build-paths.sh
. "$(dirname "$0")/build-paths.sh"
DOVECOT_CONFIG=${DOVECOT_CONFIG:-/usr/lib/dovecot/dovecot-config}
[[ -r "$DOVECOT_CONFIG" ]] || { echo "install: $DOVECOT_CONFIG not found (install dovecot-dev, or set DOVECOT_CONFIG=)" >&2; exit 1; }
ox_push_build_paths "$DOVECOT_CONFIG"
cd "$OX_PUSH_TOP"
DESTDIR=${DESTDIR:-}
PLUGIN_DIR=${RELEASE_DIR:-$OX_PUSH_PLUGIN_DIR}
BIN_DIR=${RELEASE_DIR:-$OX_PUSH_BIN_DIR}
SPOOL_DIR=${SPOOL_DIR:-/var/spool/dovecot-ox-push}
RELAY_USER=${RELAY_USER:-ox-push}
CONF_DIR=${CONF_DIR:-/etc/dovecot/conf.d}
BINDIR=${BINDIR:-/usr/local/bin}

# Where files go: DESTDIR, else the Dovecot's root ("" for the host's).
dest=${DESTDIR:-$DOVECOT_SYSROOT}
# Commands that act on users run where that Dovecot runs.
run=()
[[ -z "$DESTDIR" && -n "$DOVECOT_SYSROOT" ]] && run=(chroot "$DOVECOT_SYSROOT")
moddir=$DOVECOT_MODULEDIR_IN_ROOT
libexecdir=$DOVECOT_PKGLIBEXECDIR_IN_ROOT

for f in "$PLUGIN_DIR/lib30_ox_push_plugin.so" "$BIN_DIR/ox-push-relay" "$BIN_DIR/ox-push-stats"; do
  [[ -f "$f" ]] || { echo "install: $f missing: run make plugin DOVECOT_CONFIG=$DOVECOT_CONFIG" >&2; exit 1; }
done
install -D -m 0644 "$PLUGIN_DIR/lib30_ox_push_plugin.so" "$dest$moddir/lib30_ox_push_plugin.so"
installed=("$dest$moddir/lib30_ox_push_plugin.so")
if [[ $OX_PUSH_V24 == yes ]]; then
  [[ -f "$PLUGIN_DIR/libox_push_settings.so" ]] \
    || { echo "install: $PLUGIN_DIR/libox_push_settings.so missing: run make plugin DOVECOT_CONFIG=$DOVECOT_CONFIG" >&2; exit 1; }
  # Dovecot 2.4's config process loads every settings/*.so: without it, our
  # keys are unknown settings.
  install -D -m 0644 "$PLUGIN_DIR/libox_push_settings.so" "$dest$moddir/settings/libox_push_settings.so"
  installed+=("$dest$moddir/settings/libox_push_settings.so")
  source_snippet=dovecot-plugin/95-ox-push-2.4.conf
else
  source_snippet=dovecot-plugin/95-ox-push.conf
fi
install -D -m 0755 "$BIN_DIR/ox-push-relay" "$dest$libexecdir/ox-push-relay"
install -D -m 0755 "$BIN_DIR/ox-push-stats" "$dest$BINDIR/ox-push-stats"
installed+=("$dest$libexecdir/ox-push-relay" "$dest$BINDIR/ox-push-stats")

snippet="$dest$CONF_DIR/95-ox-push.conf"
mkdir -p "$(dirname "$snippet")"
rendered=$(sed -e "s|/usr/lib/dovecot/ox-push-relay|$libexecdir/ox-push-relay|" \
               -e "s|--spool /var/spool/dovecot-ox-push|--spool $SPOOL_DIR|" \
               -e "s|user = ox-push|user = $RELAY_USER|" "$source_snippet")
if [[ -e "$snippet" ]] && ! cmp -s <(printf '%s\n' "$rendered") "$snippet"; then
  # Never overwrite an operator's edits.
  printf '%s\n' "$rendered" > "$snippet.new"
  echo "install: $snippet exists; the new version is $snippet.new"
else
  printf '%s\n' "$rendered" > "$snippet"
  chmod 0644 "$snippet"
fi

if [[ -z "$DESTDIR" ]] && ! "${run[@]}" id -u "$RELAY_USER" >/dev/null 2>&1; then
  "${run[@]}" useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RELAY_USER"
  echo "install: created the system user $RELAY_USER${DOVECOT_SYSROOT:+ in $DOVECOT_SYSROOT}"
fi
install -d -m 0700 "$dest$SPOOL_DIR"
if [[ -z "$DESTDIR" ]]; then
  "${run[@]}" chown "$RELAY_USER:" "$SPOOL_DIR"
elif id -u "$RELAY_USER" >/dev/null 2>&1; then
  chown "$RELAY_USER:" "$dest$SPOOL_DIR"
fi

echo
echo "Installed for Dovecot $DOVECOT_VERSION:"
printf '  %s\n' "${installed[@]}"
echo "  $snippet (the relay's service block; the plugin lines are commented)"
echo "  $dest$SPOOL_DIR (owner $RELAY_USER, mode 0700)"
if [[ $OX_PUSH_V24 == yes ]]; then
  cat <<MSG
To turn push on, in $CONF_DIR/95-ox-push.conf:
  mail_plugins {
    notify = yes
    push_notification = yes
    ox_push = yes
  }
  mail_attribute {
    dict file {
      path = %{home}/dovecot-attributes
    }
  }
  push_notification ox {
    ox_url = http://login:pass@node1.example.com:8009/preliminary/http-notify/v1/notify
    ox_user_from_metadata = yes
  }
then: doveadm reload
MSG
else
  cat <<MSG
To turn push on, in $CONF_DIR/95-ox-push.conf:
  mail_plugins = \$mail_plugins notify push_notification ox_push
  mail_attribute_dict = file:%h/dovecot-attributes
  plugin {
    push_notification_driver = ox:url=http://login:pass@node1.example.com:8009/preliminary/http-notify/v1/notify user_from_metadata
  }
then: doveadm reload
MSG
fi
