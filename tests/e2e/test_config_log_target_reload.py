"""`log` changed by `smtpgwctl apply` takes effect at the reload.

smtpgw.conf(5) lists `log` (stderr or syslog) among the settings a
reload applies (only listen-port, queue and user take a restart), and
`smtpgwctl apply` reports the reload as done.  The master chose its log
target once at start and every child inherited it, so after `global set
log syslog` and apply, every line still went to stderr (and the other way
round: a box started with syslog could not be moved to stderr).

Here the testbed's gateway logs to stderr (its log file).  After `log =
syslog` is applied, a session through the gateway (delivered) leaves no
line in that file: the workers of the new generation log to syslog.
Once the original configuration (stderr) is applied again, the next
session's line is in the file again: the way back works too.
"""

import time

from conftest import flow, random_lport
from gwctl import gwctl  # noqa: F401 (fixture)


def session_logged(testbed, offset, fl, lport, wait):
    try:
        testbed.wait_for_session(offset, fl.client_addr, lport, timeout=wait)
        return True
    except AssertionError:
        return False


def test_log_target_follows_a_reload(testbed, gwctl):
    fl = flow("outbound", 4)
    original = gwctl.active.read_text()

    gwctl.ok("global", "set", "log", "syslog")
    gwctl.apply()
    offset = testbed.log_offset()
    lport = random_lport()
    testbed.send_and_wait(fl, lport=lport)
    time.sleep(1)  # the session's lines would be written by now
    assert not session_logged(testbed, offset, fl, lport, 1), (
        "log = syslog applied, but the session is still logged to stderr:\n"
        + testbed.log_since(offset)[-2000:])

    gwctl.staged.write_text(original)
    gwctl.apply()
    offset = testbed.log_offset()
    lport = random_lport()
    testbed.send_and_wait(fl, lport=lport)
    assert session_logged(testbed, offset, fl, lport, 10), (
        "log = stderr applied again, but the session is not in the log")
