"""Rules that end sessions, change headers and raise alarms; ambiguous MIME.

With the testbed's actions given (on top of the predefined rulesets they
inherit):
  outbound: mail-from-rule = block log exact blockme@int.test
            header-rule = strip log regex ^X-Internal-Secret:
            header-rule = deny log regex ^X-Evil:
            envelope-headers = yes
            filename-rule = strip log alarm pattern *.scr
  [global]  blocked-sites-timeout = 4
this proves:
- a `block` rule: the client gets `421 4.7.1` and the session ends; the
  gateway asks the blocker to list it (`blocked add ... reason=mail-from`);
  the client's next SMTP connection is reset by the kernel (no session in
  the gateway's log); after blocked-sites-timeout it is served again;
- a header `strip` removes that field only; `envelope-headers` adds
  X-Envelope-From / X-Envelope-To; the rest arrives byte for byte;
- a header `deny` refuses the message with `554 5.7.1`, nothing
  delivered, and the session's next message is delivered;
- an `alarm` rule: the gateway logs `alarm ruleset=filename ...` and
  `smtpgwctl status` counts it (the status file's `alarms=`), along with
  the inspected / stripped counters;
- ambiguous MIME (two Content-Type fields) is refused inbound
  (SMTP-Incoming.Standard: on-ambiguous deny) with `554 5.7.1` and
  nothing delivered, and only logged outbound (delivered).
"""

import time

import pytest

from conftest import dot_stuff, flow, message, new_token, strip_trace
from lib.mimebuild import attachment, multipart, send, text_part

OUT = flow("outbound", 4)
IN = flow("inbound", 4)


@pytest.fixture(scope="module", autouse=True)
def rules(module_gateway_config):
    cfg = module_gateway_config
    text = cfg.path.read_text()
    marker = "[action Testbed-Outgoing]\n"
    extra = ("mail-from-rule = block log exact blockme@int.test\n"
             "header-rule = strip log regex ^X-Internal-Secret:\n"
             "header-rule = deny log regex ^X-Evil:\n"
             "envelope-headers = yes\n"
             "filename-rule = strip log alarm pattern *.scr\n")
    assert marker in text
    text = text.replace(marker, marker + extra)
    text = text.replace("[global]\n", "[global]\nblocked-sites-timeout = 4\n", 1)
    cfg.path.write_text(text)
    cfg.tb.restart_gateway()


def status(testbed):
    text = testbed.path("gw-status").read_text()
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def fresh_status(testbed):
    """The status file after SIGUSR2 (smtpgwctl status asks the same way)."""
    r = testbed.exec("gw", "smtpgwctl", "status")
    assert "inspection:" in r.stdout, r.stdout + r.stderr
    return status(testbed), r.stdout


def test_block_rule_lists_the_client(testbed):
    off = testbed.log_offset()
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        r = c.cmd("MAIL FROM:<blockme@int.test>")
        assert r.code == 421 and r.lines[0].startswith("421 4.7.1 "), c.dialogue()
        _, end, _ = c.read_to_end(timeout=5)
        assert end in ("eof", "reset"), c.dialogue()
    log = testbed.log_since(off)
    assert "smtp block client=192.0.2.10" in log, log[-2000:]
    deadline = time.monotonic() + 5
    while "blocked add addr=192.0.2.10" not in testbed.log_since(off):
        assert time.monotonic() < deadline, testbed.log_since(off)[-2000:]
        time.sleep(0.1)
    # refused by the kernel now: a reset, and no session
    off2 = testbed.log_offset()
    p = testbed.probe(OUT.client, OUT.server_addr, 25, connect_timeout=3, read_timeout=1)
    assert p.get("connect") in ("refused", "reset") or p.get("error"), p
    assert "session start client=192.0.2.10" not in testbed.log_since(off2)
    # and served again once the time is up
    time.sleep(4.5)
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        assert c.reply().code == 220, c.dialogue()
        c.cmd("QUIT")


def test_header_strip_and_envelope_headers(testbed):
    token = new_token()
    text = message(token, headers=("X-Internal-Secret: do not leak",
                                   "X-Other: stays"))
    send(testbed, OUT, text)
    got = strip_trace(testbed.wait_for_message(OUT.server, token))
    assert "X-Internal-Secret" not in got and "X-Other: stays" in got, got[:800]
    assert f"X-Envelope-From: <{OUT.sender}>\n" in got, got[:800]
    assert f"X-Envelope-To: <{OUT.rcpt}>\n" in got, got[:800]
    # everything else is untouched
    expect = text.replace("X-Internal-Secret: do not leak\r\n", "").replace("\r\n", "\n")
    body_and_rest = got.split(f"X-Envelope-To: <{OUT.rcpt}>\n", 1)[1]
    assert body_and_rest == expect, got


@pytest.mark.qemu
def test_header_deny_then_next_delivered(testbed):
    token1, token2 = new_token(), new_token()
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        for token, evil in ((token1, True), (token2, False)):
            assert c.cmd(f"MAIL FROM:<{OUT.sender}>").code == 250, c.dialogue()
            assert c.cmd(f"RCPT TO:<{OUT.rcpt}>").code == 250, c.dialogue()
            assert c.cmd("DATA").code == 354, c.dialogue()
            c.send(dot_stuff(message(token, headers=("X-Evil: yes",) if evil else ())))
            r = c.reply(timeout=30)
            assert r.code == (554 if evil else 250), c.dialogue()
        c.cmd("QUIT")
    testbed.wait_for_message(OUT.server, token2)
    assert testbed.messages_with(OUT.server, token1) == []


def test_alarm_logged_and_counted(testbed):
    before, _ = fresh_status(testbed)
    token = new_token()
    off = testbed.log_offset()
    text, _ = multipart(token, [text_part(f"Screen saver. {token}\r\n"),
                                attachment(b"not really\r\n", "application/octet-stream",
                                           'attachment; filename="nice.scr"')])
    text = text.replace("From: <alice@ext.test>", "From: <alice@int.test>").replace(
        "To: <user@int.test>", "To: <user@ext.test>")
    send(testbed, OUT, text)
    testbed.wait_for_message(OUT.server, token)
    assert "alarm ruleset=filename item=nice.scr" in testbed.log_since(off)
    after, out = fresh_status(testbed)
    assert int(after["alarms"]) >= int(before["alarms"]) + 1, (before, after)
    assert int(after["inspect-stripped"]) >= int(before["inspect-stripped"]) + 1
    assert int(after["inspected"]) > int(before["inspected"]), (before, after)
    assert "alarms" in out


AMBIGUOUS_HEADERS = ("MIME-Version: 1.0", "Content-Type: text/plain",
                     "Content-Type: text/html")


def test_ambiguous_refused_inbound_logged_outbound(testbed):
    token_in, token_out = new_token(), new_token()
    off = testbed.log_offset()
    r, c = send(testbed, IN, message(token_in, headers=AMBIGUOUS_HEADERS), expect=None)
    assert r.code == 554 and r.lines[0].startswith("554 5.7.1 "), c.dialogue()
    assert "inspect ambiguous" in testbed.log_since(off)
    send(testbed, OUT, message(token_out, headers=AMBIGUOUS_HEADERS))
    testbed.wait_for_message(OUT.server, token_out)
    assert testbed.messages_with(IN.server, token_in) == []
