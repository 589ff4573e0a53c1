#!/usr/bin/env bash
# make demo: builds the plugin and mock-middleware, starts a private Dovecot with
# the plugin, mock-middleware with fake APNs/FCM, delivers mail by LMTP and shows
# what arrived where. Everything runs on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "building the plugin and mock-middleware (release; the first build takes a few minutes)"
cargo build --release --workspace --bins --lib 2>&1 | grep -E "^(error|warning: unused)|Compiling (ox-push|mock-middleware)|Finished" || true
PLUGIN=$ROOT/target/release/libox_push.so
MM=$ROOT/target/release/mock-middleware
[ -f "$PLUGIN" ] && [ -x "$MM" ] || { echo "build failed" >&2; exit 1; }

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
"$MM" fake-providers --config-dir "$T/mm" >"$T/fake.log" 2>&1 & PIDS+=($!)
"$MM" serve --config-dir "$T/mm" >"$T/mm.log" 2>&1 & PIDS+=($!)

say "Dovecot: private instance in $T/dc with ox_push (LMTP :$LMTP)"
D=$T/dc
mkdir -p "$D"/{run,state,plugins,home/demo} "$D/spool"
chmod 1777 "$D/spool"; chown 5000:5000 "$D/home/demo"
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
plugin {
  push_notification_driver = ox:url=http://dovecot:$RESTPW@127.0.0.1:$HTTP/preliminary/http-notify/v1/notify user_from_metadata spool_dir=$D/spool
}
CONF
dovecot -c "$D/dovecot.conf"
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null 2>&1 && break
  sleep 0.1
done
say "switching push on for user demo (what OX does with SETMETADATA): user=3@1"
doveadm -c "$D/dovecot.conf" mailbox metadata set -u demo -s "" \
  /private/vendor/vendor.dovecot/http-notify "user=3@1"

say "delivering a mail to demo by LMTP"
python3 - "$LMTP" "$ADMIN" "$FADMIN" <<'PY'
import json, smtplib, sys, time, urllib.request
lmtp, admin, fadmin = (int(a) for a in sys.argv[1:4])
msg = ("From: Alice Example <alice@example.org>\r\nTo: demo@example.org\r\n"
       "Subject: Lunch at noon?\r\nMessage-ID: <demo-1@example.org>\r\n\r\n"
       "Shall we meet at the usual place?\r\n")
t0 = time.monotonic()
with smtplib.LMTP("127.0.0.1", lmtp) as l:
    l.sendmail("alice@example.org", ["demo"], msg.encode())
t_reply = time.monotonic()
print(f"    LMTP: 250 Saved after {1000*(t_reply-t0):.1f} ms")
def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)
deadline = time.monotonic() + 15
notes = pushes = []
while time.monotonic() < deadline:
    notes = get(f"http://127.0.0.1:{admin}/mock/notifications")
    pushes = get(f"http://127.0.0.1:{fadmin}/fake/requests?provider=apns")
    notes = notes.get("notifications", notes) if isinstance(notes, dict) else notes
    pushes = pushes.get("requests", pushes) if isinstance(pushes, dict) else pushes
    if notes and pushes:
        break
    time.sleep(0.05)
t_seen = time.monotonic()
if not notes:
    sys.exit("no notification arrived at mock-middleware (see the logs above)")
n = notes[-1]
print("    mock-middleware received (what Dovecot sent):")
print("     ", json.dumps(n.get("body", n), ensure_ascii=False))
if not pushes:
    sys.exit("no push arrived at the fake APNs")
p = pushes[-1]
print("    fake APNs received (what the phone gets):")
print("     ", json.dumps(p.get("body", p), ensure_ascii=False))
print(f"    seen at the fake APNs within {1000*(t_seen-t_reply):.0f} ms of the LMTP reply")
PY
say "plugin counters (ox-push-stats $D/spool):"
"$ROOT/target/release/ox-push-stats" "$D/spool" | column -t -s $'\t' | sed 's/^/    /'
say "done; stopping Dovecot and mock-middleware"
