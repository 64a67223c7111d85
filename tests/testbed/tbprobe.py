#!/usr/bin/python3
"""Readiness probe for the testbed: does an SMTP server greet?

Usage: tbprobe.py banner ADDR PORT [TIMEOUT]

Connects to ADDR:PORT (IPv4 or IPv6 literal), reads the greeting, answers
QUIT and exits 0 if the greeting starts with 220; prints the greeting.
Exits 1 on any failure.  Run it inside a namespace with `ip netns exec`.
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


def main(argv):
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
