"""A destination with a bad certificate: what the TLS profile says is what
the client gets - a forgery it can see is untrusted, a refusal, or a
trusted forgery.

ext-mx is given, in turn (`testbed mx-cert`), five bad certificates for
mx.ext.test: self-signed; issued by a CA nobody trusts; issued by an
intermediate of the testbed CA that the server does not send (the
profile trusts the root only); issued by the testbed CA but expired; and
issued by the testbed CA for another name (wrong-name: checked against
the client's SNI, the reference name, on 25 after STARTTLS as on 465).
int-client connects through the gateway with `openssl s_client` on 25
(STARTTLS) and 465, both with SNI mx.ext.test, with the policy's action
using one of three profiles:

- default (the testbed's profile, every class `untrusted-sign`): the
  leaf is forged for the real names but issued by the untrusted CA, so
  `openssl verify` against the Proxy Authority fails (against the
  untrusted CA it succeeds); mail from an opportunistic client (swaks,
  no verification) is still delivered.  A STARTTLS client that sends no
  SNI gives no reference name (`reference=none`): the profile's default
  `on-no-reference-name = chain-only` judges the chain alone, so the
  wrong-name certificate validates and is forged by the Proxy Authority
  with the real, wrong names - a client checking mx.ext.test still sees
  the mismatch.
- Mixed-A (on-expired = block, on-untrusted-issuer = allow,
  on-name-mismatch = block) and Mixed-B (the other way round): per class,
  `block` refuses the session - the client's handshake never completes
  and no certificate is sent, on 465 and after STARTTLS alike (the
  client's hello is read before the verdict, which needs its SNI; until
  the reference name came to STARTTLS, 25 answered STARTTLS itself with
  `421 4.7.5`) - and `allow` forges with the Proxy Authority (the leaf
  verifies against it).
The gateway logs each verdict: `tls verify side=server result=failed
class=<class> action=<action> reference=mx.ext.test`.
"""

import pytest

from conftest import (ADDR, flow, log_fields, new_token, random_lport, s_client,
                      x509_field, x509_verify)

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

KINDS = {  # kind: the class the gateway must find
    "self-signed": "untrusted-issuer",
    "unknown-ca": "untrusted-issuer",
    "missing-intermediate": "untrusted-issuer",
    "expired": "expired",
    "wrong-name": "name-mismatch",
}

PHASES = {  # phase: (proxy action, {class: action})
    "default": ("Testbed-Outgoing", {c: "untrusted-sign" for c in KINDS.values()}),
    "mixed-a": ("Out-Mixed-A", {"expired": "block", "untrusted-issuer": "allow",
                                "name-mismatch": "block"}),
    "mixed-b": ("Out-Mixed-B", {"expired": "allow", "untrusted-issuer": "block",
                                "name-mismatch": "allow"}),
}

CASES = [(p, k) for p in PHASES for k in KINDS]
FL = flow("outbound", 4)
MX = ADDR["ext-mx"][4]


@pytest.fixture(scope="module")
def matrix(testbed, module_gateway_config):
    """The Mixed profiles and their actions, added once; ext-mx gets its
    good certificate back at the end."""
    ca = testbed.path("testbed-ca-cert")
    settings = {}
    for phase, (action, classes) in PHASES.items():
        if phase == "default":
            continue
        profile = "Testbed-" + phase.title()
        settings[(f"tls-profile {profile}", "ca-file")] = str(ca)
        for cls, act in classes.items():
            settings[(f"tls-profile {profile}", f"on-{cls}")] = act
        settings[(f"action {action}", "tls-profile")] = profile
    module_gateway_config.update(settings)
    try:
        yield module_gateway_config
    finally:
        testbed.mx_cert("ext-mx", "good")


def connect(testbed, port, lport, **kw):
    """s_client from int-client to ext-mx through the gateway, from lport
    (SNI mx.ext.test unless servername=None is given)."""
    opts = dict(starttls="smtp") if port == 25 else {}
    opts["servername"] = "mx.ext.test"
    opts.update(kw)
    extra = ("-bind", f"{FL.client_addr}:{lport}", *opts.pop("extra", ()))
    return s_client(testbed, "int-client", MX, port, extra=extra, **opts)


def verdict(testbed, off, lport):
    sid = testbed.gateway_session(off, FL.client_addr, lport)
    return sid, log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))


@pytest.mark.parametrize("phase,kind", CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_bad_upstream_certificate(testbed, matrix, phase, kind):
    action, classes = PHASES[phase]
    cls = KINDS[kind]
    expect = classes[cls]
    matrix.set("policy SMTP-Proxy-Out", "action", action)
    testbed.mx_cert("ext-mx", kind)
    pa = testbed.path("proxy-authority-cert")
    ua = testbed.path("untrusted-authority-cert")

    for port in (25, 465):
        off = testbed.log_offset()
        lport = random_lport()
        r, certs = connect(testbed, port, lport)
        sid, v = verdict(testbed, off, lport)
        assert (v["result"], v["class"], v["action"]) == ("failed", cls, expect), (port, v)
        assert v["reference"] == "mx.ext.test", v

        if expect == "block":
            assert certs == [], f"{port} blocked, yet a certificate came:\n{r.stdout}"
            testbed.wait_gateway_line(off, sid, r"session end reason=tls-upstream-"
                                                r"certificate-blocked")
            continue
        assert certs, f"port {port}: no certificate:\n{r.stdout}{r.stderr}"
        leaf = certs[0]
        names = "CN=wrong-name.invalid" if kind == "wrong-name" else "CN=mx.ext.test"
        assert x509_field(leaf, "-subject") == names
        issuer = pa if expect == "allow" else ua
        assert x509_field(leaf, "-issuer") == x509_field(issuer.read_text(), "-subject")
        ok, out = x509_verify(leaf, pa)
        assert ok == (expect == "allow"), f"port {port}, verify against the PA: {out}"
        if expect == "untrusted-sign":
            ok, out = x509_verify(leaf, ua)
            assert ok, out

    if phase != "default":
        return
    # Opportunistic clients still get their mail through.
    token = new_token()
    extra = (["--port", "465", "-tlsc", "--tls-sni", "mx.ext.test"] if kind == "wrong-name"
             else ["-tls"])
    r = testbed.swaks(FL, token, extra=extra)
    assert r.returncode == 0, f"swaks failed:\n{r.stdout}{r.stderr}"
    testbed.wait_for_message(FL.server, token)

    if kind == "wrong-name":
        # STARTTLS without SNI: no reference name, the chain alone is judged;
        # the Proxy Authority signs a leaf with the real (wrong) names, and
        # the client's own check fails.
        off = testbed.log_offset()
        lport = random_lport()
        r, certs = connect(testbed, 25, lport, cafile=pa, servername=None,
                           extra=("-verify_hostname", "mx.ext.test"))
        _, v = verdict(testbed, off, lport)
        assert (v["result"], v["reference"]) == ("ok", "none"), v
        assert x509_field(certs[0], "-issuer") == x509_field(pa.read_text(), "-subject")
        assert "Verify return code: 62 (hostname mismatch)" in r.stdout, r.stdout
