"""Mail over TLS through the gateway: STARTTLS on 25 and implicit TLS on
465, outbound and inbound, is delivered.

swaks sends one message per case, with `-tls` (STARTTLS on port 25) or
`-tlsc --port 465` (TLS from the first byte), from int-client to ext-mx
(outbound) or from ext-client to int-mx (inbound).  Each message reaches
the receiving Postfix's Maildir; swaks reports its TLS session; the
gateway logs, for the session, both legs as TLS (`tls ready side=server`
towards the real server, `tls ready side=client` towards the client) and
the real server's certificate as validated against the testbed CA
(`tls verify side=server result=ok`); and the receiving Postfix logs a TLS
connection from the gateway's upstream leg - the message crossed
encrypted on both sides, decrypted only inside the gateway.
"""

import re

import pytest

from conftest import flow, log_fields, log_unquote, new_token, random_lport

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

MODES = {
    "starttls-25": ["-tls"],
    "implicit-465": ["--port", "465", "-tlsc"],
}


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
@pytest.mark.parametrize("mode", list(MODES))
def test_tls_mail_delivered(testbed, direction, mode):
    fl = flow(direction, 4)
    port = 465 if mode == "implicit-465" else 25
    token = new_token()
    lport = random_lport()
    off = testbed.log_offset()
    mxoff = testbed.maillog_offset(fl.server)

    r = testbed.swaks(fl, token, lport=lport, extra=MODES[mode])
    assert r.returncode == 0, f"swaks failed:\n{r.stdout}{r.stderr}"
    assert "=== TLS started with cipher" in r.stdout, r.stdout
    testbed.wait_for_message(fl.server, token)

    line, f = testbed.wait_for_session(off, fl.client_addr, lport)
    assert f["server"] == f"{fl.server_addr}:{port}", line
    assert (f["direction"], f["policy"]) == (fl.direction, fl.policy), line
    sid = testbed.gateway_session(off, fl.client_addr, lport)
    up = log_fields(testbed.wait_gateway_line(off, sid, r"tls ready side=server "))
    down = log_fields(testbed.wait_gateway_line(off, sid, r"tls ready side=client "))
    for leg in (up, down):
        assert leg["version"] in ("TLSv1.2", "TLSv1.3"), leg
    assert log_unquote(up["subject"]) == f"/CN=mx.{fl.rcpt.split('@')[1]}", up
    assert log_unquote(up["issuer"]).endswith("/CN=smtpgw testbed CA"), up
    verdict = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
    assert (verdict["result"], verdict["action"]) == ("ok", "allow"), verdict

    # The real server saw TLS from the gateway's upstream leg.
    sess = testbed.mx_session(fl.server, mxoff, *testbed.upstream_endpoint(off, sid))
    assert any(re.search(r"TLS connection established from ", l) for l in sess.lines), sess
