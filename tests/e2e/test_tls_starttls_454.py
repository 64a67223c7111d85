"""The 454 path: a client that asks for TLS the destination leg cannot
have is told so (RFC 3207 `454`), and its mail still goes on - in
cleartext on both legs, visibly, never TLS to the client with cleartext
behind it.

int-client, through the gateway (the testbed's action: sender and
recipient encryption preferred, no allow-cleartext-relay), says EHLO to
a scripted MX on 198.51.100.26 and uses STARTTLS, which the gateway
shows it:

- the MX offers no STARTTLS: the gateway answers the client's STARTTLS
  itself, `454 4.7.0 TLS not available: the destination does not offer
  TLS`;
- the MX offers STARTTLS but answers it `454 4.7.0`: the gateway sent
  the client's STARTTLS upstream first, and relays that 454.
In both cases the client goes on in cleartext and its message reaches
the MX in cleartext; the gateway logs no `tls ready` line for the
session.  A client that does not ask for TLS under the second MX: the
gateway's own STARTTLS for the recipient leg is refused the same way,
and the mail goes on in cleartext (recipient-encryption preferred).
"""

import pytest

from conftest import flow, new_token
from tlsutil import legs, send_opportunistic, tls_mx

FL = flow("outbound", 4)


@pytest.mark.parametrize("mx", ["no-starttls", "refuses-starttls"])
def test_starttls_454(testbed, mx):
    kw = dict(starttls=False) if mx == "no-starttls" else \
        dict(starttls_reply="454 4.7.0 TLS not available due to local problem")
    with tls_mx(testbed, **kw) as srv:
        token = new_token()
        off = testbed.log_offset()
        run = send_opportunistic(testbed, FL, token, addr=srv.addr)
        assert run.starttls_shown, run.dialogue
        assert run.starttls_reply.code == 454, run.dialogue
        if mx == "no-starttls":
            assert "the destination does not offer TLS" in run.starttls_reply.text
            assert not any(c.upper() == "STARTTLS" for cmds in srv.commands for c in cmds)
        else:
            assert run.starttls_reply.text == "454 4.7.0 TLS not available due to local problem"
        assert run.delivered and not run.client_tls, run.dialogue
        assert len(srv.messages) == 1 and srv.messages[0][0] is False
        assert token.encode() in srv.messages[0][1]
        sid = testbed.gateway_session(off, FL.client_addr, run.lport)
        assert legs(testbed, off, sid) == {"client": False, "server": False}

        if mx == "refuses-starttls":
            token = new_token()
            off = testbed.log_offset()
            run = send_opportunistic(testbed, FL, token, addr=srv.addr, use_starttls=False)
            assert run.delivered, run.dialogue
            sid = testbed.gateway_session(off, FL.client_addr, run.lport)
            testbed.wait_gateway_line(off, sid, r'tls recipient-leg cleartext reason="the '
                                                r'destination answered STARTTLS with 454"')
            assert srv.messages[-1][0] is False and token.encode() in srv.messages[-1][1]
