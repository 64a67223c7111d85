"""rspamd's "add header" and "rewrite subject" change the message on its way.

The testbed's rspamd test patterns: the GTUBE string with YJS is "add
header", with ZJS "rewrite subject", with AJS "no action".
- add header: delivered, with X-Spam-Flag: YES, X-Spam-Score (score /
  required), X-Spam-Action: add header and X-Spam-Symbols at the top of
  the header; an X-Spam-Flag: NO the sender put in is gone; the body is
  as sent;
- rewrite subject: delivered with rspamd's new Subject (and the headers);
- no action: delivered unchanged, without any X-Spam header;
- threshold overrides, outbound, on a message rspamd scores a few points
  (an attachment named tool.com: MIME_BAD_EXTENSION): spam-header-score
  a point below its score delivers it marked, a point above unmarked,
  whatever rspamd's own action; spam-reject-score just below it refuses
  it; the forced action of a test pattern is taken as rspamd gives it,
  whatever the thresholds.
"""

import re

import pytest

from conftest import flow
from lib.scanners import GTUBE, msg_attachment, msg_text, scanners_up, send_through
from lib.topology import new_token

FL = flow("inbound", 4)


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


def deliver(testbed, pattern, extra_header=""):
    token = new_token()
    data = msg_text(token, f"Hello,\r\n{pattern}\r\nBye", subject="offer")
    if extra_header:
        data = extra_header.encode() + data
    reply, sid, offset = send_through(testbed, FL, data)
    assert reply.code == 250, str(reply)
    got = testbed.wait_for_message(FL.server, token)
    head, body = got.split("\n\n", 1)
    return head, body, data, sid, offset


@pytest.mark.qemu
def test_add_header(testbed):
    head, body, data, sid, offset = deliver(testbed, GTUBE["add header"],
                                            "X-Spam-Flag: NO\r\n")
    assert "\nX-Spam-Flag: YES\n" in head, head
    assert "X-Spam-Flag: NO" not in head, head
    assert "\nX-Spam-Action: add header\n" in head, head
    assert "\nX-Spam-Score: " in head and " / " in head, head
    assert "\nX-Spam-Symbols: " in head, head
    assert body == data.split(b"\r\n\r\n", 1)[1].decode().replace("\r\n", "\n")
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "spam=add header" in line, line


def test_rewrite_subject(testbed):
    head, _, _, _, _ = deliver(testbed, GTUBE["rewrite subject"])
    subject = [l for l in head.split("\n") if l.startswith("Subject:")]
    assert len(subject) == 1 and subject[0] != "Subject: offer", head
    assert "offer" in subject[0], subject
    assert "\nX-Spam-Action: rewrite subject\n" in head, head


def test_no_action(testbed):
    head, _, _, _, _ = deliver(testbed, GTUBE["no action"])
    assert "X-Spam" not in head, head


def score_of(line):
    return float(re.search(r" score=([0-9.]+) ", line).group(1))


def test_threshold_overrides(testbed, gateway_config):
    out = flow("outbound", 4)
    # what rspamd makes of it with its own thresholds
    token = new_token()
    reply, sid, offset = send_through(testbed, out, msg_attachment(token, b"harmless"))
    assert reply.code == 250, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    score = score_of(line)
    assert "MIME_BAD_EXTENSION" in testbed.log_since(offset) or score >= 4, line
    # a header threshold below its score: marked, whatever rspamd's action
    gateway_config.set("action Testbed-Outgoing", "spam-header-score", f"{score - 1:.2f}")
    token = new_token()
    reply, sid, offset = send_through(testbed, out, msg_attachment(token, b"harmless"))
    assert reply.code == 250, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "spam=add header" in line, line
    head = testbed.wait_for_message(out.server, token).split("\n\n", 1)[0]
    assert "\nX-Spam-Flag: YES\n" in head and "MIME_BAD_EXTENSION" in head, head
    # above it: not marked, whatever rspamd's action
    gateway_config.set("action Testbed-Outgoing", "spam-header-score", f"{score + 1:.2f}")
    token = new_token()
    reply, sid, offset = send_through(testbed, out, msg_attachment(token, b"harmless"))
    assert reply.code == 250, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "spam=no action" in line, line
    head = testbed.wait_for_message(out.server, token).split("\n\n", 1)[0]
    assert "X-Spam" not in head, head
    # a forced action (a test pattern) is rspamd's, whatever the thresholds
    gateway_config.set("action Testbed-Outgoing", "spam-header-score", "100")
    token = new_token()
    reply, sid, offset = send_through(testbed, out, msg_text(
        token, f"Hello,\r\n{GTUBE['add header']}\r\nBye"))
    assert reply.code == 250, str(reply)
    head = testbed.wait_for_message(out.server, token).split("\n\n", 1)[0]
    assert "\nX-Spam-Action: add header\n" in head, head
    # a reject threshold below its score: refused (rspamd scores in single precision)
    gateway_config.set("action Testbed-Outgoing", "spam-reject-score", f"{score - 0.05:.2f}")
    token = new_token()
    reply, sid, offset = send_through(testbed, out, msg_attachment(token, b"harmless"))
    assert reply.code == 554 and "spam" in reply.text, str(reply)
    assert testbed.messages_with(out.server, token) == []
