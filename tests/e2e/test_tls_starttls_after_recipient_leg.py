"""A client may still ask for TLS after the gateway took the recipient leg
to TLS on its own: its handshake is judged against the certificate that
leg already has, with the client's SNI as reference name.

int-client says EHLO to ext-mx through the gateway and starts a
transaction in cleartext: before its MAIL the gateway runs STARTTLS to
ext-mx itself (`tls ready side=server`, verdict `reference=none`).  The
client then says RSET and STARTTLS with SNI mx.ext.test: no second
STARTTLS goes upstream; the gateway answers `220`, and the certificate
ext-mx presented is judged again, now against mx.ext.test (`tls verify
... reference=mx.ext.test`); the client gets a leaf for mx.ext.test
from the Proxy Authority and its message is delivered over TLS on both
legs.
"""

from conftest import SmtpConn, flow, log_fields, new_token, x509_field
from tlsutil import client_context, der_to_pem, legs, received_with_tls

FL = flow("outbound", 4)


def test_client_starttls_after_recipient_leg_tls(testbed):
    token = new_token()
    off = testbed.log_offset()
    with SmtpConn.open(testbed.netns(FL.client), FL.server_addr, 25, 0, timeout=20) as c:
        assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
        assert c.cmd(f"MAIL FROM:<{FL.sender}>", timeout=20).code == 250, c.dialogue()
        assert c.cmd("RSET").code == 250, c.dialogue()
        assert c.cmd("STARTTLS", timeout=20).code == 220, c.dialogue()
        c.sock = client_context().wrap_socket(c.sock, server_hostname="mx.ext.test")
        leaf = der_to_pem(c.sock.getpeercert(binary_form=True))
        assert c.cmd(f"EHLO {FL.helo}").code == 250, c.dialogue()
        assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354, c.dialogue()
        c.send(f"Subject: {token}\r\n\r\n{token}\r\n.\r\n")
        assert c.reply(timeout=20).code == 250, c.dialogue()
        c.cmd("QUIT")
        lport = c.lport
    sid = testbed.gateway_session(off, FL.client_addr, lport)
    lines = [l for l in testbed.log_since(off).splitlines() if f" {sid} " in l]
    verdicts = [log_fields(l) for l in lines if " tls verify side=server " in l]
    assert [(v["result"], v["reference"]) for v in verdicts] == \
        [("ok", "none"), ("ok", "mx.ext.test")], "\n".join(lines)
    assert sum(" tls ready side=server " in l for l in lines) == 1, "\n".join(lines)
    assert legs(testbed, off, sid) == {"client": True, "server": True}
    pa = testbed.path("proxy-authority-cert").read_text()
    assert x509_field(leaf, "-issuer") == x509_field(pa, "-subject")
    assert x509_field(leaf, "-subject") == "CN=mx.ext.test"
    assert received_with_tls(testbed.wait_for_message(FL.server, token))
