"""recipient-encryption = required and no TLS to the destination: the
mail stays with the sender - `451 4.7.4` to MAIL, a temporary refusal
(as Postfix defers at `smtp_tls_security_level = encrypt`), and not one
command of the transaction reaches the destination.

int-client, through the gateway, with the outbound action's
recipient-encryption set to required, to a scripted MX on 198.51.100.26
that either offers no STARTTLS or answers it `454`.  The client does
not use TLS (sender leg in cleartext): for the MX that refuses
STARTTLS, the gateway tries its own STARTTLS first (the MX sees it) and
then refuses the MAIL; a client that asks for STARTTLS itself gets the
`454` first, then the same `451 4.7.4`.
"""

import pytest

from conftest import flow, new_token
from tlsutil import send_opportunistic, tls_mx

FL = flow("outbound", 4)


@pytest.mark.parametrize("client_starttls", [False, True], ids=["cleartext-client",
                                                                 "starttls-client"])
@pytest.mark.parametrize("mx", ["no-starttls", "refuses-starttls"])
def test_recipient_required_unavailable(testbed, gateway_config, mx, client_starttls):
    gateway_config.set("action Testbed-Outgoing", "recipient-encryption", "required")
    kw = dict(starttls=False) if mx == "no-starttls" else \
        dict(starttls_reply="454 4.7.0 TLS not available due to local problem")
    with tls_mx(testbed, **kw) as srv:
        run = send_opportunistic(testbed, FL, new_token(), addr=srv.addr,
                                 use_starttls=client_starttls)
        if client_starttls:
            assert run.starttls_reply.code == 454, run.dialogue
        assert run.mail_reply.text.startswith("451 4.7.4 "), run.dialogue
        assert not run.delivered
        sent = [c.split()[0].upper() for cmds in srv.commands for c in cmds]
        assert "MAIL" not in sent and "RCPT" not in sent, sent
        if mx == "refuses-starttls":
            assert "STARTTLS" in sent, sent
