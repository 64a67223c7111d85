"""Fail closed on an interface in no zone, added after the ruleset loaded.

Proves that SMTP forwarded from an interface that is in no zone is reset,
never forwarded uninspected.  The interface is extra0, a new link of the
gateway to a new host (`testbed extra-segment add`: extra-client,
203.0.113.10 / 2001:db8:3::10) made while smtpgw runs, so neither its
configuration nor the loaded ruleset names it.  From extra-client, a
connection to int-mx or ext-mx on port 25 or 465, IPv4 and IPv6:
  - is refused at once (TCP reset, ECONNREFUSED within 1 s), and the
    classifier logs `classify decision=reject reason=no-zone in=extra0`;
  - never reaches the server (no connection from extra-client in either
    Postfix log), while the same host reaches them on another TCP port
    (routing works both ways: the reset is the ruleset's);
  - stays refused with smtpgw stopped (the ruleset alone) and after the
    ruleset is reloaded.
Meanwhile the zones work as before: outbound mail is intercepted (a
gateway session for the client), and with SMTP-Proxy-In made a
packet-filter policy inbound mail is bypassed - delivered, with the
client's own address, and no gateway session.
"""

import socket
import time

import pytest

from conftest import ADDR, family_of, flow, in_netns, random_lport, received_from_addr

EXTRA = "extra-client"
SERVERS = ("int-mx", "ext-mx")
OTHER_PORT = 2526  # not SMTP: forwarded like any other traffic


@pytest.fixture(scope="module")
def extra_segment(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("the extra segment needs the netns gateway")
    testbed.cmd("extra-segment", "add")
    try:
        yield
    finally:
        testbed.cmd("extra-segment", "del", check=False)


def assert_all_refused(tb, expect_log=True):
    """Every SMTP port of both servers, both families, from extra-client:
    reset at once, and nothing arrives at the server."""
    off = tb.log_offset()
    before = {h: tb.maillog_offset(h) for h in SERVERS}
    for server in SERVERS:
        for family in (4, 6):
            for port in (25, 465):
                what = f"{EXTRA} -> {server} v{family} port {port}"
                r = tb.probe(EXTRA, ADDR[server][family], port, connect_timeout=2.0,
                             read_timeout=0.5, lport=random_lport())
                assert r["connect"] == "refused", f"{what} not reset: {r}"
                assert r["connect_secs"] < 1.0, f"{what}: {r}"

    # Give a forwarded SYN time to show at a server.
    time.sleep(1.0)
    for host in SERVERS:
        new_log = tb.maillog(host)[before[host]:]
        for family in (4, 6):
            assert f"[{ADDR[EXTRA][family]}]" not in new_log, (
                f"{host} saw a connection from {EXTRA}:\n{new_log}")

    if expect_log:
        log = tb.log_since(off)
        for family in (4, 6):
            lines = [l for l in log.splitlines()
                     if "classify decision=reject" in l and f"src={ADDR[EXTRA][family]} " in l]
            assert lines, f"no classify reject for {EXTRA} v{family}:\n{log[-3000:]}"
            for l in lines:
                assert "reason=no-zone" in l and "in=extra0" in l, l


def test_routing_works(testbed, extra_segment):
    """The control: extra-client reaches both servers on a port that is
    not SMTP (a listener of the test's own, on the second addresses)."""
    for server, script in (("int-mx", "int-script"), ("ext-mx", "ext-script")):
        for family in (4, 6):
            with in_netns(testbed.netns(server)):
                ls = socket.socket(family_of(ADDR[script][family]), socket.SOCK_STREAM)
            with ls:
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((ADDR[script][family], OTHER_PORT))
                ls.listen(1)
                r = testbed.probe(EXTRA, ADDR[script][family], OTHER_PORT,
                                  connect_timeout=2.0, read_timeout=0.2)
                assert r["connect"] == "ok", f"{EXTRA} -> {server} v{family}: {r}"


def test_no_zone_is_reset(testbed, extra_segment):
    assert_all_refused(testbed)


def test_no_zone_is_reset_without_smtpgw(testbed, extra_segment):
    testbed.stop_gateway()
    try:
        assert_all_refused(testbed, expect_log=False)
    finally:
        testbed.start_gateway()


def test_zones_still_intercept_and_bypass(testbed, extra_segment, gateway_config):
    # Intercepted: a gateway session for the client.
    for family in (4, 6):
        fl = flow("outbound", family)
        off = testbed.log_offset()
        lport = random_lport()
        testbed.send_and_wait(fl, lport=lport)
        _, f = testbed.wait_for_session(off, fl.client_addr, lport)
        assert (f["zone"], f["policy"]) == (fl.zone, fl.policy), f

    # Bypassed: restart-gateway reloads the ruleset too.
    gateway_config.set("policy SMTP-Proxy-In", "type", "packet-filter")
    for family in (4, 6):
        fl = flow("inbound", family)
        off = testbed.log_offset()
        lport = random_lport()
        _, msg = testbed.send_and_wait(fl, lport=lport)
        assert received_from_addr(msg) == fl.client_addr, "the server did not see the client"
        time.sleep(0.5)
        log = testbed.log_since(off)
        assert "decision=bypass" in log, log[-2000:]
        assert not [l for l in log.splitlines()
                    if "session start" in l and fl.client_addr in l], log[-2000:]

    # The reloaded ruleset still resets the interface in no zone.
    assert_all_refused(testbed)
