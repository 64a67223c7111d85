#!/usr/bin/python3
"""Probes for the testbed: does an SMTP server greet, what does it offer?

Usage: tbprobe.py banner ADDR PORT [TIMEOUT]
       tbprobe.py ehlo ADDR PORT [TIMEOUT]
       tbprobe.py clamd SOCKET|ADDR PORT [TIMEOUT]
       tbprobe.py rspamd SOCKET|ADDR PORT [TIMEOUT]

banner connects to ADDR:PORT (IPv4 or IPv6 literal), reads the greeting,
answers QUIT and exits 0 if the greeting starts with 220; prints the
greeting.  ehlo also sends EHLO and prints the EHLO keywords, one a line
(upper case, without parameters); exits 0 on a 250 reply.  Both exit 1 on
any failure.  clamd sends zPING and wants PONG; rspamd asks GET /ping
and wants a 200 (SOCKET: a path, "-" for PORT); both exit 0 only then.
Run them inside a namespace with `ip netns exec`.
"""

import socket
import sys


def banner(addr, port, timeout):
    with socket.create_connection((addr, port), timeout=timeout) as s:
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(512)
            if not chunk:
                break
            data += chunk
        line = data.decode("ascii", "replace").strip()
        if line.startswith("220"):
            s.sendall(b"QUIT\r\n")
            try:
                s.recv(512)
            except OSError:
                pass
        return line


def read_reply(s):
    """One SMTP reply: its lines, CRLF stripped."""
    data = b""
    while True:
        lines = data.split(b"\r\n")
        for line in lines[:-1]:
            if len(line) < 4 or line[3:4] != b"-":
                return [l.decode("ascii", "replace") for l in lines[:-1]]
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("connection closed")
        data += chunk


def ehlo(addr, port, timeout):
    with socket.create_connection((addr, port), timeout=timeout) as s:
        greeting = read_reply(s)
        if not greeting[0].startswith("220"):
            raise OSError(f"greeting: {greeting[0]}")
        s.sendall(b"EHLO tbprobe.test\r\n")
        reply = read_reply(s)
        s.sendall(b"QUIT\r\n")
        if not reply[0].startswith("250"):
            raise OSError(f"EHLO: {reply[0]}")
        return [l[4:].split(" ")[0].upper() for l in reply[1:]]


def scanner_connect(where, port, timeout):
    if where.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(where)
        return s
    return socket.create_connection((where, int(port)), timeout=timeout)


def read_all(s, done):
    data = b""
    while not done(data):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def clamd_ping(where, port, timeout):
    with scanner_connect(where, port, timeout) as s:
        s.sendall(b"zPING\0")
        return read_all(s, lambda d: b"\0" in d) == b"PONG\0"


def rspamd_ping(where, port, timeout):
    with scanner_connect(where, port, timeout) as s:
        s.sendall(b"GET /ping HTTP/1.0\r\nHost: rspamd\r\n\r\n")
        data = read_all(s, lambda d: False)
        return data.startswith(b"HTTP/1.") and data[8:12] == b" 200"


def main(argv):
    if len(argv) >= 4 and argv[1] in ("clamd", "rspamd"):
        timeout = float(argv[4]) if len(argv) > 4 else 2.0
        probe = clamd_ping if argv[1] == "clamd" else rspamd_ping
        try:
            ok = probe(argv[2], argv[3], timeout)
        except OSError as e:
            print(f"{argv[1]} {argv[2]} {argv[3]}: {e}", file=sys.stderr)
            return 1
        return 0 if ok else 1
    if len(argv) >= 4 and argv[1] == "ehlo":
        timeout = float(argv[4]) if len(argv) > 4 else 2.0
        try:
            keywords = ehlo(argv[2], int(argv[3]), timeout)
        except OSError as e:
            print(f"{argv[2]} port {argv[3]}: {e}", file=sys.stderr)
            return 1
        print("\n".join(keywords))
        return 0
    if len(argv) < 4 or argv[1] != "banner":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    timeout = float(argv[4]) if len(argv) > 4 else 2.0
    try:
        line = banner(argv[2], int(argv[3]), timeout)
    except OSError as e:
        print(f"{argv[2]} port {argv[3]}: {e}", file=sys.stderr)
        return 1
    print(line)
    return 0 if line.startswith("220") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
