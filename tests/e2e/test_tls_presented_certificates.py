"""The certificates the gateway presents to TLS clients, as `openssl
s_client` sees them.

Inbound (ext-client to int-mx, STARTTLS on 25 and TLS on 465): the
client gets the gateway's Proxy Server certificate - byte for byte the
file `testbed path proxy-server-cert` - and not int-mx's own.

Outbound (int-client to ext-mx, STARTTLS on 25, and TLS on 465 with SNI
mx.ext.test): the client gets a leaf forged for the real server - the
same subject (CN=mx.ext.test) and the same subjectAltName entries (DNS
mx.ext.test and both addresses) as ext-mx's certificate, but not its key
- issued by the gateway's Proxy Authority, sent with the Proxy Authority
certificate after it, and `openssl verify -CAfile <Proxy Authority>`
accepts it, as does s_client itself with that CA and the name
mx.ext.test.
"""

import pytest

from conftest import ADDR, s_client, x509_field, x509_sans, x509_text, x509_verify

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

CASES = {
    "starttls-25": dict(port=25, starttls="smtp"),
    "implicit-465": dict(port=465),
}


def pubkey(pem):
    return x509_text(pem, "-pubkey")


@pytest.mark.parametrize("mode", list(CASES))
def test_inbound_sees_proxy_server_certificate(testbed, mode):
    r, certs = s_client(testbed, "ext-client", ADDR["int-mx"][4], **CASES[mode])
    assert certs, f"no certificate from the gateway:\n{r.stdout}{r.stderr}"
    own = testbed.path("proxy-server-cert").read_text()
    assert x509_field(certs[0], "-fingerprint") == x509_field(own, "-fingerprint")
    assert x509_field(certs[0], "-fingerprint") != x509_field(
        testbed.path("int-mx-cert").read_text(), "-fingerprint")


@pytest.mark.parametrize("mode", list(CASES))
def test_outbound_sees_leaf_forged_by_proxy_authority(testbed, mode):
    pa = testbed.path("proxy-authority-cert")
    pa_pem = pa.read_text()
    real = testbed.path("ext-mx-cert").read_text()
    opts = dict(CASES[mode])
    if mode == "implicit-465":
        opts["servername"] = "mx.ext.test"
    r, certs = s_client(testbed, "int-client", ADDR["ext-mx"][4], **opts)
    assert certs, f"no certificate from the gateway:\n{r.stdout}{r.stderr}"
    leaf = certs[0]

    # The real server's names, the Proxy Authority as issuer, a key of its own.
    assert x509_field(leaf, "-subject") == "CN=mx.ext.test"
    assert x509_sans(leaf) == x509_sans(real)
    assert "DNS:mx.ext.test" in x509_sans(leaf)
    assert x509_field(leaf, "-issuer") == x509_field(pa_pem, "-subject")
    assert pubkey(leaf) != pubkey(real)
    assert x509_field(leaf, "-fingerprint") != x509_field(real, "-fingerprint")
    # The chain: the leaf, then the Proxy Authority.
    assert len(certs) == 2 and x509_field(certs[1], "-fingerprint") == \
        x509_field(pa_pem, "-fingerprint"), certs

    ok, out = x509_verify(leaf, pa)
    assert ok, out
    ok, out = x509_verify(leaf, testbed.path("testbed-ca-cert"))
    assert not ok, "the forged leaf must not verify against the real CA"

    # s_client's own verification, with the name the client wanted.
    r, _ = s_client(testbed, "int-client", ADDR["ext-mx"][4], cafile=pa,
                    extra=("-verify_hostname", "mx.ext.test"), **opts)
    assert "Verify return code: 0 (ok)" in r.stdout, r.stdout
    r, _ = s_client(testbed, "int-client", ADDR["ext-mx"][4], cafile=pa,
                    extra=("-verify_hostname", "other.ext.test"), **opts)
    assert "Verify return code: 62 (hostname mismatch)" in r.stdout, r.stdout
