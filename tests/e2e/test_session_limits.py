"""Concurrent-session caps count every worker's sessions.

Proves that `max-sessions-per-client` and `max-sessions` are enforced
across all worker processes (the gateway runs two workers in the testbed):
connections beyond the cap are answered `421 4.7.0` at once and closed,
while the ones within the cap get the real server's greeting; closing the
held sessions frees their places again.
"""

import socket
import subprocess
import time

import pytest

TESTBED = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "testbed" / "testbed")

HOLD_SCRIPT = r"""
import socket, sys, time
addr, n = sys.argv[1], int(sys.argv[2])
socks, greetings = [], []
for _ in range(n):
    s = socket.create_connection((addr, 25), timeout=10)
    s.settimeout(10)
    greetings.append(s.recv(200).decode(errors="replace").split("\r\n")[0])
    socks.append(s)
for g in greetings:
    print(g, flush=True)
sys.stdin.readline()          # hold the sessions until told to go
"""


def hold(testbed, host, addr, n):
    p = subprocess.Popen(
        [TESTBED, "exec", host, "/usr/bin/python3", "-c", HOLD_SCRIPT, addr, str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = [p.stdout.readline().strip() for _ in range(n)]
    return p, lines


def release(p):
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(timeout=10)


@pytest.mark.parametrize("key,limit", [("max-sessions-per-client", 3), ("max-sessions", 4)])
def test_cap_across_workers(testbed, gateway_config, key, limit):
    gateway_config.set("global", key, str(limit))
    p, greetings = hold(testbed, "int-client", "198.51.100.25", limit)
    try:
        assert all(g.startswith("220") for g in greetings), greetings
        r = testbed.probe("int-client", "198.51.100.25", 25, read_timeout=5)
        assert r["connect"] == "ok", r
        assert r["data"].startswith("421 4.7.0"), r
        assert r["end"] == "eof", r
        if key == "max-sessions":
            # the total cap holds for another client too
            r = testbed.probe("int-client", "2001:db8:2::25", 25, read_timeout=5)
            assert r["data"].startswith("421 4.7.0"), r
    finally:
        release(p)
    # the places are free again once the held sessions end
    deadline = time.time() + 10
    while True:
        r = testbed.probe("int-client", "198.51.100.25", 25, read_timeout=1)
        if r["data"].startswith("220") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert r["data"].startswith("220"), r
