"""clamd down: the sender is told to try later (451), or -- when the admin
says so -- the message passes unscanned, logged and counted.

Both clamd instances stopped (`testbed scanners stop`):
- a message inbound gets 451 4.7.1 (av-on-unavailable's default,
  tempfail), never a silent pass; nothing reaches the destination and
  nothing is quarantined (the sender keeps it);
- `smtpgwctl status` shows both clamd servers down with their last
  error, and counts the tempfail (and exits 1: a scanner is down);
- with av-on-unavailable = allow the message is delivered, the log says
  av=unavailable and the status counts it as passed unscanned;
- with clamd back, the next message is scanned again.
"""

import time

import pytest

from conftest import flow
from lib.scanners import msg_ordinary, quarantine_of, scanners_up, send_through
from lib.topology import new_token

FL = flow("inbound", 4)


def status(testbed):
    r = testbed.exec("gw", "smtpgwctl", "status")
    return r.returncode, r.stdout


@pytest.fixture
def clamd_stopped(testbed):
    testbed.cmd("scanners", "stop", "clamd-1")
    testbed.cmd("scanners", "stop", "clamd-2")
    try:
        yield
    finally:
        scanners_up(testbed)


def test_tempfail_then_allow(testbed, gateway_config, clamd_stopped):
    # a fresh gateway: its pools see both servers gone at their first checks
    testbed.restart_gateway()
    token = new_token()
    reply, sid, offset = send_through(testbed, FL, msg_ordinary(token))
    assert reply.code == 451, str(reply)
    assert "virus scanner is unavailable" in reply.text, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "av=unavailable" in line, line
    assert quarantine_of(testbed, sid) is None
    time.sleep(3)  # the workers publish their pools every 2 s
    rc, out = status(testbed)
    assert rc == 1, out
    assert "tcp:192.0.2.60:3310: down" in out and "tcp:192.0.2.61:3310: down" in out, out
    assert "last error: " in out, out
    assert " 1 tempfailed" in out, out
    assert testbed.messages_with(FL.server, token) == []

    gateway_config.set("action Testbed-Incoming", "av-on-unavailable", "allow")
    token = new_token()
    reply, sid, offset = send_through(testbed, FL, msg_ordinary(token))
    assert reply.code == 250, str(reply)
    testbed.wait_for_message(FL.server, token)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "av=unavailable" in line, line
    time.sleep(3)
    _, out = status(testbed)
    assert " 1 passed unscanned" in out, out


def test_scanned_again(testbed):
    scanners_up(testbed)
    testbed.restart_gateway()
    token = new_token()
    reply, sid, offset = send_through(testbed, FL, msg_ordinary(token))
    assert reply.code == 250, str(reply)
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "av=clean" in line, line
