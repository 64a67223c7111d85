"""The envelope rules of a proxy action: Mail From / Rcpt To patterns,
rewrites, source routes; the greeting rules; the ESMTP allowlist; the
inbound banner.

With the testbed's outbound action given, on top of the predefined
rulesets it inherits:
  mail-from-rule = deny log exact spammer@int.test
  rcpt-to-rule = deny log pattern *@blocked.ext.test
  mail-from-rewrite = pattern *@legacy.int.test => *@int.test
  greeting-rule = deny log pattern *.invalid
  esmtp = PIPELINING SIZE 8BITMIME ENHANCEDSTATUSCODES
this proves:
- a denied sender gets `550 5.7.1` with the deny message, nothing goes
  upstream for it, and the session's next transaction is delivered;
- a denied recipient is refused alone, the others of the transaction
  are delivered;
- a rewritten sender reaches the destination rewritten (its Return-Path);
- a source-routed address (`@a,@b:user@d`, `user%host@relay`) is refused
  (predefined: never allowed);
- a HELO name matching a greeting rule gets `550`, a good one goes on;
- EHLO shows the allowed extensions only (no SMTPUTF8, DSN, CHUNKING),
  and a parameter of a withdrawn one (SMTPUTF8) is refused;
- inbound (SMTP-Incoming.Standard: hide-banner), the client never sees
  int-mx's host name: the greeting is `220 ESMTP`, the EHLO reply's
  first line `250-Hello`.
"""

import pytest

from conftest import dot_stuff, flow, message, new_token

OUT = flow("outbound", 4)
IN = flow("inbound", 4)
ACTION = "action Testbed-Outgoing"


@pytest.fixture(scope="module", autouse=True)
def envelope_rules(module_gateway_config):
    cfg = module_gateway_config
    text = cfg.path.read_text()
    extra = ("mail-from-rule = deny log exact spammer@int.test\n"
             "rcpt-to-rule = deny log pattern *@blocked.ext.test\n"
             "mail-from-rewrite = pattern *@legacy.int.test => *@int.test\n"
             "greeting-rule = deny log pattern *.invalid\n"
             "esmtp = PIPELINING SIZE 8BITMIME ENHANCEDSTATUSCODES\n")
    marker = "[action Testbed-Outgoing]\n"
    assert marker in text
    cfg.path.write_text(text.replace(marker, marker + extra))
    cfg.tb.restart_gateway()


@pytest.mark.qemu
def test_denied_sender_then_next_delivered(testbed):
    token = new_token()
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        r = c.cmd("MAIL FROM:<spammer@int.test>")
        assert r.code == 550 and r.lines[0].startswith("550 5.7.1 "), c.dialogue()
        assert "spammer@int.test" in r.text, c.dialogue()
        assert c.cmd(f"MAIL FROM:<{OUT.sender}>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{OUT.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
        c.cmd("QUIT")
    testbed.wait_for_message(OUT.server, token)


def test_denied_recipient_alone(testbed):
    token = new_token()
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        assert c.cmd(f"MAIL FROM:<{OUT.sender}>").code == 250
        assert c.cmd("RCPT TO:<x@blocked.ext.test>").code == 550, c.dialogue()
        assert c.cmd(f"RCPT TO:<{OUT.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
        c.cmd("QUIT")
    testbed.wait_for_message(OUT.server, token)


def test_sender_rewritten(testbed):
    token = new_token()
    off = testbed.log_offset()
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        assert c.cmd("MAIL FROM:<alice@legacy.int.test>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{OUT.rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
        c.cmd("QUIT")
    got = testbed.wait_for_message(OUT.server, token)
    assert "Return-Path: <alice@int.test>" in got, got[:500]
    assert "smtp rewrite mail-from from=alice@legacy.int.test to=alice@int.test" in \
        testbed.log_since(off)


@pytest.mark.parametrize("path", ["@relay.example,@hop.example:user@ext.test",
                                  "user%ext.test@relay.int.test", "ext.test!user@relay.int.test"])
def test_source_routed_refused(testbed, path):
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        c.ehlo(OUT.helo)
        assert c.cmd(f"MAIL FROM:<{OUT.sender}>").code == 250
        r = c.cmd(f"RCPT TO:<{path}>")
        assert r.code == 550 and "source-routed" in r.text, c.dialogue()
        c.cmd("QUIT")


def test_greeting_rule(testbed):
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        assert c.reply().code == 220
        assert c.cmd("EHLO host.invalid").code == 550, c.dialogue()
        assert c.cmd(f"EHLO {OUT.helo}").code == 250, c.dialogue()
        c.cmd("QUIT")


def test_esmtp_allowlist(testbed):
    with testbed.connect(OUT.client, OUT.server_addr) as c:
        ehlo = c.ehlo(OUT.helo)
        kws = [l[4:].split()[0] for l in ehlo.lines[1:]]
        assert set(kws) <= {"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES",
                            "STARTTLS"}, ehlo.text
        assert "SMTPUTF8" not in ehlo.text and "CHUNKING" not in ehlo.text
        r = c.cmd(f"MAIL FROM:<{OUT.sender}> SMTPUTF8")
        assert r.code == 555, c.dialogue()
        c.cmd("QUIT")


def test_inbound_banner_hidden(testbed):
    with testbed.connect(IN.client, IN.server_addr) as c:
        g = c.reply()
        assert g.text == "220 ESMTP", g.text
        ehlo = c.cmd(f"EHLO {IN.helo}")
        assert ehlo.lines[0] == "250-Hello", ehlo.text
        assert "int-mx" not in c.dialogue() and "int.test" not in ehlo.lines[0]
        c.cmd("QUIT")
