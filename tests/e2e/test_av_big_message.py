"""A 40 MiB message is scanned by both engines and delivered.

The testbed's clamd takes streams of up to 64 MiB (StreamMaxLength) and
so does the gateway (clamd-max-size); rspamd takes up to 50 MiB.  A
40 MiB message inbound (held in the spool beyond hold-memory) is sent to
clamd and rspamd from the held copy, found clean, and delivered whole:
- the client gets the destination's 250;
- the log shows clamd's verdict (clean, not "too large") and rspamd's;
- Postfix stores the message with its body intact.
"""

import base64
import hashlib
import os

import pytest

from conftest import flow
from lib.scanners import scanners_up, send_through
from lib.topology import new_token

FL = flow("inbound", 4)
SIZE = 40 * 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


def test_forty_mib(testbed):
    token = new_token()
    line = base64.b64encode(os.urandom(57)) + b"\r\n"
    body = line * (SIZE // len(line) + 1)
    data = (f"From: <bob@ext.test>\r\nTo: <user@int.test>\r\nSubject: big {token}\r\n"
            f"Message-ID: <{token}@ext.test>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + body
    assert len(data) > SIZE
    reply, sid, offset = send_through(testbed, FL, data, timeout=300)
    assert reply.code == 250, str(reply)
    scan = testbed.wait_gateway_line(offset, sid, r"inspect scan ", timeout=30)
    assert "av=clean" in scan and "spam=no action" in scan, scan
    assert "spooled=yes" in testbed.wait_gateway_line(offset, sid, r"smtp hold released ")
    got = testbed.wait_for_message(FL.server, token, timeout=120)
    delivered = got.split("\n\n", 1)[1].encode()
    assert hashlib.sha256(delivered).hexdigest() == \
        hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
