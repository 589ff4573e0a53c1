#!/usr/bin/env python3
"""Delivery-path benchmark of the ox push driver (issue 3, "Benchmark").

Delivers messages by LMTP over several connections into a private Dovecot on
127.0.0.1 (the host's 2.3, or with --dovecot-config the Dovecot 2.4 of a root made by
`make dovecot-2.4`, see "Which Dovecot" below) and compares
  (a) no push          (no notify/push_notification plugins, no driver),
  (b) builtin          (Dovecot's own `ox` driver),
  (c) ox_push          (this project's plugin, lib30_ox_push_plugin.so, handing every
                       notification to the ox-push-relay service of the same Dovecot),
against a loopback HTTP/1.1 receiver (a separate Python process: threaded, keep-alive,
answers 204 at once, records time.monotonic() and the body of each request).

Scenarios
  healthy  N messages, (a) (b) (c), RUNS times (interleaved, the order rotated per round):
           msg/s, delivery latency (end of DATA -> 250 reply) p50/p99/max,
           arrival (250 reply -> request fully read by the receiver) p50/p99,
           CPU per message of all lmtp processes (/proc/<pid>/stat utime+stime;
           also `perf stat -e task-clock` when perf works).
  hang     (b) (c): receiver reads requests and never answers for at least HANG_SECS while
           HANG_N messages are delivered ((a) with the same N as the reference); then
           the receiver answers again and we wait up to HANG_WAIT s for the rest.
  outage   (b) (c): receiver port closed for OUTAGE_SECS while OUTAGE_N messages are
           delivered (a burst, then one message a second); then it listens again and we
           wait up to OUTAGE_WAIT s. Arrived, missing, duplicates.

Every setting is an environment variable (see DEFAULTS) or --name=value. Run as root
(Dovecot's mail processes run as uid 5000+). Standard library only. Every Dovecot and
receiver started here is stopped on exit, also on failure or SIGINT/SIGTERM.

Arguments: --plugin=libox_push.so --relay=ox-push-relay [--out=DIR]
  [--dovecot-config=ROOT/usr/lib/dovecot/dovecot-config --settings-module=libox_push_settings.so]
  (bench/delivery.sh passes them; the plugin must be built for that Dovecot).
"""

import json
import math
import os
import pwd
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

DEFAULTS = {
    "N": 2000,  # messages per healthy run
    "CONNS": 4,  # concurrent LMTP connections
    "USERS": 1,  # recipients (one maildir INBOX each), messages round-robin
    "RUNS": 3,  # healthy runs per driver
    "WARMUP": 40,  # deliveries before measuring (receiver answering), not counted
    "HANG_N": 40,  # messages with a hanging receiver
    "HANG_RUNS": 3,
    "HANG_SECS": 10,  # the receiver hangs at least this long (also after the deliveries end)
    "HANG_WAIT": 30,  # seconds to wait for arrivals after the receiver answers again
    "OUTAGE_SECS": 60,  # receiver down for this long
    "OUTAGE_N": 400,  # burst at the start of the outage (+1 msg/s afterwards)
    "OUTAGE_RUNS": 1,
    "OUTAGE_WAIT": 60,  # seconds to wait for arrivals after the receiver is back
    "BUILTIN_IDLE": 5,  # (b) only: stop waiting after this many seconds without a request
    "TIMEOUT_MSECS": 2000,  # driver option timeout_msecs (both drivers)
    "SCENARIOS": "healthy,hang,outage",
    "PERF": 1,  # also measure with perf stat when available
    "PERF_RECORD": 0,  # healthy runs: perf record -g the lmtp processes instead (OUT/perf-<run>.data)
    "MAIL_DEBUG": 0,
    "MAIL_LOCATION": "maildir:~/Maildir",  # e.g. sdbox:~/sdbox, mdbox:~/mdbox
    "OX_EXTRA": "",  # extra ox_push driver options for (c), e.g. "notification_id"
    "RELAY_EXTRA": "",  # extra ox-push-relay options for (c), e.g. "--fsync"
}

KINDS = {"a": "no push", "b": "builtin", "c": "ox_push"}
MAIL_LOCATION = DEFAULTS["MAIL_LOCATION"]  # set from the config in main()
OX_EXTRA = ""
RELAY_EXTRA = ""
RELAY_BIN = os.environ.get("RELAY_BIN", "")
METADATA_KEY = "/private/vendor/vendor.dovecot/http-notify"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def pct(values, p):
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(p / 100.0 * len(s)) - 1)
    return s[k]


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------------------------
# Receiver (runs in its own process: `delivery.py --receiver PORT MODE`), controlled by
# one-line commands on stdin, one JSON line answered on stdout.
# --------------------------------------------------------------------------------------


class Receiver:
    def __init__(self, port, mode):
        self.port = port
        self.mode = mode  # "ok" | "hang"
        self.lock = threading.Lock()
        self.records = []  # [t_monotonic, body(str), answered(bool), mode_at_arrival]
        self.conns = set()
        self.unhang = threading.Event()
        self.lsock = None
        self.listening = False

    def up(self):
        if self.listening:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(1024)
        self.lsock = s
        self.listening = True
        threading.Thread(target=self.accept_loop, args=(s,), daemon=True).start()

    def down(self):
        """Close the port and every open connection: connects are refused."""
        if not self.listening:
            return
        self.listening = False
        s, self.lsock = self.lsock, None
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
        self.close_all()

    def close_all(self):
        with self.lock:
            conns = list(self.conns)
            self.conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_mode(self, mode):
        if mode == "hang":
            self.unhang.clear()
            self.mode = "hang"
        else:
            self.mode = "ok"
            self.unhang.set()  # held connections are closed; clients resend

    def accept_loop(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.settimeout(None)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.add(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                n = int(m.group(1)) if m else 0
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                t = time.monotonic()
                mode = self.mode
                rec = [t, body.decode("utf-8", "replace"), mode == "ok", mode]
                with self.lock:
                    self.records.append(rec)
                if mode == "hang":
                    self.unhang.wait()
                    return  # close without answering
                c.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def command(self, line):
        cmd = line.split()
        if not cmd:
            return {}
        if cmd[0] == "mode":
            self.set_mode(cmd[1])
        elif cmd[0] == "down":
            self.down()
        elif cmd[0] == "up":
            self.up()
        elif cmd[0] == "count":
            with self.lock:
                return {"n": len(self.records), "ok": sum(1 for r in self.records if r[2]),
                        "last": self.records[-1][0] if self.records else None}
        elif cmd[0] == "dump":
            with self.lock:
                return {"records": list(self.records)}
        elif cmd[0] == "clear":
            with self.lock:
                self.records.clear()
        return {}


def receiver_main(port, mode):
    r = Receiver(port, "hang" if mode == "hang" else "ok")
    if mode != "down":
        r.up()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print(json.dumps(r.command(line)), flush=True)
    r.unhang.set()


class ReceiverProc:
    """Parent-side handle of a receiver process."""

    def __init__(self, port, mode):
        self.port = port
        # bench/delivery.sh builds the Rust receiver (examples/bench_receiver.rs, same
        # protocol, about a sixth of the CPU per request); this file's is the fallback.
        rust = os.environ.get("RECEIVER_BIN")
        cmd = ([rust, str(port), mode] if rust else
               [sys.executable, os.path.abspath(__file__), "--receiver", str(port), mode])
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        STARTED.append(self)
        self._read(10)

    def _read(self, timeout):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise RuntimeError("receiver did not answer")
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("receiver exited")
        return json.loads(line)

    def cmd(self, c, timeout=30):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self._read(timeout)

    def records(self):
        """[(t, subject, answered, uid, mode)]"""
        out = []
        for t, body, answered, mode in self.cmd("dump")["records"]:
            try:
                j = json.loads(body)
            except ValueError:
                j = {}
            out.append((t, j.get("subject"), answered, j.get("imap-uid"), mode))
        return out

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(3)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.p.kill()
                self.p.wait()


# --------------------------------------------------------------------------------------
# Which Dovecot: the host's, or the one in a root made by `make dovecot-2.4`
# (--dovecot-config=ROOT/usr/lib/dovecot/dovecot-config). The same mechanics as the Rust
# tests' tests/support/env.rs: run directories under ROOT/tmp, configs written with the paths
# Dovecot sees, and every Dovecot command (master, doveadm) started chrooted in a private
# mount namespace that gives it /proc and shows the run's settings modules (the root's own
# plus libox_push_settings.so) in its compiled-in settings directory. The pid namespace is
# the host's: pids, /proc/<pid>/stat and perf work as for the host's Dovecot. Mounts vanish
# with their namespace, that is with the last process of that Dovecot.
# --------------------------------------------------------------------------------------

DC_ROOT = None  # host path of the root, or None: the host's Dovecot
DC_V24 = False  # Dovecot 2.4 or later: 2.4 configuration syntax and a settings module
SETTINGS_MODULE = None  # libox_push_settings.so (2.4)
MODULE_DIR = "/usr/lib/dovecot/modules"  # as Dovecot sees it
CONFIG_SUFFIX = "/usr/lib/dovecot/dovecot-config"


def use_dovecot(config, settings_module):
    """Selects the Dovecot that a dovecot-config describes (None: the host's)."""
    global DC_ROOT, DC_V24, SETTINGS_MODULE
    if not config:
        return
    config = os.path.abspath(config)
    if not config.endswith(CONFIG_SUFFIX):
        sys.exit(f"--dovecot-config: {config} is not ROOT{CONFIG_SUFFIX}")
    DC_ROOT = config[:-len(CONFIG_SUFFIX)] or None
    with open(config) as f:
        include = next((ln.split("=", 1)[1].strip().strip('"') for ln in f
                        if ln.startswith("dovecot_pkgincludedir=")), "/usr/include/dovecot")
    try:
        with open(host_path(include) + "/config.h") as f:
            config_h = f.read()
    except OSError as e:
        sys.exit(f"--dovecot-config: {e} (dovecot-dev)")
    major = int(re.search(r"(?m)^#define DOVECOT_VERSION_MAJOR (\d+)", config_h).group(1))
    minor = int(re.search(r"(?m)^#define DOVECOT_VERSION_MINOR (\d+)", config_h).group(1))
    DC_V24 = (major, minor) >= (2, 4)
    if DC_V24 and not DC_ROOT:
        sys.exit("a Dovecot 2.4 on the host itself is not supported here: only one in a root "
                 "(make dovecot-2.4)")
    if DC_V24:
        if not settings_module or not os.path.exists(settings_module):
            sys.exit("--settings-module=PATH to libox_push_settings.so is required for Dovecot 2.4")
        SETTINGS_MODULE = settings_module


def host_path(inner):
    """The host path of a path inside Dovecot's root."""
    return os.path.join(DC_ROOT, inner.lstrip("/")) if DC_ROOT else inner


def inner_path(path):
    """The path Dovecot sees for a host path (inside its root)."""
    if not DC_ROOT:
        return path
    rel = os.path.relpath(path, DC_ROOT)
    if rel.startswith(".."):
        raise RuntimeError(f"{path} is outside {DC_ROOT}")
    return "/" + rel


def user_ids(name):
    """(uid, gid) of a user as Dovecot knows it (the root's /etc/passwd)."""
    if not DC_ROOT:
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid
    with open(host_path("/etc/passwd")) as f:
        for ln in f:
            fields = ln.rstrip("\n").split(":")
            if len(fields) > 3 and fields[0] == name:
                return int(fields[2]), int(fields[3])
    raise KeyError(f"no user {name} in {host_path('/etc/passwd')}")


def dovecot_command(t, program, *args):
    """argv that runs a Dovecot program (as Dovecot sees it, or a name on its PATH) for the
    run directory t (host path): on the host, or chrooted into the root in a private mount
    namespace with /proc and t/settings as the settings module directory."""
    if not DC_ROOT:
        return [program, *args]
    mounts = 'mount -t proc proc "$1/proc"'
    if DC_V24:
        mounts += f' && mount --bind "$2" "$1{MODULE_DIR}/settings"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            mounts + ' && r=$1 && shift 2 && exec chroot "$r" "$@"',
            "sh", DC_ROOT, os.path.join(t, "settings"), program, *args]


def mount_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_mount_ns(ns):
    """Every process in a mount namespace (that of a root's Dovecot)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and mount_ns(d) == ns:
            out.append(int(d))
    return out


# --------------------------------------------------------------------------------------
# Private Dovecot
# --------------------------------------------------------------------------------------

STARTED = []  # everything to stop at exit (Dovecot, ReceiverProc)


def proc_stat(pid):
    """(ppid, comm, utime+stime ticks) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), comm, int(rest[11]) + int(rest[12])


def config_23(t, kind, lmtp_port, url, plugins, relay, spool, timeout_msecs, debug):
    """dovecot.conf for Dovecot 2.3 (paths as Dovecot sees them)."""
    conf = f"""base_dir = {t}/run
state_dir = {t}/state
instance_name = {os.path.basename(t)}
log_path = {t}/dovecot.log
mail_debug = {"yes" if debug else "no"}
listen = 127.0.0.1
protocols = lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1000
default_internal_user = dovecot
default_login_user = dovenull
mail_location = {MAIL_LOCATION}
mail_attribute_dict = file:%h/dovecot-attributes
mail_plugin_dir = {t}/plugins
mail_plugins = $mail_plugins {" ".join(plugins)}
passdb {{
  driver = passwd-file
  args = {t}/users
}}
userdb {{
  driver = passwd-file
  args = {t}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  imap_metadata = yes
}}
"""
    if kind == "b":
        conf += f"plugin {{\n  push_notification_driver = ox:url={url} user_from_metadata timeout_msecs={timeout_msecs}\n}}\n"
    elif kind == "c":
        conf += relay_block(relay, spool, "$default_internal_group")
        conf += (f"plugin {{\n  push_notification_driver = ox:url={url} user_from_metadata "
                 f"timeout_msecs={timeout_msecs} {OX_EXTRA}\n}}\n")
    return conf


def config_24(t, kind, lmtp_port, url, plugins, relay, spool, timeout_msecs, debug):
    """dovecot.conf for Dovecot 2.4 (tests/support/conf.rs's render_24). The driver block of
    (b) and (c) sets http_client_request_timeout to TIMEOUT_MSECS, as timeout_msecs on 2.3
    (2.4.1's own default is 60 s); the attempts stay at their default."""
    driver, _, path = MAIL_LOCATION.partition(":")
    conf = f"""dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
base_dir = {t}/run
state_dir = {t}/state
instance_name = {os.path.basename(t)}
log_path = {t}/dovecot.log
mail_debug = {"yes" if debug else "no"}
listen = 127.0.0.1
protocols = lmtp
ssl = no
auth_allow_cleartext = yes
auth_mechanisms = plain
first_valid_uid = 1000
mail_driver = {driver}
mail_path = {path}
mail_attribute {{
  dict file {{
    path = %{{home}}/dovecot-attributes
  }}
}}
mail_plugin_dir = {t}/plugins
"""
    if plugins:
        conf += "mail_plugins {\n" + "".join(f"  {m} = yes\n" for m in plugins) + "}\n"
    conf += f"""passdb passwd-file {{
  passwd_file_path = {t}/users
  default_password_scheme = PLAIN
}}
userdb passwd-file {{
  passwd_file_path = {t}/users
}}
service lmtp {{
  inet_listener lmtp {{
    listen = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  imap_metadata = yes
}}
"""
    if kind in "bc":
        if kind == "c":
            conf += relay_block(relay, spool, "$SET:default_internal_group")
        conf += (f"push_notification ox {{\n  ox_url = {url}\n  ox_user_from_metadata = yes\n"
                 f"  http_client_request_timeout = {timeout_msecs}ms\n")
        if kind == "c":
            conf += "".join(f"  {line}\n" for line in ox_extra_24(OX_EXTRA))
        conf += "}\n"
    return conf


def ox_extra_24(extra):
    """OX_EXTRA (driver options in 2.3's form, e.g. "notification_id max_age=5m") as 2.4
    block lines (the names of tests/support/conf.rs)."""
    out = []
    for token in extra.split():
        k, _, v = token.partition("=")
        if k == "notification_id":
            out.append("ox_push_notification_id = yes")
        elif k in ("folders", "events"):
            out.append(f"ox_push_{k} = {v.replace(',', ' ')}")
        elif k in ("max_age", "shutdown_timeout", "relay_socket"):
            out.append(f"ox_push_{k} = {v}")
        elif k == "cache_lifetime":
            out.append(f"ox_cache_ttl = {v}")
        elif k == "max_retries":
            out.append(f"http_client_request_max_attempts = {int(v) + 1}")
        else:
            sys.exit(f"OX_EXTRA: no Dovecot 2.4 equivalent for {token!r}")
    return out


def relay_block(relay, spool, group):
    return (f"service ox-push {{\n  executable = {relay} --spool {spool} {RELAY_EXTRA}\n"
            "  user = ox-push\n  process_limit = 1\n  process_min_avail = 1\n  vsz_limit = 1G\n"
            f"  unix_listener ox-push {{\n    mode = 0660\n    group = {group}\n  }}\n}}\n")


class Dovecot:
    def __init__(self, kind, url, users, plugin, keep_dir, tag, timeout_msecs, debug):
        self.kind = kind
        self.tag = tag
        self.keep_dir = keep_dir
        # In a root: under ROOT/tmp, where Dovecot sees it as /tmp/NAME.
        self.dir = tempfile.mkdtemp(prefix=f"oxbench-{tag}-", dir=host_path("/tmp") if DC_ROOT else None)
        t = self.dir
        os.chmod(t, 0o755)
        for sub in ("run", "state", "plugins", "home"):
            os.makedirs(os.path.join(t, sub))
        # The relay's spool: its user's, mode 0700.
        self.spool = os.path.join(t, "spool")
        os.makedirs(self.spool)
        os.chmod(self.spool, 0o700)
        os.chown(self.spool, *user_ids("ox-push"))
        # The modules as Dovecot sees them, and ours.
        for name in os.listdir(host_path(MODULE_DIR)):
            if name.endswith(".so"):
                os.symlink(os.path.join(MODULE_DIR, name), os.path.join(t, "plugins", name))
        shutil.copy(plugin, os.path.join(t, "plugins", "lib30_ox_push_plugin.so"))
        # 2.4: the settings modules the config process loads: the root's own (hard links)
        # and ours; shown in place of the root's settings directory (dovecot_command).
        if DC_V24:
            settings = os.path.join(t, "settings")
            os.makedirs(settings)
            own = host_path(MODULE_DIR + "/settings")
            for name in os.listdir(own):
                if name != "libox_push_settings.so":
                    os.link(os.path.join(own, name), os.path.join(settings, name))
            shutil.copy(SETTINGS_MODULE, os.path.join(settings, "libox_push_settings.so"))
        relay = RELAY_BIN
        if DC_ROOT:  # the relay runs in the root too
            relay = os.path.join(t, "ox-push-relay")
            shutil.copy(RELAY_BIN, relay)
        self.users = users
        lines = []
        for i, u in enumerate(users):
            home = os.path.join(t, "home", u)
            os.makedirs(home)
            os.chown(home, 5000 + i, 5000 + i)
            lines.append(f"{u}:{{plain}}pw:{5000 + i}:{5000 + i}::{inner_path(home)}::")
        with open(os.path.join(t, "users"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.lmtp_port = free_port()
        plugins = {"a": [], "b": ["notify", "push_notification"],
                   "c": ["notify", "push_notification", "ox_push"]}[kind]
        conf = (config_24 if DC_V24 else config_23)(
            inner_path(t), kind, self.lmtp_port, url, plugins, inner_path(relay),
            inner_path(self.spool), timeout_msecs, debug)
        self.conf = os.path.join(t, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.master = None
        self.ns = None  # in a root: the private mount namespace of this Dovecot
        self.children = set()
        STARTED.append(self)
        with open(os.path.join(t, "startup.err"), "w") as err:
            r = subprocess.run(dovecot_command(t, "dovecot", "-c", inner_path(self.conf)),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"dovecot failed to start: {open(os.path.join(t, 'startup.err')).read()}")
        until = time.monotonic() + 15
        while True:
            try:
                with open(os.path.join(t, "run", "master.pid")) as f:
                    self.master = int(f.read().strip())
                if DC_ROOT and self.ns is None:
                    ns = mount_ns(self.master)
                    # Never the host's namespace (stop() kills every process in it).
                    if ns and ns != mount_ns(os.getpid()):
                        self.ns = ns
                with socket.create_connection(("127.0.0.1", self.lmtp_port), timeout=5) as s:
                    if s.recv(512):
                        break
            except (OSError, ValueError):
                pass
            if time.monotonic() > until:
                raise RuntimeError("dovecot not ready\n" + self.log())
            time.sleep(0.05)
        if kind != "a":
            for i, u in enumerate(users):
                self.doveadm(["mailbox", "metadata", "set", "-u", u, "-s", "", METADATA_KEY, f"user={i + 1}@1"])

    def doveadm(self, args):
        r = subprocess.run(dovecot_command(self.dir, "doveadm", "-c", inner_path(self.conf), *args),
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"doveadm {args}: {r.stderr}")
        return r.stdout

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def lmtp_pids(self, names=("lmtp",)):
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(int(d))
                if st and st[0] == self.master:
                    self.children.add(int(d))
                    if st[1] in names:
                        out.append(int(d))
        return sorted(out)

    def cpu_ticks(self, names=("lmtp", "ox-push-relay")):
        """{pid: utime+stime} of every lmtp process and of the relay: what push costs
        on this machine, wherever it runs."""
        out = {}
        for pid in self.lmtp_pids(names):
            st = proc_stat(pid)
            if st:
                out[pid] = st[2]
        return out

    def stop(self):
        if self.master is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        self.lmtp_pids()  # remember the children in case the master must be killed
        try:
            os.kill(self.master, signal.SIGTERM)
        except ProcessLookupError:
            pass
        until = time.monotonic() + 5
        while time.monotonic() < until and os.path.exists(f"/proc/{self.master}") and \
                proc_stat(self.master) is not None:
            time.sleep(0.02)
        for pid in [self.master] + sorted(self.children):
            st = proc_stat(pid)
            if st is not None and (pid == self.master or st[0] in (self.master, 1)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.ns:
            # In a root: whatever is left in this Dovecot's private mount namespace (its
            # mounts vanish with the last of them); a second, then SIGKILL.
            until = time.monotonic() + 1
            while (left := pids_in_mount_ns(self.ns)) and time.monotonic() < until:
                time.sleep(0.02)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.ns = None
        self.master = None
        if self.keep_dir:
            shutil.copy(os.path.join(self.dir, "dovecot.log"),
                        os.path.join(self.keep_dir, f"{self.tag}.dovecot.log"))
        # Removed at the very end: on ext4, thousands of freshly deleted inodes make
        # the next run's file creations slower (the allocator skips recently deleted
        # inodes), which would handicap whichever driver runs next.
        REMOVE_AT_EXIT.append(self.dir)


REMOVE_AT_EXIT = []


def stop_all():
    while STARTED:
        x = STARTED.pop()
        try:
            x.stop()
        except Exception as e:  # keep stopping the others
            log("stop failed:", e)
    while REMOVE_AT_EXIT:
        shutil.rmtree(REMOVE_AT_EXIT.pop(), ignore_errors=True)


# --------------------------------------------------------------------------------------
# LMTP client
# --------------------------------------------------------------------------------------


class Lmtp:
    def __init__(self, port):
        # (b) during an outage: lib-http's connect backoff holds a delivery up to 60 s.
        self.s = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd("LHLO bench")

    def reply(self):
        lines = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise RuntimeError("LMTP connection closed: %r" % lines)
            lines.append(ln)
            if len(ln) < 4 or ln[3:4] != b"-":
                return b"".join(lines).decode("utf-8", "replace").strip()

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.reply()

    def deliver(self, rcpt, data):
        """data is dot-stuffed and CRLF-terminated (without the final dot).
        Returns (t_data_end, t_reply, reply)."""
        for c, want in (("MAIL FROM:<sender@example.org>", "250"), (f"RCPT TO:<{rcpt}>", "250"),
                        ("DATA", "354")):
            r = self.cmd(c)
            if not r.startswith(want):
                raise RuntimeError(f"{c}: {r}")
        self.s.sendall(data + b".\r\n")
        t0 = time.monotonic()
        r = self.reply()
        return t0, time.monotonic(), r

    def close(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.s.settimeout(2)
            self.reply()
        except (OSError, RuntimeError):
            pass
        self.s.close()


def message(subject):
    return (f"From: Bench <bench@example.org>\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@bench.example.org>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
            f"\r\nHello, this is {subject}.\r\nA second line of text.\r\n").encode()


def deliver_many(sessions, users, subjects, schedule=None, deadline=None, stop_at=None):
    """Delivers subjects[i] to users[i % len(users)] over the sessions (one thread each,
    taking the next message from a shared counter). schedule: optional list of monotonic
    times before which message i is not started; stop_at: start no message after this time
    (no error; the caller sees fewer records). Returns (records, t_start, t_end);
    records: {subject: (t_data_end, t_reply, reply)}."""
    lock = threading.Lock()
    nxt = [0]
    out = {}
    errors = []

    def worker(sess):
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(subjects) or errors:
                return
            if stop_at and time.monotonic() > stop_at:
                return
            if deadline and time.monotonic() > deadline:
                errors.append("deadline passed")
                return
            if schedule:
                d = schedule[i] - time.monotonic()
                if d > 0:
                    time.sleep(d)
                if stop_at and time.monotonic() > stop_at:
                    return
            try:
                r = sess.deliver(users[i % len(users)], message(subjects[i]))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{subjects[i]}: {e}")
                return
            with lock:
                out[subjects[i]] = r

    t_start = time.monotonic()
    th = [threading.Thread(target=worker, args=(s,), daemon=True) for s in sessions]
    for t in th:
        t.start()
    for t in th:
        while t.is_alive():  # join with a timeout: signals stay deliverable
            t.join(0.5)
    t_end = time.monotonic()
    if errors:
        raise RuntimeError("delivery failed: " + "; ".join(errors[:3]))
    bad = {k: v[2] for k, v in out.items() if not v[2].startswith("250")}
    if bad:
        raise RuntimeError(f"{len(bad)} deliveries not accepted, e.g. {next(iter(bad.items()))}")
    return out, t_start, t_end


def wait_arrivals(rx, subjects, timeout, idle=None):
    """Waits until every subject was answered by the receiver, or timeout, or (if idle)
    `idle` seconds passed without any new request. Returns the seconds waited."""
    want = set(subjects)
    t0 = time.monotonic()
    last_n, last_change = -1, t0
    while True:
        c = rx.cmd("count")
        if c["ok"] >= len(want):  # cheap test first; then check the subjects
            got = {r[1] for r in rx.records() if r[2]}
            if want <= got:
                break
        now = time.monotonic()
        if c["n"] != last_n:
            last_n, last_change = c["n"], now
        if now - t0 > timeout or (idle and now - last_change > idle):
            break
        time.sleep(0.05)
    return time.monotonic() - t0


def arrival_stats(deliveries, recs):
    """Matches receiver records to deliveries by subject."""
    first = {}
    count = {}
    answered = set()
    acount = {}
    uid0 = 0
    for t, subj, ok, uid, _ in recs:
        if subj not in deliveries:
            continue
        count[subj] = count.get(subj, 0) + 1
        first.setdefault(subj, t)
        if ok:
            answered.add(subj)
            acount[subj] = acount.get(subj, 0) + 1
        if uid == 0 and count[subj] == 1:
            uid0 += 1
    arr = [(first[s] - deliveries[s][1]) * 1000 for s in deliveries if s in first]
    return {
        "seen": len(first),
        "arrived": len(answered),
        "missing": len(deliveries) - len(answered),
        "dup_subjects": sum(1 for c in count.values() if c > 1),  # seen more than once
        "dup_answered": sum(1 for c in acount.values() if c > 1),  # answered 204 more than once
        "requests": sum(count.values()),
        "uid0": uid0,
        "arr_p50": pct(arr, 50),
        "arr_p99": pct(arr, 99),
    }


def latency_stats(deliveries, t_start, t_end):
    lat = [(v[1] - v[0]) * 1000 for v in deliveries.values()]
    return {
        "n": len(deliveries),
        "secs": t_end - t_start,
        "mps": len(deliveries) / (t_end - t_start),
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "max": max(lat),
    }


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------


class Bench:
    def __init__(self, cfg, plugin, outdir):
        self.cfg = cfg
        self.plugin = plugin
        self.outdir = outdir
        self.users = [f"user{i + 1}" for i in range(cfg["USERS"])]
        self.perf = cfg["PERF"] and shutil.which("perf") is not None

    def setup(self, kind, tag, rx_mode):
        log(f"  load average {os.getloadavg()[0]:.2f}")
        port = free_port()
        rx = ReceiverProc(port, rx_mode)
        dc = Dovecot(kind, f"http://u:p@127.0.0.1:{port}/notify", self.users, self.plugin,
                     self.outdir, tag, self.cfg["TIMEOUT_MSECS"], self.cfg["MAIL_DEBUG"])
        sessions = [Lmtp(dc.lmtp_port) for _ in range(self.cfg["CONNS"])]
        return rx, dc, sessions

    def teardown(self, rx, dc, sessions):
        for s in sessions:
            s.close()
        dc.stop()
        STARTED.remove(dc)
        rx.stop()
        STARTED.remove(rx)

    def warmup(self, kind, tag, rx, sessions):
        """A few deliveries with the receiver answering: lmtp processes exist, libraries
        are loaded, the sender thread and its HTTP connection are up."""
        n = max(self.cfg["WARMUP"], len(sessions))
        subjects = [f"warm-{tag}-{i:05d}" for i in range(n)]
        deliver_many(sessions, self.users, subjects, deadline=time.monotonic() + 120)
        if kind != "a":
            wait_arrivals(rx, subjects, 30, idle=self.cfg["BUILTIN_IDLE"] if kind == "b" else None)
        rx.cmd("clear")

    def healthy(self, kind, run):
        cfg = self.cfg
        tag = f"healthy-{kind}-{run}"
        log(f"healthy ({kind}) {KINDS[kind]} run {run}: N={cfg['N']} over {cfg['CONNS']} connections")
        rx, dc, sessions = self.setup(kind, tag, "ok")
        try:
            self.warmup(kind, tag, rx, sessions)
            rx0 = proc_stat(rx.p.pid)
            cpu0 = dc.cpu_ticks()
            perf = None
            if self.perf and cpu0:
                pids = ",".join(map(str, cpu0))
                cmd = ["perf", "stat", "-x,", "-e", "task-clock", "-p", pids]
                if cfg["PERF_RECORD"]:
                    data = os.path.join(self.outdir, f"perf-{tag}.data")
                    cmd = ["perf", "record", "-q", "-g", "-o", data, "-p", pids]
                perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)
                time.sleep(0.3)  # let perf attach
            subjects = [f"bench-{tag}-{i:05d}" for i in range(cfg["N"])]
            d, t0, t1 = deliver_many(sessions, self.users, subjects, deadline=time.monotonic() + 300)
            waited = 0.0
            if kind != "a":
                waited = wait_arrivals(rx, subjects, 30, idle=cfg["BUILTIN_IDLE"] if kind == "b" else None)
            cpu1 = dc.cpu_ticks()
            rx1 = proc_stat(rx.p.pid)
            perf_ms = None
            if perf:
                perf.send_signal(signal.SIGINT)
                try:
                    _, err = perf.communicate(timeout=10)
                    for ln in err.splitlines():
                        f = ln.split(",")
                        if len(f) > 2 and "task-clock" in f[2]:
                            perf_ms = float(f[0])
                except (subprocess.TimeoutExpired, ValueError):
                    perf.kill()
                    perf.communicate()
            gone = [p for p in cpu0 if p not in cpu1]
            hz = os.sysconf("SC_CLK_TCK")
            ticks = sum(cpu1[p] - cpu0.get(p, 0) for p in cpu1)
            res = latency_stats(d, t0, t1)
            res.update(arrival_stats(d, rx.records()) if kind != "a" else {})
            res["cpu_us"] = ticks / hz * 1e6 / len(d)
            relay = set(dc.lmtp_pids(("ox-push-relay",)))
            res["relay_cpu_us"] = sum(cpu1[p] - cpu0.get(p, 0) for p in cpu1 if p in relay) / hz * 1e6 / len(d)
            res["perf_us"] = perf_ms * 1000 / len(d) if perf_ms is not None else None
            # The receiver shares the machine's CPUs with Dovecot: its cost per request
            # is part of what (b) and (c) pay in throughput.
            res["rx_cpu_us"] = ((rx1[2] - rx0[2]) / hz * 1e6 / len(d)
                                if kind != "a" and rx0 and rx1 else None)
            res["lmtp_procs"] = len(cpu1)
            res["lmtp_gone"] = len(gone)
            res["wait_s"] = waited
            if gone:
                log(f"  warning: {len(gone)} lmtp processes exited during the run; CPU undercounted")
            self.show(kind, res)
            return res
        finally:
            self.teardown(rx, dc, sessions)

    def hang(self, kind, run):
        cfg = self.cfg
        tag = f"hang-{kind}-{run}"
        log(f"hang ({kind}) {KINDS[kind]} run {run}: N={cfg['HANG_N']}")
        rx, dc, sessions = self.setup(kind, tag, "ok")
        try:
            self.warmup(kind, tag, rx, sessions)
            rx.cmd("mode hang")
            t_hang = time.monotonic()
            subjects = [f"bench-{tag}-{i:05d}" for i in range(cfg["HANG_N"])]
            d, t0, t1 = deliver_many(sessions, self.users, subjects, deadline=time.monotonic() + 240)
            res = latency_stats(d, t0, t1)
            if kind == "a":
                self.show(kind, res)
                return res
            left = t_hang + cfg["HANG_SECS"] - time.monotonic()
            if left > 0:
                time.sleep(left)
            seen_hanging = len({r[1] for r in rx.records() if r[1] in d})
            rx.cmd("mode ok")
            t_ok = time.monotonic()
            waited = wait_arrivals(rx, subjects, cfg["HANG_WAIT"],
                                   idle=cfg["BUILTIN_IDLE"] if kind == "b" else None)
            recs = rx.records()
            res.update(arrival_stats(d, recs))
            res["seen_hanging"] = seen_hanging
            res["hang_s"] = t_ok - t_hang
            done = [r[0] for r in recs if r[2] and r[1] in d]
            res["last_arrival_s"] = (max(done) - t_ok) if done else None
            res["wait_s"] = waited
            self.show(kind, res)
            return res
        finally:
            self.teardown(rx, dc, sessions)

    def outage(self, kind, run):
        cfg = self.cfg
        tag = f"outage-{kind}-{run}"
        secs = cfg["OUTAGE_SECS"]
        log(f"outage ({kind}) {KINDS[kind]} run {run}: receiver down {secs}s, burst {cfg['OUTAGE_N']} + 1/s")
        rx, dc, sessions = self.setup(kind, tag, "ok")
        try:
            self.warmup(kind, tag, rx, sessions)
            rx.cmd("down")
            t_down = time.monotonic()
            burst = [f"bench-{tag}-b{i:05d}" for i in range(cfg["OUTAGE_N"])]
            end = t_down + secs
            box = {}

            def deliveries():  # in a thread: the receiver must come back on time
                try:
                    d, t0, t1 = deliver_many(sessions, self.users, burst, stop_at=end, deadline=end + 150)
                    box["burst"] = latency_stats(d, t0, t1)
                    # Then one message a second (any free connection) until the end of the outage.
                    trickle_n = max(0, int(end - 1 - time.monotonic()))
                    if trickle_n:
                        start = time.monotonic() + 0.5
                        trickle = [f"bench-{tag}-t{i:05d}" for i in range(trickle_n)]
                        d2, _, _ = deliver_many(sessions, self.users, trickle,
                                                schedule=[start + i for i in range(trickle_n)],
                                                stop_at=end, deadline=end + 150)
                        d.update(d2)
                    box["d"] = d
                except Exception as e:  # noqa: BLE001 - re-raised in the main thread
                    box["error"] = e

            th = threading.Thread(target=deliveries, daemon=True)
            th.start()
            while time.monotonic() < end:
                time.sleep(0.1)
            seen_down = len(rx.records())
            rx.cmd("up")
            t_up = time.monotonic()
            until = t_up + 150
            while th.is_alive() and time.monotonic() < until:
                th.join(0.5)
            if "error" in box or "d" not in box:
                raise RuntimeError(f"outage deliveries failed: {box.get('error', 'timeout')}")
            d, burst_stats = box["d"], box["burst"]
            late = [v for v in d.values() if v[1] > t_up]
            log(f"  receiver back after {t_up - t_down:.1f}s; {len(d)} messages delivered during the outage"
                f" ({len(late)} replies only after it was back)")
            waited = wait_arrivals(rx, list(d), cfg["OUTAGE_WAIT"],
                                   idle=cfg["BUILTIN_IDLE"] if kind == "b" else None)
            recs = rx.records()
            all_lat = [(v[1] - v[0]) * 1000 for v in d.values()]
            res = dict(burst_stats)
            res.update({"n": len(d), "p50": pct(all_lat, 50), "p99": pct(all_lat, 99), "max": max(all_lat)})
            res.update(arrival_stats(d, recs))
            done = [r[0] for r in recs if r[2] and r[1] in d]
            res["last_arrival_s"] = (max(done) - t_up) if done else None
            res["seen_down"] = seen_down
            res["late_replies"] = len(late)
            res["down_s"] = t_up - t_down
            res["wait_s"] = waited
            self.show(kind, res)
            return res
        finally:
            self.teardown(rx, dc, sessions)

    @staticmethod
    def show(kind, r):
        parts = [f"{k}={fmt(v)}" for k, v in r.items()]
        log(f"  ({kind}) " + " ".join(parts))


def fmt(v, nd=None):
    if v is None:
        return "-"
    if isinstance(v, float):
        if nd is not None:
            return f"{v:.{nd}f}"
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def table(headers, rows):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)) + " |",
           "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).rjust(w[i]) for i, c in enumerate(r)) + " |")
    return "\n".join(out)


def report(cfg, results):
    out = []
    h = results.get("healthy")
    if h:
        runs = len(h["a"])
        out.append(f"### Healthy receiver: N={cfg['N']}, {cfg['CONNS']} LMTP connections, "
                   f"{cfg['USERS']} user(s), medians of {runs} runs")
        rows = []
        for k in "abc":
            rs = h[k]
            m = lambda key: med([r.get(key) for r in rs])  # noqa: E731
            arr = "-" if k == "a" else f"{fmt(m('arr_p50'), 2)} / {fmt(m('arr_p99'), 2)}"
            got = "-" if k == "a" else f"{sum(r['arrived'] for r in rs)}/{sum(r['n'] for r in rs)}"
            dup = "-" if k == "a" else str(sum(r["dup_subjects"] for r in rs))
            uid0 = "-" if k == "a" else str(sum(r["uid0"] for r in rs))
            rows.append([f"({k}) {KINDS[k]}", fmt(m("mps"), 0), fmt(m("p50"), 2), fmt(m("p99"), 2),
                         fmt(m("max"), 1), arr, got, dup, uid0, fmt(m("cpu_us"), 0),
                         "-" if k != "c" else fmt(m("relay_cpu_us"), 0), fmt(m("perf_us"), 0),
                         fmt(m("rx_cpu_us"), 0)])
        out.append(table(["driver", "msg/s", "lat p50 ms", "lat p99 ms", "lat max ms",
                          "arrival p50/p99 ms", "arrived (all runs)", "dup", "uid 0",
                          "CPU µs/msg lmtp+relay (/proc)", "of it relay", "CPU µs/msg (perf)",
                          "receiver CPU µs/req"], rows))
        ratios = []
        for k in "bc":
            per_run = lambda key: [x[k][key] / x["a"][key] if x["a"][key] else None  # noqa: E731
                                   for x in [{"a": a, k: o} for a, o in zip(h["a"], h[k])]]
            d_cpu = [o["cpu_us"] - a["cpu_us"] for a, o in zip(h["a"], h[k])]
            d_perf = [o["perf_us"] - a["perf_us"] for a, o in zip(h["a"], h[k])
                      if o.get("perf_us") is not None and a.get("perf_us") is not None]
            ratios.append([f"({k})/(a)", fmt(med(per_run("mps")), 3), fmt(med(per_run("p50")), 2),
                           fmt(med(per_run("p99")), 2),
                           fmt(med(d_cpu), 1), fmt(med(d_perf), 1) if d_perf else "-",
                           " ".join(fmt(x, 0) for x in d_cpu)])
        out.append("")
        out.append("Per-round ratios against (a) in the same round (median of rounds); CPU as a difference:")
        out.append(table(["", "msg/s ratio", "p50 ratio", "p99 ratio", "CPU Δ µs/msg (/proc)",
                          "CPU Δ µs/msg (perf)", "CPU Δ per round (/proc)"], ratios))
        out.append("")
    hg = results.get("hang")
    if hg:
        runs = len(hg["b"])
        out.append(f"### Hanging receiver: N={cfg['HANG_N']}, {cfg['CONNS']} connections, medians of {runs} runs; "
                   f"the receiver hangs ≥ {cfg['HANG_SECS']} s, then answers again (wait ≤ {cfg['HANG_WAIT']} s); "
                   f"(a) = no push, same N, for reference")
        rows = []
        for k in "abc":
            rs = hg[k]
            m = lambda key: med([r.get(key) for r in rs])  # noqa: E731
            if k == "a":
                rows.append([f"({k}) {KINDS[k]}", fmt(m("mps"), 1), fmt(m("p50"), 2), fmt(m("p99"), 2),
                             fmt(m("max"), 1), "-", "-", "-", "-"])
                continue
            rows.append([f"({k}) {KINDS[k]}", fmt(m("mps"), 1), fmt(m("p50"), 2), fmt(m("p99"), 2),
                         fmt(m("max"), 1),
                         f"{sum(r['arrived'] for r in rs)}/{sum(r['n'] for r in rs)}",
                         f'{sum(r["seen_hanging"] for r in rs)}',
                         f'{sum(r["dup_subjects"] for r in rs)} / {sum(r["dup_answered"] for r in rs)}',
                         fmt(m("last_arrival_s"), 1)])
        out.append(table(["driver", "msg/s", "lat p50 ms", "lat p99 ms", "lat max ms",
                          "arrived after recovery (all runs)", "read while hanging",
                          "dup: seen 2+ / answered 2+", "last arrival s after recovery"],
                         rows))
        out.append("")
    og = results.get("outage")
    if og:
        runs = len(og["b"])
        # How many messages a driver got delivered during the outage (a driver that blocks
        # deliveries gets fewer through).
        counts = ", ".join(f"({k}) {og[k][0]['n']}" for k in "bc")
        out.append(f"### Receiver down (port closed) for {cfg['OUTAGE_SECS']} s: burst of {cfg['OUTAGE_N']} "
                   f"then 1 msg/s (messages delivered during the outage in run 1: {counts}), then back up "
                   f"(wait ≤ {cfg['OUTAGE_WAIT']} s); {runs} run(s)")
        rows = []
        for k in "bc":
            rs = og[k]
            m = lambda key: med([r.get(key) for r in rs])  # noqa: E731
            n = sum(r["n"] for r in rs)
            arrived = sum(r["arrived"] for r in rs)
            dups = sum(r["dup_subjects"] for r in rs)
            uid0 = sum(r["uid0"] for r in rs)
            rows.append([f"({k}) {KINDS[k]}", fmt(m("mps")), fmt(m("p50"), 2), fmt(m("p99"), 2),
                         fmt(m("max"), 1), f"{arrived}/{n} ({100.0 * arrived / n:.1f}%)",
                         f"{dups} ({100.0 * dups / n:.2f}%)", fmt(m("last_arrival_s"), 1), str(uid0)])
        out.append(table(["driver", "burst msg/s", "lat p50 ms", "lat p99 ms", "lat max ms", "arrived",
                          "duplicates", "last arrival s after back", "uid 0"], rows))
        out.append("")
    return "\n".join(out)


def targets(cfg, results):
    out = ["### Targets (issues 3 and 9) for (c)"]
    h, hg, og = results.get("healthy"), results.get("hang"), results.get("outage")

    def line(ok, text):
        out.append(f"- [{'met' if ok else 'MISSED'}] {text}")

    if h:
        ratio = med([c["mps"] / a["mps"] for a, c in zip(h["a"], h["c"])])
        line(ratio >= 0.95, f"throughput ≥ 0.95 × no push: {ratio:.3f}")
        p50 = med([r["arr_p50"] for r in h["c"]])
        line(p50 is not None and p50 <= 5, f"arrival ≤ 5 ms p50 after the LMTP reply: {fmt(p50, 2)} ms")
        dcpu = med([c["cpu_us"] - a["cpu_us"] for a, c in zip(h["a"], h["c"])])
        line(dcpu <= 30, f"CPU per notification ≤ 30 µs: (c)-(a) = {dcpu:.1f} µs (/proc utime+stime)")
    if hg:
        p99a = med([r["p99"] for r in hg["a"]])
        p99c = med([r["p99"] for r in hg["c"]])
        line(p99c - p99a <= 5, f"hanging receiver p99 within 5 ms of no push (same N): {p99c:.2f} vs "
                               f"{p99a:.2f} ms (Δ {p99c - p99a:+.2f} ms)")
        if h:
            p99h = med([r["p99"] for r in h["a"]])
            out.append(f"  (against (a) healthy at N={cfg['N']}: p99 {p99h:.2f} ms, Δ {p99c - p99h:+.2f} ms)")
    if og:
        n = sum(r["n"] for r in og["c"])
        arrived = sum(r["arrived"] for r in og["c"])
        dups = sum(r["dup_subjects"] for r in og["c"])
        line(arrived == n, f"outage: 100% arrive: {arrived}/{n}")
        line(dups <= 0.01 * n, f"outage: duplicates ≤ 1%: {dups}/{n}")
    return "\n".join(out)


def rotated(kinds, run):
    """The drivers in another order each round (abc, bca, cab, ...): no driver always
    runs first on a quiet machine or right after a particular other one."""
    i = (run - 1) % len(kinds)
    return kinds[i:] + kinds[:i]


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--receiver":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
        receiver_main(int(sys.argv[2]), sys.argv[3])
        return
    cfg = dict(DEFAULTS)
    plugin = None
    outdir = None
    relay = None
    dovecot_config = settings_module = None
    for k in cfg:
        if k in os.environ:
            cfg[k] = type(DEFAULTS[k])(os.environ[k])
    for a in sys.argv[1:]:
        k, _, v = a.lstrip("-").partition("=")
        if k == "plugin":
            plugin = v
        elif k == "relay":
            relay = v
        elif k == "out":
            outdir = v
        elif k == "dovecot-config":
            dovecot_config = v
        elif k == "settings-module":
            settings_module = v
        elif k.upper() in cfg:
            cfg[k.upper()] = type(DEFAULTS[k.upper()])(v)
        else:
            sys.exit(f"unknown argument {a}")
    global MAIL_LOCATION, OX_EXTRA, RELAY_EXTRA, RELAY_BIN
    RELAY_BIN = relay or RELAY_BIN
    MAIL_LOCATION = cfg["MAIL_LOCATION"]
    OX_EXTRA = cfg["OX_EXTRA"]
    RELAY_EXTRA = cfg["RELAY_EXTRA"]
    if os.geteuid() != 0:
        sys.exit("run as root (Dovecot's mail processes run as uid 5000+)")
    if not plugin or not os.path.exists(plugin):
        sys.exit("--plugin=PATH to libox_push.so is required")
    if not RELAY_BIN or not os.path.exists(RELAY_BIN):
        sys.exit("--relay=PATH to ox-push-relay is required")
    use_dovecot(dovecot_config, settings_module)
    for user in ("ox-push", "dovecot", "dovenull"):
        user_ids(user)
    outdir = outdir or tempfile.mkdtemp(prefix="delivery-bench-")
    os.makedirs(outdir, exist_ok=True)

    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    bench = Bench(cfg, plugin, outdir)
    scen = [s.strip() for s in cfg["SCENARIOS"].split(",") if s.strip()]
    results = {}
    t_all = time.monotonic()
    log(f"config: {json.dumps(cfg)}; logs in {outdir}")
    if DC_ROOT:
        log(f"Dovecot {'2.4' if DC_V24 else '2.3'} in the root {DC_ROOT}")
    try:
        if "healthy" in scen:
            results["healthy"] = {k: [] for k in "abc"}
            for run in range(1, cfg["RUNS"] + 1):
                for k in rotated("abc", run):
                    results["healthy"][k].append(bench.healthy(k, run))
        if "hang" in scen:
            results["hang"] = {k: [] for k in "abc"}
            for run in range(1, cfg["HANG_RUNS"] + 1):
                for k in rotated("abc", run):
                    results["hang"][k].append(bench.hang(k, run))
        if "outage" in scen:
            results["outage"] = {k: [] for k in "bc"}
            for run in range(1, cfg["OUTAGE_RUNS"] + 1):
                for k in "bc":
                    results["outage"][k].append(bench.outage(k, run))
    finally:
        stop_all()
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"config": cfg, "dovecot": {"root": DC_ROOT, "v24": DC_V24},
                       "results": results}, f, indent=1)
    print()
    print(report(cfg, results))
    print(targets(cfg, results))
    print()
    print(f"Total {time.monotonic() - t_all:.0f} s. Raw results and Dovecot logs: {outdir}")


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
