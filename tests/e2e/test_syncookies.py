"""SYN cookies on the gateway do not break interception.

Proves that with `net.ipv4.tcp_syncookies=2` in the gateway's namespace
(every SYN answered with a cookie, which also covers IPv6) mail is still
delivered in both directions over both families, and the gateway still
classifies each session correctly (zone and direction), i.e. the zone is
not lost with the SYN that was never kept.  The kernel's SyncookiesSent
counter must rise, so the test knows cookies were really in play.
"""

import pytest

from conftest import FLOW_IDS, FLOWS, random_lport


@pytest.fixture(scope="module")
def syncookies_forced(testbed):
    old = testbed.sysctl("gw", "net.ipv4.tcp_syncookies", 2)
    try:
        yield
    finally:
        testbed.sysctl("gw", "net.ipv4.tcp_syncookies", old)


@pytest.mark.parametrize("fl", FLOWS, ids=FLOW_IDS)
def test_delivery_with_syncookies(testbed, syncookies_forced, fl):
    sent_before = testbed.netstat_counter("gw", "TcpExt", "SyncookiesSent")
    offset = testbed.log_offset()
    lport = random_lport()
    testbed.send_and_wait(fl, lport=lport)

    sent_after = testbed.netstat_counter("gw", "TcpExt", "SyncookiesSent")
    assert sent_after > sent_before, "the gateway sent no SYN cookie"

    line, f = testbed.wait_for_session(offset, fl.client_addr, lport)
    assert f["zone"] == fl.zone, line
    assert f["direction"] == fl.direction, line
