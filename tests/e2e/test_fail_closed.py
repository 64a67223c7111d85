"""Fail closed: with smtpgw stopped, SMTP is refused, never forwarded.

Proves that when the daemon is down but its ruleset is still loaded, a
connection from int-client to ext-mx port 25 (IPv4 and IPv6) - and from
ext-client to int-mx - is refused at once (TCP RST, ECONNREFUSED within
1 s), and that nothing reaches the server: ext-mx logs no new connection
and receives no message.  Then smtpgw is started again and mail flows.
"""

import time

import pytest

from conftest import flow

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu


@pytest.fixture
def gateway_stopped(testbed):
    testbed.stop_gateway()
    try:
        yield
    finally:
        if not testbed.gateway_running():
            testbed.start_gateway()


CASES = [flow("outbound", 4), flow("outbound", 6), flow("inbound", 4), flow("inbound", 6)]


def test_refused_while_stopped_then_flows_again(testbed, gateway_stopped):
    before = {h: (testbed.maillog_offset(h), len(testbed.messages(h)))
              for h in ("ext-mx", "int-mx")}

    for fl in CASES:
        r = testbed.probe(fl.client, fl.server_addr, 25, connect_timeout=1.0,
                          read_timeout=1.0)
        assert r["connect"] == "refused", f"{fl.id}: {r}"
        assert r["connect_secs"] < 1.0, f"{fl.id}: {r}"

    # Nothing can be seen to arrive; give a forwarded SYN time to show.
    time.sleep(1.0)
    for host, (log_off, count) in before.items():
        new_log = testbed.maillog(host)[log_off:]
        assert "connect from" not in new_log, f"{host} saw a connection:\n{new_log}"
        assert len(testbed.messages(host)) == count, f"{host} got a message"

    testbed.start_gateway()
    testbed.send_and_wait(flow("outbound", 4))
    testbed.send_and_wait(flow("inbound", 6))
