"""tls-action drop: no TLS on either leg.

The outbound policy gets TLS Support disabled and its action tls-action
drop.  int-client to ext-mx (which offers STARTTLS) through the gateway:
the client is not shown STARTTLS, its STARTTLS is answered `502`, and
its message is delivered with both legs in cleartext - no `tls ready`
line for the session, ext-mx logs no TLS connection and writes `with
ESMTP` (not ESMTPS): drop also keeps the gateway from encrypting the
recipient leg on its own.  (drop with an encryption `required` is
refused by smtpgw -t: it could never deliver.)
"""

from conftest import flow, new_token
from tlsutil import legs, mx_saw_tls, received_with_tls, send_opportunistic

FL = flow("outbound", 4)


def test_tls_action_drop(testbed, gateway_config):
    gateway_config.update({("policy SMTP-Proxy-Out", "tls-support"): "disabled",
                           ("action Testbed-Outgoing", "tls-action"): "drop"})
    with testbed.connect(FL.client, FL.server_addr, 25) as c:
        assert "STARTTLS" not in c.ehlo(FL.helo).text, c.dialogue()
        r = c.cmd("STARTTLS")
        assert r.code == 502, c.dialogue()

    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token)
    assert not run.starttls_shown and run.delivered, run.dialogue
    sid = testbed.gateway_session(off, FL.client_addr, run.lport)
    assert legs(testbed, off, sid) == {"client": False, "server": False}
    assert not mx_saw_tls(testbed, FL, mxoff, off, sid)
    assert received_with_tls(testbed.wait_for_message(FL.server, token)) is False
