"""Name matching follows RFC 9525: a name found only in the subject CN of
a certificate without DNS names does not match, unless the TLS profile
allows the old fallback (`allow-cn-fallback = yes`, for legacy servers).

A scripted MX on 198.51.100.26 presents a certificate of the testbed CA
whose only name is its subject CN=tls-script.ext.test (no
subjectAltName at all).  int-client, through the gateway, asks for that
very name as SNI, on 25 (STARTTLS) and on 465:

- the testbed profile as it is: `result=failed class=name-mismatch`, so
  the client's leaf comes from the untrusted CA (before, such a
  certificate was forged by the Proxy Authority: OpenSSL's own default
  falls back to the CN);
- with `allow-cn-fallback = yes`: `result=ok`, the Proxy Authority signs.
"""

import pytest

from conftest import flow, log_fields, x509_field
from tlsutil import (client_context, der_to_pem, make_cert, tls_client_session, tls_mx,
                     workdir)

FL = flow("outbound", 4)
NAME = "tls-script.ext.test"


@pytest.mark.parametrize("port", [25, 465])
@pytest.mark.parametrize("fallback", [False, True], ids=["rfc9525", "cn-fallback"])
def test_cn_only_certificate(testbed, gateway_config, fallback, port):
    if fallback:
        gateway_config.set("tls-profile Testbed", "allow-cn-fallback", "yes")
    signer = "proxy-authority-cert" if fallback else "untrusted-authority-cert"
    with workdir() as d:
        crt, key = make_cert(testbed, d, "cn-only", NAME, sans=None)
        with tls_mx(testbed, crt, key, implicit=(port == 465)) as mx:
            off = testbed.log_offset()
            c = tls_client_session(testbed, FL.client, mx.addr, port, client_context(),
                                   sni=NAME)
            sid = testbed.gateway_session(off, FL.client_addr, c.lport)
            v = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
            expect = ("ok", "-") if fallback else ("failed", "name-mismatch")
            assert (v["result"], v["class"], v["reference"]) == (*expect, NAME), v
            leaf = der_to_pem(c.leaf_der)
            assert x509_field(leaf, "-issuer") == \
                x509_field(testbed.path(signer).read_text(), "-subject")
            assert x509_field(leaf, "-subject") == f"CN={NAME}"
