#!/usr/bin/env bash
# make demo: builds the plugin, the relay and mock-middleware, starts a private
# Dovecot with the plugin and the relay service, mock-middleware with fake
# APNs/FCM, delivers mail by LMTP and shows what arrived where. Everything runs
# on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "building the plugin, the relay and mock-middleware (release; the first build takes a few minutes)"
set +e
cargo build --release --workspace --bins --lib 2>&1 | awk '
  /^error/ { err = 1 } err { print; next }
  /Compiling/ { n++; if (n % 25 == 0) { printf "    ... %d crates compiled\n", n; fflush() } }
  /Finished/ { sub(/^ +/, ""); print "    " $0 }'
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "build failed (cargo exit $status)" >&2; exit 1; }
PLUGIN=$ROOT/target/release/libox_push.so
RELAY=$ROOT/target/release/ox-push-relay
MM=$ROOT/target/release/mock-middleware
[ -f "$PLUGIN" ] && [ -x "$RELAY" ] && [ -x "$MM" ] || { echo "build failed" >&2; exit 1; }
# The relay's unprivileged user (make install creates it the same way).
id -u ox-push >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ox-push

T=$(mktemp -d /tmp/ox-push-demo.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$T/dc/run/master.pid" ] && kill "$(cat "$T/dc/run/master.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$T"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
HTTP=$(free_port); ADMIN=$(free_port); APNS=$(free_port); FCM=$(free_port); FADMIN=$(free_port)
LMTP=$(free_port); IMAP=$(free_port)
RESTPW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

say "mock-middleware: config in $T/mm, fake APNs :$APNS, fake FCM :$FCM, http-notify :$HTTP"
"$MM" init-demo --dir "$T/mm" --http-port "$HTTP" --admin-port "$ADMIN" --apns-port "$APNS" \
  --fcm-port "$FCM" --fake-admin-port "$FADMIN" --rest-password "$RESTPW" >"$T/init-demo.txt"
PASSCRYPT=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >>"$T/mm/mock.properties" <<PROPS
# issue 5: logins by IMAP against the private Dovecot, permanent listeners, credentials in SQLite
mock.imap.host=127.0.0.1
mock.imap.port=$IMAP
com.openexchange.push.credstorage.enabled=true
com.openexchange.push.credstorage.passcrypt=$PASSCRYPT
com.openexchange.push.credstorage.rdb=true
PROPS
"$MM" fake-providers --config-dir "$T/mm" >"$T/fake.log" 2>&1 & PIDS+=($!)

say "Dovecot: private instance in $T/dc with ox_push and the ox-push relay service (LMTP :$LMTP)"
D=$T/dc
mkdir -p "$D"/{run,state,plugins,home/demo} "$D/spool"
chmod 0700 "$D/spool"; chown ox-push: "$D/spool"; chown 5000:5000 "$D/home/demo"
for f in /usr/lib/dovecot/modules/*.so; do ln -s "$f" "$D/plugins/"; done
cp "$PLUGIN" "$D/plugins/lib30_ox_push_plugin.so"
echo "demo:{plain}demo:5000:5000::$D/home/demo::" >"$D/users"
cat >"$D/dovecot.conf" <<CONF
base_dir = $D/run
state_dir = $D/state
instance_name = ox-push-demo-$$
log_path = $D/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1000
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
mail_attribute_dict = file:%h/dovecot-attributes
mail_plugin_dir = $D/plugins
mail_plugins = \$mail_plugins notify push_notification ox_push
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
service imap-login {
  inet_listener imap {
    port = $IMAP
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP
  }
}
protocol imap {
  imap_metadata = yes
}
service ox-push {
  executable = $RELAY --spool $D/spool
  user = ox-push
  process_limit = 1
  process_min_avail = 1
  vsz_limit = 1G
  unix_listener ox-push {
    mode = 0660
    group = \$default_internal_group
  }
}
plugin {
  push_notification_driver = ox:url=http://dovecot:$RESTPW@127.0.0.1:$HTTP/preliminary/http-notify/v1/notify user_from_metadata
}
CONF
dovecot -c "$D/dovecot.conf"
"$MM" serve --config-dir "$T/mm" >"$T/mm.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null 2>&1 && break
  sleep 0.1
done

IPHONE=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ANDROID=android-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
say "two devices log in as demo (checked by IMAP against Dovecot) and subscribe: iPhone (apn), Android (gcm)"
DEVICE_PASSWORD=demo "$MM" device --url "http://127.0.0.1:$HTTP" --user demo --transport apn --token "$IPHONE" \
  --name iPhone --fake-admin "http://127.0.0.1:$FADMIN" --pushes 2 --timeout-s 60 2>&1 | sed 's/^/    /' & PIDS+=($!)
DEVICE_PASSWORD=demo "$MM" device --url "http://127.0.0.1:$HTTP" --user demo --transport gcm --token "$ANDROID" \
  --name Android --fake-admin "http://127.0.0.1:$FADMIN" --pushes 2 --timeout-s 60 2>&1 | sed 's/^/    /' & PIDS+=($!)
for _ in $(seq 100); do
  M=$(doveadm -c "$D/dovecot.conf" mailbox metadata get -u demo -s "" /private/vendor/vendor.dovecot/http-notify 2>/dev/null || true)
  [ -n "$M" ] && break
  sleep 0.1
done
[ -n "$M" ] || { echo "the middleware did not register demo in Dovecot; log:" >&2; cat "$T/mm.log" >&2; exit 1; }
say "the middleware switched push on in Dovecot: METADATA http-notify = $M"

say "delivering two mails to demo by LMTP"
python3 - "$LMTP" "$FADMIN" "$IPHONE" "$ANDROID" <<'PY'
import json, smtplib, sys, time, urllib.request
lmtp, fadmin = int(sys.argv[1]), int(sys.argv[2])
tokens = {"iPhone": ("apns", sys.argv[3]), "Android": ("fcm", sys.argv[4])}
def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)
def count(provider, token):
    reqs = get(f"http://127.0.0.1:{fadmin}/fake/requests?provider={provider}")
    return sum(1 for r in reqs if r.get("token") == token or token in json.dumps(r.get("body")))
mails = [("Alice Example <alice@example.org>", "Lunch at noon?"),
         ("Bob Builder <bob@example.org>", "Quarterly report")]
for i, (sender, subject) in enumerate(mails, 1):
    msg = (f"From: {sender}\r\nTo: demo@example.org\r\nSubject: {subject}\r\n"
           f"Message-ID: <demo-{i}@example.org>\r\n\r\nHello.\r\n")
    t0 = time.monotonic()
    with smtplib.LMTP("127.0.0.1", lmtp) as l:
        l.sendmail(sender.split("<")[1].rstrip(">"), ["demo"], msg.encode())
    t_reply = time.monotonic()
    print(f"    mail {i} ({subject!r}): LMTP 250 after {1000*(t_reply-t0):.1f} ms")
    pending = dict(tokens)
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        for name, (prov, tok) in list(pending.items()):
            if count(prov, tok) >= i:
                print(f"    mail {i}: {name} push at the fake {prov.upper()} {1000*(time.monotonic()-t_reply):.0f} ms after the LMTP reply")
                del pending[name]
        time.sleep(0.005)
    if pending:
        sys.exit(f"no push for {', '.join(pending)} (see the logs)")
    time.sleep(0.3)
PY
wait "${PIDS[@]:2}" 2>/dev/null || true
say "registered push users (mock-middleware listpushusers / pushusers -l):"
"$MM" listpushusers --config-dir "$T/mm" | sed 's/^/    /'
"$MM" pushusers -l --config-dir "$T/mm" | sed 's/^/    /'

say "relay counters (ox-push-stats $D/run/ox-push):"
"$ROOT/target/release/ox-push-stats" "$D/run/ox-push" | sed 's/^/    /'
say "done; stopping Dovecot and mock-middleware"
