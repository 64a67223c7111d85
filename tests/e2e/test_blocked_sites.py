"""The blocked sites list: a blocked client's next SMTP SYN is refused by
the kernel, until its time runs out.

1. An admin blocks ext-client (`smtpgwctl blocked add --timeout 10`,
   IPv4; then IPv6): its connections to int-mx on 25 and 465 are refused
   at once (TCP reset, ECONNREFUSED within 1 s); the SYNs never reach
   the classifier (the ruleset's `intercepted` counter stays, `blocked`
   rises by one per SYN) and the gateway logs no session for it.  Its
   other address family and int-client are served as before (a gateway
   session each).  `blocked list` shows the address, added by an admin.
   Once the time has run out the address is gone from the list and the
   client is served again.
2. The daemon's path: tests/e2e/blocked_drive - the master's and a
   worker's side of daemon/blocked.c, with the real blocker process
   (nobody + CAP_NET_ADMIN, libnftables) - runs in the gateway's
   namespace with the gateway's configuration plus
   blocked-sites-exceptions and blocked-sites-rate.  A worker's
   blocked_request() for ext-client: the blocker logs
   `blocked add addr=... seconds=... reason=... sid=...`, ext-client is
   refused as in 1, `blocked list` names smtpgw, the reason and the
   session; after the time it is served again.  An address inside the
   exceptions is refused (`blocked refused ... reason=exception`) and
   never reaches the set; loopback is refused by the worker itself; a
   burst of 30 addresses at blocked-sites-rate 5 adds at most 6 and
   refuses the rest with `reason=rate-limit`; after a reload (the blocker
   restarts with new exceptions) the new exception holds and the old
   settings' requests were all carried out.
3. Reloads keep the list: after `smtpgwctl apply` of a change that reloads
   the ruleset (blocked-sites-max; the daemon's blocker restarts with the
   new exceptions), after `testbed restart-gateway`
   (smtpgw-nft load, smtpgw restarted) and after a load that makes the sets
   again (SMTPGW_NFT_RESIZE=always, the path of kernels that do not resize
   a set in place), a blocked address is still on the list with no more
   time than it had, and still refused.

netns gateway only: blocked_drive runs in the gateway's namespace.
"""

import os
import re
import time
from pathlib import Path

import pytest

from conftest import ADDR, REPO, ini_set, log_fields, random_lport, session_lines
from gwctl import gwctl  # noqa: F401 (fixture)

BUILD = Path(os.environ.get("SMTPGW_BUILDDIR", REPO / "build"))
DRIVE = BUILD / "tests" / "e2e" / "blocked_drive"
CLIENT = "ext-client"
SERVER = "int-mx"


@pytest.fixture(scope="module", autouse=True)
def netns_only(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("blocked_drive runs in the gateway's namespace (netns gateway only)")


@pytest.fixture
def clean_list(testbed):
    """Nothing of ours stays on the list after a test."""
    yield
    for line in listing(testbed):
        testbed.exec("gw", "smtpgw-nft", "blocked", "del", line[0])


def listing(tb):
    """smtpgw-nft's list: [addr, left, timeout, comment] per address."""
    r = tb.exec("gw", "smtpgw-nft", "blocked", "list")
    assert r.returncode == 0, r.stderr
    return [l.split("\t") for l in r.stdout.splitlines() if l]


def on_list(tb, addr):
    for line in listing(tb):
        if line[0] == addr:
            return line
    return None


def counters(tb):
    r = tb.exec("gw", "smtpgw-nft", "counters")
    assert r.returncode == 0, r.stderr
    return {k: int(v) for k, v in (l.split() for l in r.stdout.splitlines())}


def assert_refused(tb, family, ports=(25, 465)):
    """ext-client's SYNs to int-mx are reset by the blocked sites rule:
    refused within 1 s, counted as blocked, never intercepted, no session."""
    addr = ADDR[CLIENT][family]
    off = tb.log_offset()
    c0 = counters(tb)
    for port in ports:
        r = tb.probe(CLIENT, ADDR[SERVER][family], port, connect_timeout=2.0,
                     read_timeout=0.5, lport=random_lport())
        assert r["connect"] == "refused", f"{addr} -> port {port} not refused: {r}"
        assert r["connect_secs"] < 1.0, r
    c1 = counters(tb)
    # One SYN each: a reset connect is not retried.
    assert c1["blocked"] - c0["blocked"] == len(ports), (c0, c1)
    time.sleep(0.3)
    sessions = session_lines(tb.log_since(off))
    for _, f in sessions:
        assert not f["client"].startswith((addr + ":", f"[{addr}]:")), f
    # Never classified: whatever was intercepted meanwhile (a Postfix
    # retrying its queue) is someone else's session.
    assert c1["intercepted"] - c0["intercepted"] <= len(sessions), (c0, c1, sessions)


def assert_served(tb, client, server, family, port=25):
    """A connection from client reaches the gateway: the gateway logs a
    session for it (on 25 the greeting comes through; 465 is TLS)."""
    off = tb.log_offset()
    lport = random_lport()
    r = tb.probe(client, ADDR[server][family], port, connect_timeout=3.0, read_timeout=1.0,
                 lport=lport)
    assert r["connect"] == "ok", r
    assert port != 25 or r["data"].startswith("220"), r
    tb.wait_for_session(off, ADDR[client][family], lport)


def wait_gone(tb, addr, timeout):
    deadline = time.monotonic() + timeout
    while on_list(tb, addr) is not None:
        assert time.monotonic() < deadline, f"{addr} still on the list: {listing(tb)}"
        time.sleep(0.2)


# ---------------------------------------------------------------- 1. admin

@pytest.mark.parametrize("family", [4, 6])
def test_admin_block_until_timeout(testbed, gwctl, clean_list, family):
    addr = ADDR[CLIENT][family]
    other = 6 if family == 4 else 4
    assert_served(testbed, CLIENT, SERVER, family)

    r = gwctl.ok("blocked", "add", addr, "--timeout", "10")
    assert f"blocked {addr} for 10s" in r.stdout
    t_added = time.monotonic()
    entry = on_list(testbed, addr)
    assert entry is not None and entry[2] == "10" and entry[3] == "smtpgwctl", entry

    assert_refused(testbed, family)
    # Everyone else as before.
    assert_served(testbed, CLIENT, SERVER, other)
    assert_served(testbed, "int-client", "ext-mx", family)

    out = gwctl.ok("blocked", "list").stdout
    row = next(l for l in out.splitlines() if l.startswith(addr + " "))
    assert row.split()[-3:] == ["admin", "-", "-"], out
    assert re.search(r"SYNs refused since the ruleset was loaded: \d+", out), out

    # The kernel drops the element when its time is up; then it is served.
    wait_gone(testbed, addr, 15.0)
    assert time.monotonic() - t_added >= 9.0, "gone before its time"
    assert "no address is blocked" in gwctl.ok("blocked", "list").stdout
    assert_served(testbed, CLIENT, SERVER, family)
    assert_served(testbed, CLIENT, SERVER, family, port=465)


# ---------------------------------------------------------------- 2. daemon

def drive_conf(tb, name, exceptions):
    """The gateway's configuration plus the blocked sites settings."""
    text = tb.path("gw-conf").read_text()
    text = ini_set(text, "global", "blocked-sites-exceptions", exceptions)
    text = ini_set(text, "global", "blocked-sites-rate", "5")
    path = tb.path("state") / name
    path.write_text(text)
    return path


def drive(tb, conf, *steps):
    assert DRIVE.exists(), f"{DRIVE} is not built"
    r = tb.exec("gw", str(DRIVE), str(conf), *steps, timeout=60)
    assert r.returncode == 0, f"blocked_drive failed:\n{r.stdout}{r.stderr}"
    return r.stdout, r.stderr


def blocker_lines(log, kind):
    """(fields) of the blocker's `blocked add` / `blocked refused` lines."""
    return [log_fields(l) for l in log.splitlines() if f"blocked: blocked {kind} " in l]


def test_daemon_block_request(testbed, clean_list):
    v4 = ADDR[CLIENT][4]
    mx = ADDR["ext-mx"][4]
    conf = drive_conf(testbed, "blocked-drive.conf", mx)
    sid = "4f2a91c0e1d3"

    out, log = drive(testbed, conf, f"{v4},10,e2e-rule,{sid}", f"{mx},10,e2e-rule,1",
                     "127.0.0.1,10,e2e-rule,2")
    t_added = time.monotonic()
    assert f"request {v4} rc=0" in out and f"request {mx} rc=0" in out, out
    assert "request 127.0.0.1 rc=-1" in out, out
    assert "worker sent=2 dropped=1" in out, out
    assert "blocked request refused reason=address addr=127.0.0.1" in log, log

    added = blocker_lines(log, "add")
    assert added == [{"addr": v4, "seconds": "10", "reason": "e2e-rule", "sid": sid}], log
    refused = blocker_lines(log, "refused")
    assert [(f["addr"], f["reason"]) for f in refused] == [(mx, "exception")], log
    assert on_list(testbed, mx) is None

    entry = on_list(testbed, v4)
    assert entry is not None and entry[2] == "10", entry
    assert entry[3] == f"smtpgw reason=e2e-rule sid={sid}", entry
    r = testbed.exec("gw", "smtpgwctl", "blocked", "list")
    row = next(l for l in r.stdout.splitlines() if l.startswith(v4 + " "))
    assert row.split()[-3:] == ["smtpgw", "e2e-rule", sid], r.stdout

    assert_refused(testbed, 4)
    assert_served(testbed, CLIENT, SERVER, 6)
    assert_served(testbed, "ext-mx", SERVER, 4)          # the exception

    wait_gone(testbed, v4, 15.0)
    assert time.monotonic() - t_added >= 9.0, "gone before its time"
    assert_served(testbed, CLIENT, SERVER, 4)


def test_daemon_rate_limit_and_reload(testbed, clean_list):
    conf = drive_conf(testbed, "blocked-drive.conf", "none")
    conf2 = drive_conf(testbed, "blocked-drive2.conf", "203.0.113.50")

    out, log = drive(testbed, conf, "burst=30,203.0.113.", f"reload={conf2}",
                     "203.0.113.50,20,after,50", "203.0.113.52,20,after,52")
    assert out.count(" rc=0") == 32, out
    added = [f["addr"] for f in blocker_lines(log, "add")]
    refused = blocker_lines(log, "refused")
    burst = {f"203.0.113.{i}" for i in range(1, 31)}
    # 5 a second, bursts of 5: a request or two more if a second passes.
    in_burst = [a for a in added if a in burst]
    assert 5 <= len(in_burst) <= 7, log
    limited = [f["addr"] for f in refused if f.get("reason") == "rate-limit"]
    suppressed = sum(int(f["suppressed"]) for f in refused if "suppressed" in f)
    assert set(limited) <= burst and len(in_burst) + len(limited) + suppressed == 30, log
    # The reload restarted the blocker; the first one carried out all 30
    # before it stopped (the worker had gone; they waited in its channel).
    stops = [log_fields(l) for l in log.splitlines() if "blocked: blocked stop " in l]
    assert len(stops) == 2, log
    assert int(stops[0]["added"]) + int(stops[0]["refused"]) == 30, stops
    ready = [l for l in log.splitlines() if "blocked: blocked ready" in l]
    assert len(ready) == 2 and "exceptions=1" in ready[1], ready
    # The new settings: a new exception, a full bucket again.
    assert ("203.0.113.50", "exception") in [(f.get("addr"), f.get("reason"))
                                            for f in refused], log
    assert "203.0.113.52" in added, log
    assert on_list(testbed, "203.0.113.50") is None
    # The list holds exactly what the blocker said it added.
    assert sorted(l[0] for l in listing(testbed)) == sorted(added)


# ---------------------------------------------------------------- 3. reloads

def test_reloads_keep_the_list(testbed, gwctl, clean_list):
    v4, v6 = ADDR[CLIENT][4], ADDR[CLIENT][6]
    gwctl.ok("blocked", "add", v4, "--timeout", "600")
    gwctl.ok("blocked", "add", v6, "--timeout", "300")

    def still_blocked(before, what):
        for addr, prev in before.items():
            now = on_list(testbed, addr)
            assert now is not None, f"{addr} lost after {what}: {listing(testbed)}"
            assert now[2] == prev[2], f"{what} changed the timeout of {addr}: {prev} -> {now}"
            assert 0 < int(now[1]) <= int(prev[1]), f"{what}: {addr} {prev} -> {now}"
            assert now[3] == "smtpgwctl", now
        assert_refused(testbed, 4, ports=(25,))
        assert_refused(testbed, 6, ports=(25,))
        return {a: on_list(testbed, a) for a in before}

    before = {a: on_list(testbed, a) for a in (v4, v6)}

    # A change that reloads the ruleset: the sets take the new size.  The
    # daemon's blocker restarts with the new settings on the reload.
    gwctl.ok("global", "set", "blocked-sites-max", "20000")
    gwctl.ok("global", "set", "blocked-sites-exceptions", "192.0.2.0/24")
    off = testbed.log_offset()
    r = gwctl.ok("apply")
    assert "ruleset loaded" in r.stdout, r.stdout
    deadline = time.monotonic() + 10
    while "blocked: blocked ready timeout=1200 rate=20 exceptions=1" not in \
            testbed.log_since(off):
        assert time.monotonic() < deadline, testbed.log_since(off)[-2000:]
        time.sleep(0.1)
    assert "blocked: blocked stop" in testbed.log_since(off)
    before = still_blocked(before, "smtpgwctl apply")
    r = testbed.exec("gw", "nft", "-t", "list", "set", "inet", "smtpgw_blocked", "blocked4")
    assert "size 20000" in r.stdout, r.stdout

    testbed.restart_gateway()
    before = still_blocked(before, "testbed restart-gateway")

    r = testbed.exec("gw", "env", "SMTPGW_NFT_RESIZE=always", "smtpgw-nft",
                     "-c", str(testbed.path("gw-conf")), "load")
    assert r.returncode == 0, r.stderr
    assert "blocked sites sets made again" in r.stdout, r.stdout
    still_blocked(before, "a load that makes the sets again")
