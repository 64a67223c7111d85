"""Inbound mail: ext-client sends to int-mx through the gateway.

Proves that an SMTP session from the external side (ext-client) to the
internal mail server (int-mx, user@int.test) passes through smtpgw and the
message is delivered with its body intact, over IPv4 and over IPv6.
"""

import pytest

from conftest import flow

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

BODY = "inbound test\n.a line with a leading dot\nend\n"


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_inbound_delivers(testbed, family):
    fl = flow("inbound", family)
    token, msg = testbed.send_and_wait(fl, body=BODY)
    assert f"Subject: smtpgw e2e {token}" in msg
    assert BODY in msg.replace("\r\n", "\n")
