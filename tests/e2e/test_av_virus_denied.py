"""A virus is refused in every wrapping, by the real clamd, in both modes.

The testbed's default configuration asks clamd about every message
(Testbed-Incoming takes the predefined SMTP-Incoming.Standard: antivirus
= message, av-on-virus = deny).  The EICAR test file
- as a plain body,
- as a base64 attachment,
- inside a zip,
- inside an attached message (message/rfc822)
is refused at the end of data with 554 and the deny message naming the
virus; the gateway logs the virus name (and an alarm), the destination
never receives the message, and the original is kept in the quarantine
with its envelope and the verdict.  The same four with antivirus =
attachments (each decoded part its own INSTREAM): refused the same way.
The harmless twins of each are delivered.
"""

import pytest

from conftest import flow
from lib.scanners import (EICAR_NAME, msg_attachment, msg_nested, msg_plain, msg_zip,
                          quarantine_of, quarantined_message, scanners_up, send_through)
from lib.topology import new_token

FL = flow("inbound", 4)
WRAPPINGS = {"plain": msg_plain, "attachment": msg_attachment, "zip": msg_zip,
             "nested": msg_nested}


def check_refused(testbed, wrap, make):
    token = new_token()
    data = make(token)
    reply, sid, offset = send_through(testbed, FL, data)
    assert reply.code == 554, (wrap, str(reply))
    assert EICAR_NAME in reply.text, (wrap, str(reply))
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert f"virus={EICAR_NAME}" in line, (wrap, line)
    testbed.wait_gateway_line(offset, sid, rf"alarm virus={EICAR_NAME}")
    testbed.wait_gateway_line(offset, sid, r"smtp message result=refused .* reply=554")
    rec = quarantine_of(testbed, sid)
    assert rec is not None, f"{wrap}: nothing in the quarantine for session {sid}"
    assert rec["verdict"] == "deny" and rec["virus"] == EICAR_NAME, rec
    assert rec["mail-from"] == FL.sender and rec["rcpt"] == [FL.rcpt], rec
    assert rec["direction"] == "inbound" and rec["action"] == "Testbed-Incoming", rec
    assert rec["server"] == f"{FL.server_addr}:25", rec
    assert quarantined_message(testbed, rec["id"]) == data
    assert testbed.messages_with(FL.server, token) == []
    return token


def check_clean(testbed, make):
    token = new_token()
    reply, _, _ = send_through(testbed, FL, make(token, b"harmless text, nothing to see"))
    assert reply.code == 250, str(reply)
    testbed.wait_for_message(FL.server, token)


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


@pytest.mark.qemu
def test_message_mode(testbed):
    for wrap, make in WRAPPINGS.items():
        check_refused(testbed, wrap, make)
    for make in WRAPPINGS.values():
        check_clean(testbed, make)


def test_attachments_mode(testbed, gateway_config):
    gateway_config.set("action Testbed-Incoming", "antivirus", "attachments")
    for wrap, make in WRAPPINGS.items():
        offset = testbed.log_offset()
        check_refused(testbed, wrap, make)
        # one INSTREAM per decoded part: the log counts them
        assert "parts=0 " not in testbed.log_since(offset).split("inspect scan ")[1]
    for make in WRAPPINGS.values():
        check_clean(testbed, make)
