"""tls-action allow: the client's TLS is relayed untouched, and the
recipient leg still stands on its own for a client that does not use
TLS.

The outbound policy gets TLS Support disabled (port 25 only: implicit
TLS could only be inspected) and its action tls-action allow.
int-client to ext-mx through the gateway:

- STARTTLS (shown because ext-mx offers it): relayed to ext-mx, whose
  220 makes the gateway splice the legs (`tls action=allow spliced=yes
  inspected=no`); the client's handshake is with ext-mx itself - it sees
  ext-mx's own certificate, byte for byte - and the gateway logs no `tls
  ready` line; ext-mx logs the TLS connection and the message arrives;
- a client that never says STARTTLS: before its MAIL the gateway runs
  STARTTLS to ext-mx itself (recipient-encryption preferred): `tls ready
  side=server` only, ext-mx saw TLS (log and `with ESMTPS`), delivered.
"""

from conftest import flow, new_token, x509_field
from tlsutil import (client_context, der_to_pem, legs, mx_saw_tls, received_with_tls,
                     send_opportunistic, tls_client_session)

FL = flow("outbound", 4)


def test_tls_action_allow(testbed, gateway_config):
    gateway_config.update({("policy SMTP-Proxy-Out", "tls-support"): "disabled",
                           ("action Testbed-Outgoing", "tls-action"): "allow"})
    real = testbed.path("ext-mx-cert").read_text()

    # STARTTLS relayed and spliced: the real certificate reaches the client.
    off = testbed.log_offset()
    c = tls_client_session(testbed, FL.client, FL.server_addr, 25, client_context(),
                           sni="mx.ext.test")
    assert x509_field(der_to_pem(c.leaf_der), "-fingerprint") == x509_field(real, "-fingerprint")
    sid = testbed.gateway_session(off, FL.client_addr, c.lport)
    testbed.wait_gateway_line(off, sid, r"tls action=allow spliced=yes inspected=no")
    assert legs(testbed, off, sid) == {"client": False, "server": False}

    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token, sni="mx.ext.test")
    assert run.client_tls and run.delivered, run.dialogue
    sid = testbed.gateway_session(off, FL.client_addr, run.lport)
    testbed.wait_gateway_line(off, sid, r"tls action=allow spliced=yes")
    assert mx_saw_tls(testbed, FL, mxoff, off, sid)
    assert received_with_tls(testbed.wait_for_message(FL.server, token))

    # A cleartext client: the recipient leg goes TLS on its own.
    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token, use_starttls=False)
    assert run.starttls_shown and not run.client_tls and run.delivered, run.dialogue
    sid = testbed.gateway_session(off, FL.client_addr, run.lport)
    assert legs(testbed, off, sid) == {"client": False, "server": True}
    assert mx_saw_tls(testbed, FL, mxoff, off, sid)
    assert received_with_tls(testbed.wait_for_message(FL.server, token))
