"""A resumed client session never skips the verdict.

The gateway binds every TLS session it gives a client (TLS 1.3 tickets,
TLS 1.2 tickets, TLS 1.2 session IDs) to the destination (address, port,
reference name), the hash of the upstream certificate, the verdict on it
and the CA that signed what the client was shown.  A client that offers a
session whose binding does not match the current upstream gets a full
handshake - and with it the certificate the current verdict calls for.

For each port (25 STARTTLS, 465 implicit TLS, SNI mx.ext.test) and each
kind of session, int-client, through the gateway to ext-mx:
1. ext-mx presents its good certificate: the client gets a leaf signed by
   the Proxy Authority and keeps the session it was given;
2. the same session offered again, nothing changed: resumed (the
   gateway does resume when the binding holds - for session IDs, which
   live in one worker's cache, on one of a few attempts);
3. ext-mx now presents a certificate from a CA nobody trusts
   (`testbed mx-cert unknown-ca`): the session is offered again (several
   times, so every worker is asked) and is never resumed - the client
   sees a full handshake with a leaf issued by the untrusted CA, and the
   gateway logged the verdict `result=failed class=untrusted-issuer` and,
   for a ticket, `tls resumption refused side=client
   reason=binding-mismatch`.
Before binding, step 3 resumed the session: the client got no
certificate at all and went on believing the destination trustworthy.
"""

import ssl

import pytest

from conftest import ADDR, flow, log_fields, x509_field
from tlsutil import client_context, der_to_pem, tls_client_session

FL = flow("outbound", 4)
MX = ADDR["ext-mx"][4]

KINDS = {
    "tls13-ticket": dict(max_version=None, tickets=True),
    "tls12-ticket": dict(max_version=ssl.TLSVersion.TLSv1_2, tickets=True),
    "tls12-session-id": dict(max_version=ssl.TLSVersion.TLSv1_2, tickets=False),
}
CASES = [(p, k) for p in (25, 465) for k in KINDS]


@pytest.fixture
def mx_good_after(testbed):
    yield
    testbed.mx_cert("ext-mx", "good")


def issuer_of(der):
    return x509_field(der_to_pem(der), "-issuer")


@pytest.mark.parametrize("port,kind", CASES, ids=[f"{p}-{k}" for p, k in CASES])
def test_resumption_bound_to_verdict(testbed, mx_good_after, port, kind):
    pa = x509_field(testbed.path("proxy-authority-cert").read_text(), "-subject")
    ua = x509_field(testbed.path("untrusted-authority-cert").read_text(), "-subject")
    ctx = client_context(**KINDS[kind])
    connect = lambda sess: tls_client_session(testbed, FL.client, MX, port, ctx,
                                              sni="mx.ext.test", session=sess)
    testbed.mx_cert("ext-mx", "good")

    first = connect(None)
    assert not first.reused
    assert issuer_of(first.leaf_der) == pa
    session = first.session
    assert session is not None and session.has_ticket == (kind != "tls12-session-id")

    # Nothing changed: the gateway resumes (session IDs: per worker, so retry).
    tries = 8 if kind == "tls12-session-id" else 1
    for _ in range(tries):
        again = connect(session)
        if again.reused:
            break
    assert again.reused, f"{kind} on {port}: never resumed while nothing changed"
    session = again.session or session

    # The destination's certificate fails validation now.
    testbed.mx_cert("ext-mx", "unknown-ca")
    for i in range(4):
        off = testbed.log_offset()
        bad = connect(session)
        assert not bad.reused, f"attempt {i}: the {kind} session was resumed across the " \
                               f"verdict change"
        assert bad.leaf_der, "no certificate in a full handshake"
        assert issuer_of(bad.leaf_der) == ua, issuer_of(bad.leaf_der)
        sid = testbed.gateway_session(off, FL.client_addr, bad.lport)
        v = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
        assert (v["result"], v["class"], v["action"]) == \
            ("failed", "untrusted-issuer", "untrusted-sign"), v
        ready = log_fields(testbed.wait_gateway_line(off, sid, r"tls ready side=client "))
        assert ready["resumed"] == "no", ready
        if kind != "tls12-session-id":
            # a ticket is decrypted, its binding compared, and refused
            testbed.wait_gateway_line(off, sid, r"tls resumption refused side=client "
                                                r"reason=binding-mismatch")
