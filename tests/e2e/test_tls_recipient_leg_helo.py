"""A HELO client's mail goes over TLS too when the recipient leg wants
it: the gateway asks the destination for its extensions itself.

int-client says HELO (not EHLO: it was never shown any extension) to
ext-mx through the gateway, the testbed's action (recipient-encryption
preferred), and sends a message in cleartext.  Before the MAIL goes
upstream, the gateway says EHLO to ext-mx, finds STARTTLS, runs it,
greets again inside TLS, and only then relays the MAIL: the session
logs `tls recipient-leg start`, `tls ready side=server` and `tls
recipient-leg ready`; ext-mx logs the TLS connection and writes `with
ESMTPS`; the client saw plain SMTP replies only.
"""

from conftest import flow, new_token
from tlsutil import legs, mx_saw_tls, received_with_tls, send_opportunistic

FL = flow("outbound", 4)


def test_helo_client_recipient_leg_tls(testbed):
    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token, helo="HELO")
    assert run.delivered and not run.client_tls, run.dialogue
    sid = testbed.gateway_session(off, FL.client_addr, run.lport)
    testbed.wait_gateway_line(off, sid, r"tls recipient-leg start ")
    testbed.wait_gateway_line(off, sid, r"tls recipient-leg ready ")
    assert legs(testbed, off, sid) == {"client": False, "server": True}
    assert mx_saw_tls(testbed, FL, mxoff, off, sid)
    assert received_with_tls(testbed.wait_for_message(FL.server, token))
