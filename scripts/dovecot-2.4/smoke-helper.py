#!/usr/bin/env python3
"""Host-side helpers of scripts/dovecot-2.4-smoke.sh (loopback only).

  ports N                 print N free TCP ports on 127.0.0.1
  capture PORT FILE       HTTP capture: append every request, byte for byte
                          (request line, headers, body), to FILE; answer 204
  wait-greeting PORT SECS wait until a server on PORT sends its greeting line
  lmtp PORT RCPT FILE     deliver FILE by LMTP to RCPT; print the reply
  wait-requests FILE N SECS  wait until FILE holds N requests
  unix PATH               connect to a unix socket and print what it sends
  wait-log FILE TEXT SECS wait until FILE contains TEXT
"""
import socket
import smtplib
import socketserver
import sys
import time


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


class Capture(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline(65536)
                if not line:
                    return
                head += line
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = self.rfile.read(length)
            with open(self.server.out, "ab") as f:
                f.write(b"=== request\n" + head + body + b"\n")
            self.wfile.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            self.wfile.flush()


def capture(port, out):
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Capture)
    server.daemon_threads = True
    server.out = out
    open(out, "ab").close()
    server.serve_forever()


def wait_greeting(port, secs):
    until = time.time() + secs
    while time.time() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"nothing answers on 127.0.0.1:{port} after {secs} s")


def lmtp(port, rcpt, path):
    with open(path, "rb") as f:
        msg = f.read()
    with smtplib.LMTP("127.0.0.1", port) as s:
        s.sendmail("sender@example.org", [rcpt], msg)
    print(f"LMTP delivery to {rcpt}: accepted")


def wait_requests(path, n, secs):
    until = time.time() + secs
    while time.time() < until:
        with open(path, "rb") as f:
            if f.read().count(b"=== request\n") >= n:
                return
        time.sleep(0.05)
    sys.exit(f"fewer than {n} requests captured after {secs} s")


def unix(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        print(s.recv(512).decode().strip())


def wait_log(path, text, secs):
    until = time.time() + secs
    while time.time() < until:
        with open(path, "rb") as f:
            if text.encode() in f.read():
                return
        time.sleep(0.05)
    sys.exit(f"{text!r} not in {path} after {secs} s")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        ports(int(args[0]))
    elif cmd == "capture":
        capture(int(args[0]), args[1])
    elif cmd == "wait-greeting":
        wait_greeting(int(args[0]), float(args[1]))
    elif cmd == "lmtp":
        lmtp(int(args[0]), args[1], args[2])
    elif cmd == "wait-requests":
        wait_requests(args[0], int(args[1]), float(args[2]))
    elif cmd == "wait-log":
        wait_log(args[0], args[1], float(args[2]))
    elif cmd == "unix":
        unix(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
