#!/usr/bin/env python3
"""Benchmark of one ox-push-relay (issue 9): notifications/s it sustains into a fast
loopback receiver, its CPU per notification, the receiver's, the connections it opens,
and its RSS with SPOOLED notifications held while the receiver is down.

Started by bench/relay.sh (which builds the release binaries). Run as root: the relay is
started as root with Dovecot's RESTRICT_* environment and drops to the user ox-push.
Only 127.0.0.1. Every process started here is stopped on exit.
"""

import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CFG = {
    "N": 100000,  # notifications per throughput run
    "CLIENTS": 8,  # client connections handing them in (mail processes)
    "RUNS": 3,
    "CONCURRENCY": 4,  # relay --concurrency (connections per endpoint)
    "SPOOLED": 100000,  # notifications held for the RSS measurement
    "RELAY_EXTRA": "",  # more relay options, e.g. --fsync
}
for k in CFG:
    if k in os.environ:
        CFG[k] = type(CFG[k])(os.environ[k])
BIN = sys.argv[1]  # directory with ox-push-relay and the examples
HZ = os.sysconf("SC_CLK_TCK")
PROCS = []


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / HZ


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Receiver:
    def __init__(self):
        self.port = free_port()
        self.p = subprocess.Popen([os.path.join(BIN, "examples", "bench_receiver"), str(self.port), "ok"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        PROCS.append(self.p)
        assert json.loads(self.p.stdout.readline())["ready"]

    def cmd(self, c):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def stop(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        self.p.wait(timeout=10)


class Relay:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="relay-bench-")
        os.chmod(self.dir, 0o755)
        u = pwd.getpwnam("ox-push")
        self.spool = os.path.join(self.dir, "spool")
        os.mkdir(self.spool, 0o700)
        os.chown(self.spool, u.pw_uid, u.pw_gid)
        run = os.path.join(self.dir, "run")
        os.mkdir(run)
        os.chown(run, u.pw_uid, u.pw_gid)
        self.socket = os.path.join(run, "ox-push")
        env = dict(os.environ, RESTRICT_SETUID=str(u.pw_uid), RESTRICT_SETGID=str(u.pw_gid))
        self.log = open(os.path.join(self.dir, "relay.log"), "w")
        self.p = subprocess.Popen([os.path.join(BIN, "ox-push-relay"), "--listen", self.socket, "--spool", self.spool,
                                   "--socket-mode", "0666", "--concurrency", str(CFG["CONCURRENCY"])]
                                  + CFG["RELAY_EXTRA"].split(), env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        PROCS.append(self.p)
        for _ in range(200):
            if os.path.exists(self.socket):
                break
            time.sleep(0.02)
        time.sleep(0.1)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def load(relay, url, n, no_wait=False):
    cmd = [os.path.join(BIN, "examples", "relay_load"), relay.socket, url, str(n), str(CFG["CLIENTS"])]
    if no_wait:
        cmd.append("--no-wait")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"relay_load failed: {out.stderr}")
    return json.loads(out.stdout)


def throughput_run(i):
    rx, relay = Receiver(), Relay()
    try:
        url = f"http://127.0.0.1:{rx.port}/n"
        load(relay, url, 2000)  # warm-up: connections, allocator
        c0, r0 = cpu(relay.p.pid), cpu(rx.p.pid)
        res = load(relay, url, CFG["N"])
        c1, r1 = cpu(relay.p.pid), cpu(rx.p.pid)
        n = CFG["N"]
        row = {
            "rate": n / res["sent_secs"],
            "accept_rate": n / res["accept_secs"],
            "relay_us": (c1 - c0) * 1e6 / n,
            "rx_us": (r1 - r0) * 1e6 / n,
            "conns": rx.cmd("count")["conns"],
            "rss_mb": status(relay.p.pid, "VmHWM") / 1024,
        }
        log(f"run {i}: {row}")
        return row
    finally:
        relay.stop()
        rx.stop()


def spooled_run():
    rx, relay = Receiver(), Relay()
    try:
        rx.cmd("down")
        url = f"http://127.0.0.1:{rx.port}/n"
        before = status(relay.p.pid, "VmRSS")
        t0 = time.monotonic()
        load(relay, url, CFG["SPOOLED"], no_wait=True)
        took = time.monotonic() - t0
        time.sleep(1)
        disk = sum(os.path.getsize(os.path.join(relay.spool, f)) for f in os.listdir(relay.spool))
        return {"rss_before_mb": before / 1024, "rss_mb": status(relay.p.pid, "VmRSS") / 1024,
                "hwm_mb": status(relay.p.pid, "VmHWM") / 1024, "disk_mb": disk / 2**20,
                "accept_rate": CFG["SPOOLED"] / took}
    finally:
        relay.stop()
        rx.stop()


def main():
    def on_signal(signum, _frame):  # bench/relay.sh's timeout sends SIGTERM: stop what runs
        raise SystemExit(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rows = []
    try:
        for i in range(CFG["RUNS"]):
            rows.append(throughput_run(i + 1))
        sp = spooled_run()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"### One relay into a fast loopback receiver: N={CFG['N']}, {CFG['CLIENTS']} client connections, "
          f"--concurrency {CFG['CONCURRENCY']}, medians of {CFG['RUNS']} runs")
    print("| notifications/s (sent) | accepted/s | relay CPU µs/notification | receiver CPU µs/request "
          "| connections to the receiver | relay peak RSS MB |")
    print("|---|---|---|---|---|---|")
    print(f"| {med('rate'):.0f} | {med('accept_rate'):.0f} | {med('relay_us'):.1f} | {med('rx_us'):.1f} "
          f"| {max(r['conns'] for r in rows)} | {med('rss_mb'):.1f} |")
    print()
    print(f"### {CFG['SPOOLED']} notifications spooled (receiver down)")
    print("| relay RSS before MB | relay RSS after MB | peak MB | journal on disk MB | accepted/s |")
    print("|---|---|---|---|---|")
    print(f"| {sp['rss_before_mb']:.1f} | {sp['rss_mb']:.1f} | {sp['hwm_mb']:.1f} | {sp['disk_mb']:.1f} "
          f"| {sp['accept_rate']:.0f} |")
    print()
    ok = med("rate") >= 20000
    print(f"- [{'met' if ok else 'MISSED'}] one relay sustains ≥ 20,000 notifications/s: {med('rate'):.0f}")
    print(f"- [{'met' if max(r['conns'] for r in rows) <= CFG['CONCURRENCY'] else 'MISSED'}] "
          f"connections to the middleware ≤ the pool size ({CFG['CONCURRENCY']})")


if __name__ == "__main__":
    main()
