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
"""

from conftest import flow, message
from tlsutil import client_context, make_cert, tls_client_session, tls_mx, workdir

FL = flow("outbound", 4)
NAME = "tls-script.ext.test"


def test_relink_keeps_reference_name(testbed):
    with workdir() as d:
        good = make_cert(testbed, d, "good", NAME, sans=f"DNS:{NAME}")
        other = make_cert(testbed, d, "other", "other.ext.test", sans="DNS:other.ext.test")
        with tls_mx(testbed, *good) as mx:
            replies = {}

            def after(c):
                assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
                assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
                assert c.cmd("DATA").code == 354, c.dialogue()
                mx.set_cert(*other)
                c.send(message("refused", body="a bare LF\nhere\r\n") + ".\r\n")
                replies["refused"] = c.reply(timeout=20)
                replies["mail"] = c.cmd(f"MAIL FROM:<{FL.sender}>", timeout=30)
                if replies["mail"].code == 250:
                    c.cmd(f"RCPT TO:<{FL.rcpt}>")
                    if c.cmd("DATA").code == 354:
                        c.send(message("second") + ".\r\n")
                        c.reply(timeout=20)
                return []

            off = testbed.log_offset()
            c = tls_client_session(testbed, FL.client, mx.addr, 25, client_context(),
                                   sni=NAME, after=after)
            sid = testbed.gateway_session(off, FL.client_addr, c.lport)
            assert replies["refused"].code == 554, replies
            testbed.wait_gateway_line(off, sid, r"smtp upstream reconnect tls=starttls")
            assert [h.sni for h in mx.handshakes] == [NAME, NAME], mx.handshakes
            line = testbed.wait_gateway_line(off, sid, r"tls verify side=server .*reconnect=yes")
            assert "result=failed" in line and "name mismatch" in line, line
            testbed.wait_gateway_line(off, sid, r"smtp upstream reconnect failed step=tls ")
            assert replies["mail"].code == 421, replies
            assert mx.messages == [], mx.messages
