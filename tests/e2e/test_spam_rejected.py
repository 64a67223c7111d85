"""rspamd's reject is the gateway's refusal: GTUBE is refused with 554.

The testbed's default configuration asks rspamd about every message (the
testbed's rspamd recognises the GTUBE test string: action reject).
- inbound: 554 5.7.1 (spam-reject-code's default) with the deny message
  naming spam and rspamd's score; the gateway logs rspamd's action; the
  destination never receives it; the original is quarantined (verdict
  deny, the score);
- outbound the same (the testbed turns spam on for Testbed-Outgoing);
- spam-reject-code = 550 5.7.0: the refusal carries that code;
- an ordinary message next in the same session is delivered.
"""

import pytest

from conftest import flow
from lib.scanners import GTUBE, msg_ordinary, msg_text, quarantine_of, scanners_up, send_through
from lib.topology import new_token


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


def refused(testbed, fl, code):
    token = new_token()
    data = msg_text(token, f"Hello,\r\n{GTUBE['reject']}\r\nBye")
    reply, sid, offset = send_through(testbed, fl, data)
    assert reply.code == code, str(reply)
    assert "spam" in reply.text, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "spam=reject" in line and 'spam-action=reject' in line, line
    rec = quarantine_of(testbed, sid)
    assert rec is not None and rec["verdict"] == "deny" and rec["spam-score"], rec
    assert rec["reply"].startswith(str(code)), rec
    assert testbed.messages_with(fl.server, token) == []


@pytest.mark.qemu
@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_gtube_refused(testbed, direction):
    fl = flow(direction, 4)
    refused(testbed, fl, 554)
    # the session's next message is an ordinary one: delivered
    token = new_token()
    reply, _, _ = send_through(testbed, fl, msg_ordinary(token))
    assert reply.code == 250, str(reply)
    testbed.wait_for_message(fl.server, token)


def test_reject_code(testbed, gateway_config):
    gateway_config.set("action Testbed-Incoming", "spam-reject-code", "550 5.7.0")
    refused(testbed, flow("inbound", 4), 550)
