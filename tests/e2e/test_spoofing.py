"""Source address spoofing: what the server sees as its client.

Proves that with `spoof-source = yes` (the default) smtpgw connects to the
server from the client's own address, so the server's Received header
names the real client (192.0.2.10 outbound, 198.51.100.10 inbound); and
that with `spoof-source = no` the server sees the gateway's own address on
the server's side (198.51.100.1 / 2001:db8:2::1 outbound, 192.0.2.1 /
2001:db8:1::1 inbound).  The gateway's session line must say which mode
it used (spoof=yes|no).  Both directions, both address families.
"""

import pytest

from conftest import FLOW_IDS, FLOWS, random_lport, received_from_addr


@pytest.fixture(scope="module", params=["yes", "no"])
def spoof(request, module_gateway_config):
    module_gateway_config.set("global", "spoof-source", request.param)
    return request.param


@pytest.mark.parametrize("fl", FLOWS, ids=FLOW_IDS)
def test_server_sees_expected_source(testbed, spoof, fl):
    offset = testbed.log_offset()
    lport = random_lport()
    _, msg = testbed.send_and_wait(fl, lport=lport)

    expected = fl.client_addr if spoof == "yes" else fl.gw_server_side
    assert received_from_addr(msg) == expected, msg.split("\n\n", 1)[0]

    _, fields = testbed.wait_for_session(offset, fl.client_addr, lport)
    assert fields.get("spoof") == spoof, fields
