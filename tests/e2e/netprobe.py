#!/usr/bin/python3
"""Raw TCP probe for the end-to-end tests, run inside a testbed namespace.

Usage: netprobe.py ADDR PORT [--connect-timeout S] [--read-timeout S]
                   [--lport N] [--send TEXT]

Connects to ADDR:PORT, optionally sends TEXT (with \\r\\n escapes honoured)
after the first line from the server, then reads until the peer closes,
resets or --read-timeout passes.  Prints one JSON object:

  connect       "ok" | "refused" | "timeout" | "unreachable" | "error"
  errno         errno name when connect failed
  connect_secs  time the connect attempt took
  data          everything received (latin-1 decoded)
  first_line_secs  time from connect to the first complete line, or null
  end           "eof" | "reset" | "timeout" | "error" (how reading ended)
  end_secs      time from connect to that end

The tests judge the result; this script always exits 0 unless misused.
"""

import argparse
import errno
import json
import socket
import sys
import time


def connect(addr, port, timeout, lport):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    if lport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", lport))
    s.settimeout(timeout)
    s.connect((addr, port))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--read-timeout", type=float, default=5.0)
    ap.add_argument("--lport", type=int, default=0)
    ap.add_argument("--send", default=None)
    a = ap.parse_args()

    res = {"connect": None, "errno": None, "connect_secs": None, "data": "",
           "first_line_secs": None, "end": None, "end_secs": None}
    t0 = time.monotonic()
    try:
        s = connect(a.addr, a.port, a.connect_timeout, a.lport)
        res["connect"] = "ok"
    except ConnectionRefusedError:
        res["connect"], res["errno"] = "refused", "ECONNREFUSED"
    except socket.timeout:
        res["connect"] = "timeout"
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        unreach = (errno.EHOSTUNREACH, errno.ENETUNREACH)
        res["connect"] = "unreachable" if e.errno in unreach else "error"
        res["errno"] = name
    res["connect_secs"] = round(time.monotonic() - t0, 3)
    if res["connect"] != "ok":
        print(json.dumps(res))
        return 0

    t1 = time.monotonic()
    deadline = t1 + a.read_timeout
    data = b""
    sent = a.send is None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            res["end"] = "timeout"
            break
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            res["end"] = "timeout"
            break
        except ConnectionResetError:
            res["end"] = "reset"
            break
        except OSError as e:
            res["end"] = "error"
            res["errno"] = errno.errorcode.get(e.errno, str(e.errno))
            break
        if not chunk:
            res["end"] = "eof"
            break
        data += chunk
        if b"\n" in data and res["first_line_secs"] is None:
            res["first_line_secs"] = round(time.monotonic() - t1, 3)
        if not sent and b"\n" in data:
            text = a.send.encode().decode("unicode_escape").encode("latin-1")
            try:
                s.sendall(text)
            except OSError:
                pass
            sent = True
    res["end_secs"] = round(time.monotonic() - t1, 3)
    res["data"] = data.decode("latin-1")
    s.close()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
