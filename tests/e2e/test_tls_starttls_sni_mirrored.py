"""STARTTLS has a reference name: the client's SNI goes upstream and the
certificate is judged against it.

A scripted MX on 198.51.100.26 offers STARTTLS with a certificate of the
testbed CA for tls-script.ext.test, and records the server_name of
every handshake it sees.  int-client, through the gateway, on port 25:

- STARTTLS with SNI tls-script.ext.test: the destination's handshake
  carries that same SNI (the gateway asked for it only after the
  client's ClientHello - the 220 to STARTTLS came first, and only after
  the destination's own 220); the gateway's verdict is
  `result=ok reference=tls-script.ext.test`; the client is shown a leaf
  for the real names from the Proxy Authority;
- STARTTLS with SNI other.ext.test: it is mirrored too, and the verdict
  is a name mismatch (`class=name-mismatch`, the testbed profile's
  `untrusted-sign`: the client's leaf comes from the untrusted CA);
- STARTTLS without SNI: no SNI upstream, `reference=none`, the chain
  alone judged (`result=ok`, the default on-no-reference-name).
Before, port 25 sent no SNI upstream and checked no name at all.
"""

import pytest

from conftest import ADDR, flow, log_fields, x509_field
from tlsutil import (client_context, der_to_pem, make_cert, tls_client_session, tls_mx,
                     workdir)

FL = flow("outbound", 4)
NAME = "tls-script.ext.test"
CASES = {  # client SNI: (result, class, reference, signed by)
    NAME: ("ok", "-", NAME, "pa"),
    "other.ext.test": ("failed", "name-mismatch", "other.ext.test", "ua"),
    None: ("ok", "-", "none", "pa"),
}


@pytest.mark.parametrize("sni", list(CASES), ids=["matching", "other-name", "no-sni"])
def test_starttls_sni_mirrored_and_judged(testbed, sni):
    result, cls, reference, signer = CASES[sni]
    ca = {"pa": testbed.path("proxy-authority-cert"),
          "ua": testbed.path("untrusted-authority-cert")}[signer]
    with workdir() as d:
        crt, key = make_cert(testbed, d, "mx", NAME, sans=f"DNS:{NAME}")
        with tls_mx(testbed, crt, key) as mx:
            off = testbed.log_offset()
            c = tls_client_session(testbed, FL.client, mx.addr, 25, client_context(), sni=sni)
            sid = testbed.gateway_session(off, FL.client_addr, c.lport)
            v = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
            assert (v["result"], v["class"], v["reference"]) == (result, cls, reference), v
            assert len(mx.handshakes) == 1, mx.handshakes
            assert mx.handshakes[0].sni == sni, mx.handshakes
            assert x509_field(der_to_pem(c.leaf_der), "-issuer") == \
                x509_field(ca.read_text(), "-subject")
            assert x509_field(der_to_pem(c.leaf_der), "-subject") == f"CN={NAME}"
