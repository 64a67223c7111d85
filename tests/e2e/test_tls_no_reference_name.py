"""A client without SNI gives no reference name: the verdict says so
(`reference=none`) and the TLS profile's `on-no-reference-name` decides
what that means - on 25 after STARTTLS and on 465 alike.

ext-mx presents its good certificate (testbed CA, mx.ext.test).
int-client connects through the gateway with `openssl s_client
-noservername`, on 25 (STARTTLS) and 465, while the testbed profile has:

- `chain-only` (the default): the chain alone is judged, `result=ok
  reference=none`; the leaf comes from the Proxy Authority;
- `untrusted-sign`: `result=failed class=no-reference-name
  action=untrusted-sign`; the leaf comes from the untrusted CA;
- `block`: `action=block`; the handshake fails, no certificate is sent;
- `name:mx.ext.test`: that name is the reference (`result=ok
  reference=mx.ext.test`), Proxy Authority;
- `name:other.ext.test`: checked and not found: `class=name-mismatch`,
  the profile's on-name-mismatch (untrusted-sign) applies.
With `block`, a client that does send SNI (mx.ext.test) is judged
against it as always and gets its Proxy Authority leaf: the setting is
only about the missing name.
"""

import pytest

from conftest import ADDR, flow, log_fields, random_lport, s_client, x509_field

FL = flow("outbound", 4)
MX = ADDR["ext-mx"][4]

CASES = {  # setting: (result, class, action, reference, signer or None: blocked)
    "chain-only": ("ok", "-", "allow", "none", "pa"),
    "untrusted-sign": ("failed", "no-reference-name", "untrusted-sign", "none", "ua"),
    "block": ("failed", "no-reference-name", "block", "none", None),
    "name:mx.ext.test": ("ok", "-", "allow", "mx.ext.test", "pa"),
    "name:other.ext.test": ("failed", "name-mismatch", "untrusted-sign", "other.ext.test",
                            "ua"),
}


def run(testbed, port, servername=None):
    off = testbed.log_offset()
    lport = random_lport()
    opts = dict(starttls="smtp") if port == 25 else {}
    r, certs = s_client(testbed, FL.client, MX, port, servername=servername,
                        extra=("-bind", f"{FL.client_addr}:{lport}"), **opts)
    sid = testbed.gateway_session(off, FL.client_addr, lport)
    v = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
    return off, sid, r, certs, v


@pytest.mark.parametrize("port", [25, 465])
@pytest.mark.parametrize("setting", list(CASES))
def test_no_reference_name(testbed, gateway_config, setting, port):
    result, cls, action, reference, signer = CASES[setting]
    if setting != "chain-only":
        gateway_config.set("tls-profile Testbed", "on-no-reference-name", setting)
    off, sid, r, certs, v = run(testbed, port)
    assert (v["result"], v["class"], v["action"], v["reference"]) == \
        (result, cls, action, reference), v
    if signer is None:
        assert certs == [], f"blocked, yet a certificate came:\n{r.stdout}"
        testbed.wait_gateway_line(off, sid, r"session end reason=tls-upstream-certificate-"
                                            r"blocked")
        # A client with SNI is judged against it: the setting does not apply.
        _, _, r, certs, v = run(testbed, port, servername="mx.ext.test")
        assert (v["result"], v["reference"]) == ("ok", "mx.ext.test"), v
        signer = "pa"
    assert certs, f"no certificate:\n{r.stdout}{r.stderr}"
    ca = testbed.path({"pa": "proxy-authority-cert", "ua": "untrusted-authority-cert"}[signer])
    assert x509_field(certs[0], "-issuer") == x509_field(ca.read_text(), "-subject")
