"""Slow clients are cut off: command deadline and DATA inactivity.

Proves, with `timeout-client-command = 3` and `timeout-client-data = 3`:
- a client that dribbles a command one byte per second is cut off 3 to
  5 s after the greeting with `421 4.4.2 ... timeout exceeded` and a
  close: the bytes it sends do not extend the deadline;
- a client that sends whole commands 2 s apart is not cut off: the
  deadline starts over with each command;
- a client that stalls in DATA is cut off 3 to 5 s after its last byte
  with the same 421; the gateway logs the timeout and aborts the
  upstream, which never sees an end of data (ext-mx: lost connection
  after DATA), and nothing is delivered;
- in DATA only inactivity counts: a client that sends one byte a second
  for 5 s and then ends the message gets its 250 and the message arrives.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import select
import time

import pytest

from conftest import dot_stuff, flow, message, new_token, random_lport

pytestmark = pytest.mark.usefixtures("streamed_outbound")

TIMEOUT = 3
FL = flow("outbound", 4)


@pytest.fixture(scope="module", autouse=True)
def short_client_timeouts(module_gateway_config):
    module_gateway_config.update({("global", "timeout-client-command"): str(TIMEOUT),
                                  ("global", "timeout-client-data"): str(TIMEOUT)})


def dribble(c, data, interval=1.0, limit=10.0):
    """Send data one byte per interval until the peer writes or closes;
    returns the seconds that took (or fails after limit seconds)."""
    t0 = time.monotonic()
    for i in range(len(data)):
        c.send(data[i:i + 1])
        r, _, _ = select.select([c.sock], [], [], interval)
        if r:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < limit, "never cut off"
    raise AssertionError("sent everything without being cut off")


def assert_timeout_421(c):
    replies, how, _ = c.read_to_end(5)
    assert [r.code for r in replies] == [421], c.dialogue()
    assert replies[0].lines[-1].startswith("421 4.4.2 ") and \
        "timeout exceeded" in replies[0].text, c.dialogue()
    assert how == "eof", c.dialogue()


def test_dribbled_command_cut_off(testbed):
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(FL.client, FL.server_addr, lport=lport) as c:
        assert c.reply().code == 220
        secs = dribble(c, b"EHLO slowloris.int.test\r\n")
        assert TIMEOUT - 0.2 <= secs <= TIMEOUT + 2, f"cut off after {secs:.1f} s"
        assert_timeout_421(c)
    sid = testbed.gateway_session(offset, FL.client_addr, lport)
    testbed.wait_gateway_line(offset, sid, r"smtp client timeout")
    testbed.wait_gateway_line(offset, sid, r"session end reason=client-timeout")


def test_whole_commands_restart_the_deadline(testbed):
    with testbed.connect(FL.client, FL.server_addr) as c:
        c.ehlo()
        for _ in range(2):
            time.sleep(TIMEOUT - 1)
            assert c.cmd("NOOP").code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221, c.dialogue()


def test_stalled_data_cut_off(testbed):
    token = new_token()
    mx_off = testbed.maillog_offset(FL.server)
    offset = testbed.log_offset()
    lport = random_lport()
    data = dot_stuff(message(token))
    with testbed.connect(FL.client, FL.server_addr, lport=lport) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data[:len(data) // 2])
        t0 = time.monotonic()
        r, _, _ = select.select([c.sock], [], [], TIMEOUT + 3)
        secs = time.monotonic() - t0
        assert r, "never cut off"
        assert TIMEOUT - 0.2 <= secs <= TIMEOUT + 2, f"cut off after {secs:.1f} s"
        assert_timeout_421(c)

    sid = testbed.gateway_session(offset, FL.client_addr, lport)
    testbed.wait_gateway_line(offset, sid, r'smtp upstream abort reason="client timeout"')
    addr, port = testbed.upstream_endpoint(offset, sid)
    sess = testbed.mx_session(FL.server, mx_off, addr, port)
    assert sess.lost and "after DATA" in sess.lost, sess
    testbed.assert_not_queued(FL.server, sess, token)


def test_slow_but_steady_data_delivers(testbed):
    token = new_token()
    data = dot_stuff(message(token)).encode()
    head, tail_ = data[:-60], data[-60:]
    with testbed.connect(FL.client, FL.server_addr) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(head)
        t0 = time.monotonic()
        for i in range(6):  # one byte a second, longer than the timeout
            c.send(tail_[i:i + 1])
            r, _, _ = select.select([c.sock], [], [], 1.0)
            assert not r, f"cut off while sending: {c.dialogue()}"
        assert time.monotonic() - t0 > TIMEOUT + 1
        c.send(tail_[6:])
        assert c.reply().code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221
    testbed.wait_for_message(FL.server, token)
