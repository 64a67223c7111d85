"""Outbound mail: int-client sends to ext-mx through the gateway.

Proves that an SMTP session from the trusted side (int-client) to a mail
server on the external side (ext-mx, user@ext.test) passes through smtpgw
and the message is delivered, over IPv4 and over IPv6.  The body contains
lines that start with dots, so it also proves that the DATA phase reaches
the server intact: swaks dot-stuffs them, Postfix unstuffs them, and the
Maildir copy must read exactly as written.  A 256 KiB message proves that
the relay copes with more than one buffer's worth of data.
"""

import pytest

from conftest import flow

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

BODY = "first line\n.starts with a dot\n..starts with two\nlast line\n"


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_outbound_delivers(testbed, family):
    fl = flow("outbound", family)
    token, msg = testbed.send_and_wait(fl, body=BODY)
    assert f"Subject: smtpgw e2e {token}" in msg
    assert BODY in msg.replace("\r\n", "\n")


def test_outbound_large_message(testbed):
    fl = flow("outbound", 4)
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    body = line * (256 * 1024 // len(line))
    token, msg = testbed.send_and_wait(fl, body=body)
    assert msg.replace("\r\n", "\n").count(line) == body.count(line)
