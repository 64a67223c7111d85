"""allow-cleartext-relay = yes: TLS to the client even though the
destination leg stays in cleartext - only because the action says so.

int-client, through the gateway, to a scripted MX on 198.51.100.26 that
offers no STARTTLS, with the outbound action's allow-cleartext-relay on:
the client's STARTTLS gets `220` and a TLS session with the gateway's
Proxy Server certificate (there is no real certificate to forge from);
the gateway logs `tls client-only reason="destination offers no TLS"
allow-cleartext-relay=yes` and `tls ready side=client` only; the
message reaches the MX, in cleartext.  Without the setting the same
client gets `454` (test_tls_starttls_454.py).
"""

from conftest import flow, new_token, x509_field
from tlsutil import der_to_pem, legs, send_opportunistic, tls_client_session, client_context, \
    tls_mx

FL = flow("outbound", 4)


def test_allow_cleartext_relay(testbed, gateway_config):
    gateway_config.set("action Testbed-Outgoing", "allow-cleartext-relay", "yes")
    with tls_mx(testbed, starttls=False) as srv:
        token = new_token()
        off = testbed.log_offset()
        run = send_opportunistic(testbed, FL, token, addr=srv.addr)
        assert run.starttls_reply.code == 220 and run.client_tls, run.dialogue
        assert run.delivered, run.dialogue
        assert srv.messages[-1][0] is False and token.encode() in srv.messages[-1][1]
        sid = testbed.gateway_session(off, FL.client_addr, run.lport)
        testbed.wait_gateway_line(off, sid, r'tls client-only reason="destination offers no '
                                            r'TLS" allow-cleartext-relay=yes')
        assert legs(testbed, off, sid) == {"client": True, "server": False}

        c = tls_client_session(testbed, FL.client, srv.addr, 25, client_context())
        own = testbed.path("proxy-server-cert").read_text()
        assert x509_field(der_to_pem(c.leaf_der), "-fingerprint") == \
            x509_field(own, "-fingerprint")
