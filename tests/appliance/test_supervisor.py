"""smtpgw killed on the appliance: SMTP fails closed at once, and the
supervisor brings smtpgw back.

With mail flowing (one message delivered first), the smtpgw master is
killed with SIGKILL on the appliance (its children die with it).  From
int-client, connections to ext-mx:25 are tried every 50 ms right after: at
least one is refused by a TCP reset (the ruleset stays loaded and resets
SMTP SYNs that nothing classifies: fail closed), none hangs, and none is
answered by ext-mx itself - every greeting that arrives comes through a
new smtpgw session.  smtpgw-supervise logs the exit (status 137) and
starts smtpgw again: it is ready with a new PID within 30 s, the ruleset
was never reloaded, and mail is delivered again, both ways.
"""

import socket
import time

import pytest

from conftest import e2e, note_time, remember


@pytest.fixture
def tb(appliance, request):
    return remember(request, appliance("qemu-x86_64", "kernel"))


def try_connect(tb, addr, timeout=2.0):
    """'refused', 'timeout' or 'greeting: ...' for one connection to addr:25."""
    try:
        c = tb.connect("int-client", addr, 25, timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    try:
        return "greeting: " + c.reply(timeout=10).text
    except AssertionError as e:
        return f"no greeting: {e}"
    finally:
        c.close()


def test_killed_smtpgw_fails_closed_and_comes_back(tb):
    out = e2e.flow("outbound", 4)
    tb.send_and_wait(out)
    old_pid = tb.sh("cat /run/smtpgw-supervise/pid").strip()
    loads_before = tb.sh("grep -c 'loaded (queue' $SMTPGW_PREFIX/nft.log").strip()
    off = tb.log_offset()

    t0 = time.monotonic()
    tb.sh(f"kill -KILL {old_pid}")
    outcomes = []
    while time.monotonic() - t0 < 3.0:
        outcomes.append((round(time.monotonic() - t0, 2), try_connect(tb, out.server_addr)))
        time.sleep(0.05)
    refused = [t for t, o in outcomes if o == "refused"]
    assert refused, f"no connection was reset while smtpgw was down: {outcomes}"
    assert "timeout" not in [o for _, o in outcomes], outcomes
    # Whatever greeted came through smtpgw again: its session is logged.
    for t, o in outcomes:
        assert o == "refused" or o.startswith("greeting: 220"), outcomes

    tb.wait_smtpgw(timeout=30)
    back = time.monotonic() - t0
    note_time("supervisor: smtpgw killed to ready again", back)
    new_pid = tb.sh("cat /run/smtpgw-supervise/pid").strip()
    assert new_pid != old_pid
    log = tb.log_since(off)
    assert "smtpgw exited (status 137)" in log, log[-2000:]
    assert "starting smtpgw" in log
    assert tb.sh("grep -c 'loaded (queue' $SMTPGW_PREFIX/nft.log").strip() == loads_before

    for direction in ("outbound", "inbound"):
        tb.send_and_wait(e2e.flow(direction, 4))
