"""A clamd that stalls holds up only the message it is scanning: the worker
serves every other session meanwhile, and the stalled scan ends after
clamd-timeout with av-on-error's answer.

One worker (so both sessions share its event loop), clamd-servers = the
first clamd only, clamd-timeout = 4, av-on-error = tempfail inbound;
outbound does not scan for viruses.  clamd-1 is stalled (SIGSTOP: the
kernel still accepts connections, nothing answers):
- an inbound message waits at its end of data;
- meanwhile an outbound session delivers a message, start to finish;
- about 4 s after its scan started the inbound one gets 451 4.7.1 (it
  could not be scanned), the log says the scan timed out, the status
  counts the timeout and shows the server down;
- with clamd-1 resumed, the next inbound message is scanned.
"""

import threading
import time

import pytest

from conftest import flow
from lib.scanners import msg_ordinary, scanners_up, send_through
from lib.topology import new_token

IN = flow("inbound", 4)
OUT = flow("outbound", 4)


@pytest.fixture
def stalled(testbed, gateway_config):
    gateway_config.update({
        ("global", "workers"): "1",
        ("global", "clamd-servers"): "tcp:192.0.2.60:3310",
        ("global", "clamd-timeout"): "4",
        ("action Testbed-Incoming", "av-on-error"): "tempfail",
        ("action Testbed-Outgoing", "antivirus"): "off",
    })
    testbed.cmd("scanners", "stall", "clamd-1")
    try:
        yield
    finally:
        testbed.cmd("scanners", "resume", "clamd-1", check=False)
        scanners_up(testbed)


def test_stall_times_out_others_flow(testbed, stalled):
    result = {}

    def inbound():
        t0 = time.monotonic()
        result["in"] = send_through(testbed, IN, msg_ordinary(new_token()), timeout=60)
        result["in_s"] = time.monotonic() - t0

    th = threading.Thread(target=inbound)
    th.start()
    time.sleep(1)
    # the inbound message is waiting for clamd; the worker goes on
    t0 = time.monotonic()
    token = new_token()
    reply, _, _ = send_through(testbed, OUT, msg_ordinary(token))
    out_s = time.monotonic() - t0
    assert reply.code == 250, str(reply)
    testbed.wait_for_message(OUT.server, token)
    assert "in" not in result, "the inbound message did not wait for the stalled clamd"
    th.join(60)
    assert out_s < 3, f"the outbound session took {out_s:.1f} s while clamd stalled"
    reply, sid, offset = result["in"]
    assert reply.code == 451 and "could not be scanned" in reply.text, str(reply)
    assert 3 <= result["in_s"] < 20, result["in_s"]
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert "av=scan-error" in line, line
    time.sleep(3)
    r = testbed.exec("gw", "smtpgwctl", "status")
    assert "tcp:192.0.2.60:3310: down" in r.stdout and "1 timeouts" in r.stdout, r.stdout

    testbed.cmd("scanners", "resume", "clamd-1")
    deadline = time.monotonic() + 90
    while True:
        # the pool probes the server again with a backoff (1 s, doubling)
        token = new_token()
        reply, sid, offset = send_through(testbed, IN, msg_ordinary(token))
        line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
        if reply.code == 250:
            assert "av=clean" in line, line
            break
        assert time.monotonic() < deadline, f"clamd-1 is not used again: {line}"
        time.sleep(2)
