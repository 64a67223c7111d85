"""A refused message keeps its session: the client's next message is delivered.

Proves, with real Postfix destinations:
- a streamed message that smtpgw refuses at its end (a bare LF: 554
  5.6.0; a 1200-octet line: 500 5.5.2) gets that reply at the client's end
  of data; the destination never gets the end of that message (its smtpd
  logs the first connection lost after DATA, nothing queued); the gateway
  reconnects to the same destination ("smtp upstream reconnected") and
  the next transaction of the same client session -- MAIL pipelined right
  behind the refused dot included -- is delivered: the destination has
  exactly one message of the session, the second;
- inbound, where the predefined rulesets may change a message (strip an
  attachment) and so every message is held until its verdict: the
  refused one never reaches the destination (NOOP, RSET on the same
  connection) and the next one is delivered over it;
- outbound over TLS: STARTTLS on 25 (the new
  upstream leg negotiates TLS again: "tls verify ... reconnect=yes", and
  ext-mx logs a TLS connection for it) and implicit TLS on 465;
- with hold = always the refused message never reaches the destination at
  all: its DATA is never sent, an RSET discards the transaction, and the
  same upstream connection carries the next message (no reconnection).

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import re

import pytest

from conftest import (dot_stuff, flow, log_fields, message, new_token, random_lport,
                      split_hostport)

pytestmark = pytest.mark.usefixtures("streamed_outbound")

REFUSALS = {
    "bare-lf": ("a line with a bare LF\nhere\r\n", 554, "5.6.0"),
    "long-line": ("x" * 1200 + "\r\nshort line\r\n", 500, "5.5.2"),
}


def refused_data(token, body):
    # Not dot_stuff(): it would split the bare LF line.
    return message(token, body=body) + ".\r\n"


def converse(c, fl, token1, body, code, enh, token2, tls):
    """The refused message, then the good one, in one client session."""
    if tls == "465":
        c.start_tls()
    c.ehlo(fl.helo)
    if tls == "starttls":
        assert c.cmd("STARTTLS").code == 220, c.dialogue()
        c.start_tls()
        assert c.cmd(f"EHLO {fl.helo}").code == 250, c.dialogue()
    assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250, c.dialogue()
    assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250, c.dialogue()
    assert c.cmd("DATA").code == 354, c.dialogue()
    # the next MAIL pipelined right behind the refused message's dot
    c.send(refused_data(token1, body) + f"MAIL FROM:<{fl.sender}>\r\n")
    r = c.reply(timeout=20)
    assert r.code == code and r.lines[-1].startswith(f"{code} {enh} "), c.dialogue()
    assert c.reply(timeout=20).code == 250, c.dialogue()  # the MAIL, on the new connection
    assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250, c.dialogue()
    assert c.cmd("DATA").code == 354, c.dialogue()
    c.send(dot_stuff(message(token2)))
    assert c.reply(timeout=20).code == 250, c.dialogue()
    assert c.cmd("QUIT").code == 221, c.dialogue()


def run(testbed, fl, refusal, tls=None):
    body, code, enh = REFUSALS[refusal]
    token1, token2 = new_token(), new_token()
    offset = testbed.log_offset()
    mx_off = testbed.maillog_offset(fl.server)
    lport = random_lport()
    port = 465 if tls == "465" else 25
    with testbed.connect(fl.client, fl.server_addr, port=port, lport=lport) as c:
        converse(c, fl, token1, body, code, enh, token2, tls)
    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    # the first upstream connection: aborted after DATA, nothing queued
    first = testbed.mx_session(fl.server, mx_off, *testbed.upstream_endpoint(offset, sid))
    assert " data=0/1 " in first.disconnect, first
    testbed.assert_not_queued(fl.server, first, token1)
    # the second: reconnected, then the next message
    line = testbed.wait_gateway_line(offset, sid, r"smtp upstream reconnected ")
    assert "compatible=yes" in line, line
    # TLS again exactly when the first upstream leg had it: with the
    # testbed's recipient-encryption (preferred) that is every leg to a
    # destination offering STARTTLS, whether the client asked for TLS or not
    sess_log = "\n".join(l for l in testbed.log_since(offset).splitlines() if f" {sid} " in l)
    before = sess_log.split("smtp upstream reconnect ", 1)[0]
    first_tls = "tls ready side=server" in before
    assert ("tls=yes" in line) == first_tls, line
    if tls is not None:
        assert first_tls, line
    conn = testbed.wait_gateway_line(offset, sid, r"smtp upstream reconnect connected ")
    second = testbed.mx_session(fl.server, mx_off, *split_hostport(log_fields(conn)["local"]))
    assert " data=1 " in second.disconnect, second
    if tls:
        assert testbed.wait_gateway_line(offset, sid, r"tls verify side=server result=ok .*"
                                         r"reconnect=yes")
        assert any("TLS connection established" in l for l in second.lines), second
    testbed.wait_for_messages(fl.server, token2, 1)
    assert len(testbed.messages_with(fl.server, token2)) == 1
    assert testbed.messages_with(fl.server, token1) == []
    end = testbed.wait_gateway_line(offset, sid, r"session end ")
    assert "reconnects=1" in end, end


def run_held(testbed, fl, refusal):
    """The action may change messages (inbound: the predefined rulesets strip
    attachments), so each is held until its verdict: the refused one never
    reaches the destination -- NOOPs in DATA's place, then RSET -- and the
    same upstream connection carries the next message."""
    body, code, enh = REFUSALS[refusal]
    token1, token2 = new_token(), new_token()
    offset = testbed.log_offset()
    mx_off = testbed.maillog_offset(fl.server)
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        converse(c, fl, token1, body, code, enh, token2, None)
    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    sess = testbed.mx_session(fl.server, mx_off, *testbed.upstream_endpoint(offset, sid))
    stats = dict(re.findall(r"(\w+)=(\S+)", sess.disconnect))
    assert stats.get("data") == "1" and stats.get("rset") == "1", sess
    testbed.wait_for_messages(fl.server, token2, 1)
    assert len(testbed.messages_with(fl.server, token2)) == 1
    assert testbed.messages_with(fl.server, token1) == []
    log = "\n".join(l for l in testbed.log_since(offset).splitlines() if f" {sid} " in l)
    assert "held=yes" in log and "smtp upstream reconnect" not in log, log
    end = testbed.wait_gateway_line(offset, sid, r"session end ")
    assert "reconnects=0" in end, end


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_next_message_delivered(testbed, refusal):
    run(testbed, flow("outbound", 4), refusal)


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_next_message_delivered_inbound_held(testbed, refusal):
    run_held(testbed, flow("inbound", 4), refusal)


@pytest.mark.parametrize("tls", ["starttls", "465"])
def test_next_message_delivered_tls(testbed, tls):
    run(testbed, flow("outbound", 4), "bare-lf", tls=tls)


def test_next_message_delivered_ipv6(testbed):
    run(testbed, flow("outbound", 6), "bare-lf")


def test_held_refusal_never_reaches_destination(testbed, gateway_config):
    """hold = always: the destination sees NOOP and RSET, never DATA for it."""
    gateway_config.set("global", "hold", "always")
    fl = flow("outbound", 4)
    body, code, enh = REFUSALS["bare-lf"]
    token1, token2 = new_token(), new_token()
    offset = testbed.log_offset()
    mx_off = testbed.maillog_offset(fl.server)
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        converse(c, fl, token1, body, code, enh, token2, None)
    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    sess = testbed.mx_session(fl.server, mx_off, *testbed.upstream_endpoint(offset, sid))
    # one connection: two NOOPs in DATA's place, one RSET, one DATA (the good one)
    stats = dict(re.findall(r"(\w+)=(\S+)", sess.disconnect))
    assert stats.get("data") == "1" and stats.get("rset") == "1", sess
    assert stats.get("noop") == "2" and stats.get("mail") == "2", sess
    testbed.wait_for_messages(fl.server, token2, 1)
    assert testbed.messages_with(fl.server, token1) == []
    log = testbed.log_since(offset)
    assert "smtp upstream reconnect" not in log
    end = testbed.wait_gateway_line(offset, sid, r"session end ")
    assert "reconnects=0" in end, end
