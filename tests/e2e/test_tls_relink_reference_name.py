"""A reconnection after a refused message judges the new destination leg
against the same reference name as the first one.

A scripted MX on 198.51.100.26 offers STARTTLS.  int-client, through the
gateway on port 25, says STARTTLS with SNI tls-script.ext.test; the MX's
first certificate names that host (testbed CA): `result=ok`.  Then the
MX's certificate is swapped for one of the same CA that names only
other.ext.test, and the client sends a message the gateway refuses at
its end (a bare LF: 554 5.6.0).  The gateway closes the upstream to
discard it and reconnects, STARTTLS again with the same SNI -- and the
new certificate does not name the host the client asked for, so the
reconnection must fail (`smtp upstream reconnect failed step=tls`) and
the client's next MAIL gets 421: its mail never goes to a server whose
certificate the first leg's verdict would have refused.

Before, the reconnected STARTTLS leg was judged with no reference name
at all (chain only), whatever the first leg was judged on: the next
message went to the wrong-name server.

The same scene with the MX no longer offering STARTTLS at the
reconnection: the new leg may not be weaker than the first, so the
reconnection fails (`step=ehlo`) and nothing goes up in cleartext.

The outbound action does not scan here (streamed_outbound): a held
message is refused with an RSET, and only a streamed one costs the
upstream connection, hence the reconnection.
"""

import ssl

import pytest

from conftest import flow, message
from tlsutil import client_context, make_cert, tls_client_session, tls_mx, workdir

pytestmark = pytest.mark.usefixtures("streamed_outbound")

FL = flow("outbound", 4)
NAME = "tls-script.ext.test"


def converse(mx, change, replies):
    """The client's side: a refused message (after change(mx)), then MAIL."""

    def after(c):
        assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354, c.dialogue()
        change(mx)
        c.send(message("refused", body="a bare LF\nhere\r\n") + ".\r\n")
        replies["refused"] = c.reply(timeout=20)
        replies["mail"] = c.cmd(f"MAIL FROM:<{FL.sender}>", timeout=30)
        if replies["mail"].code == 250:
            c.cmd(f"RCPT TO:<{FL.rcpt}>")
            if c.cmd("DATA").code == 354:
                c.send(message("second") + ".\r\n")
                c.reply(timeout=20)
        return []
    return after


def test_relink_keeps_reference_name(testbed):
    with workdir() as d:
        good = make_cert(testbed, d, "good", NAME, sans=f"DNS:{NAME}")
        other = make_cert(testbed, d, "other", "other.ext.test", sans="DNS:other.ext.test")
        with tls_mx(testbed, *good) as mx:
            # no tickets: the reconnection must meet the new certificate, not
            # resume a session made with the old one
            mx.ctx.options |= ssl.OP_NO_TICKET
            replies = {}
            after = converse(mx, lambda m: m.set_cert(*other), replies)

            off = testbed.log_offset()
            c = tls_client_session(testbed, FL.client, mx.addr, 25, client_context(),
                                   sni=NAME, after=after)
            sid = testbed.gateway_session(off, FL.client_addr, c.lport)
            assert replies["refused"].code == 554, replies
            testbed.wait_gateway_line(off, sid, r"smtp upstream reconnect tls=starttls")
            assert [(h.sni, h.reused) for h in mx.handshakes] == [(NAME, False)] * 2, \
                mx.handshakes
            line = testbed.wait_gateway_line(off, sid, r"tls verify side=server .*reconnect=yes")
            assert "result=failed" in line and "name mismatch" in line, line
            testbed.wait_gateway_line(off, sid, r"smtp upstream reconnect failed step=tls ")
            assert replies["mail"].code == 421, replies
            assert mx.messages == [], mx.messages


def test_relink_no_starttls_no_downgrade(testbed):
    with workdir() as d:
        good = make_cert(testbed, d, "good", NAME, sans=f"DNS:{NAME}")
        with tls_mx(testbed, *good) as mx:
            replies = {}

            def drop_starttls(m):
                m.starttls = False

            off = testbed.log_offset()
            c = tls_client_session(testbed, FL.client, mx.addr, 25, client_context(),
                                   sni=NAME, after=converse(mx, drop_starttls, replies))
            sid = testbed.gateway_session(off, FL.client_addr, c.lport)
            assert replies["refused"].code == 554, replies
            line = testbed.wait_gateway_line(off, sid, r"smtp upstream reconnect failed ")
            assert "step=ehlo" in line and "STARTTLS" in line, line
            assert replies["mail"].code == 421, replies
            assert len(mx.handshakes) == 1, mx.handshakes
            assert mx.messages == [], mx.messages
            # the second connection said EHLO and nothing after it
            assert [cmd.split(" ")[0] for cmd in mx.commands[1]] == ["EHLO"], mx.commands
