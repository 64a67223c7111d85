"""When the gateway takes the recipient leg to TLS on its own, the client
keeps a consistent view: what it was shown and the destination no
longer offers inside TLS is withdrawn, never sent upstream.

A scripted MX on 198.51.100.26 offers STARTTLS and, in cleartext, DSN
and SMTPUTF8 - inside TLS neither.  int-client (cleartext: it never says
STARTTLS) is shown DSN and SMTPUTF8 by the gateway.  Its first MAIL,
with SMTPUTF8, makes the gateway run STARTTLS upstream and greet again;
the gateway logs `tls recipient-leg ready ... withdrawn=SMTPUTF8,DSN`,
refuses that MAIL itself (`555 5.5.4`), and the MX never sees an
SMTPUTF8 parameter.  A MAIL without it goes through, and the message
reaches the MX over TLS.
"""

from conftest import flow, log_fields, new_token
from tlsutil import make_cert, tls_mx, workdir, SmtpConn

FL = flow("outbound", 4)
KW = ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES")


def test_capabilities_withdrawn_after_own_tls(testbed):
    with workdir() as d:
        crt, key = make_cert(testbed, d, "mx", "tls-script.ext.test",
                             sans="DNS:tls-script.ext.test")
        with tls_mx(testbed, crt, key, ehlo=KW + ("DSN", "SMTPUTF8"), ehlo_tls=KW) as srv:
            token = new_token()
            off = testbed.log_offset()
            with SmtpConn.open(testbed.netns(FL.client), srv.addr, 25, 0) as c:
                ehlo = c.ehlo(FL.helo)
                assert "SMTPUTF8" in ehlo.text and "DSN" in ehlo.text, c.dialogue()
                r = c.cmd(f"MAIL FROM:<{FL.sender}> SMTPUTF8", timeout=20)
                assert r.text.startswith("555 5.5.4"), c.dialogue()
                assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
                assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
                assert c.cmd("DATA").code == 354, c.dialogue()
                c.send(f"Subject: {token}\r\n\r\n{token}\r\n.\r\n")
                assert c.reply(timeout=20).code == 250, c.dialogue()
                c.cmd("QUIT")
                lport = c.lport
            sid = testbed.gateway_session(off, FL.client_addr, lport)
            ready = log_fields(testbed.wait_gateway_line(off, sid, r"tls recipient-leg ready "))
            assert ready["withdrawn"] == "SMTPUTF8,DSN" or \
                set(ready["withdrawn"].split(",")) == {"SMTPUTF8", "DSN"}, ready
            mails = [x for cmds in srv.commands for x in cmds if x.upper().startswith("MAIL")]
            assert mails == [f"MAIL FROM:<{FL.sender}>"], mails
            assert srv.messages[-1][0] is True and token.encode() in srv.messages[-1][1]
