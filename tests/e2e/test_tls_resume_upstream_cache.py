"""The gateway's own upstream sessions never carry a verdict across a
certificate change.

The gateway keeps, per worker, a pool of TLS sessions (the server's
tickets) for each destination (address, port, reference name, profile)
and offers one, once, on each later connection.  int-client, through the gateway, does STARTTLS to ext-mx
with SNI mx.ext.test:

1. ext-mx presents its good certificate: after a first connection, a
   later one (on one of a few attempts: the cache is per worker) resumes
   the upstream session (`tls ready side=server ... resumed=yes`) and
   the resumed session is judged again - `result=ok` on the certificate
   the session holds; sessions that were never used stay in the cache;
2. ext-mx gets a certificate from a CA nobody trusts (`testbed mx-cert
   unknown-ca`; the reload renews Postfix's ticket keys, as a new
   server would not know them either).  Every later connection: when the
   gateway offers a cached session (`tls resume side=server
   offered=yes`), ext-mx refuses it, the full handshake shows the new
   certificate, the worker's sessions from before are dropped (`dropped
   reason=certificate-changed`) and the verdict is on the new
   certificate (`class=untrusted-issuer`): the client is shown the
   untrusted CA's leaf.  Nothing from before the change makes the bad
   upstream look good.  Later connections may resume the new session:
   it holds the new certificate, and is judged on it again.
"""

from conftest import ADDR, flow, log_fields, log_unquote, x509_field
from tlsutil import client_context, der_to_pem, tls_client_session

FL = flow("outbound", 4)
MX = ADDR["ext-mx"][4]


def connect(testbed):
    off = testbed.log_offset()
    c = tls_client_session(testbed, FL.client, MX, 25, client_context(), sni="mx.ext.test")
    sid = testbed.gateway_session(off, FL.client_addr, c.lport)
    up = log_fields(testbed.wait_gateway_line(off, sid, r"tls ready side=server "))
    v = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
    lines = "\n".join(l for l in testbed.log_since(off).splitlines() if f" {sid} " in l)
    return c, up, v, lines


def test_upstream_session_never_outlives_certificate(testbed):
    ua = x509_field(testbed.path("untrusted-authority-cert").read_text(), "-subject")
    testbed.mx_cert("ext-mx", "good")
    try:
        # Until a resumption was seen, and the last connection left a
        # fresh session (a TLS 1.3 session resumes once, then the next
        # full handshake caches a new one).
        resumed = fresh = False
        for _ in range(12):
            c, up, v, _ = connect(testbed)
            assert v["result"] == "ok", v
            resumed |= up["resumed"] == "yes"
            fresh = up["resumed"] == "no"
            if resumed and fresh:
                break
        assert resumed, "the gateway never resumed an upstream session"
        assert fresh, "no fresh upstream session left in the cache"

        testbed.mx_cert("ext-mx", "unknown-ca")
        dropped = 0
        for _ in range(8):
            c, up, v, lines = connect(testbed)
            # Resumed or not, the session's certificate is the new one, judged now.
            assert log_unquote(up["issuer"]).endswith("unknown CA"), lines
            assert (v["result"], v["class"]) == ("failed", "untrusted-issuer"), lines
            assert x509_field(der_to_pem(c.leaf_der), "-issuer") == ua
            if "dropped reason=certificate-changed" in lines:
                # a session from before the change was offered, refused, dropped
                assert "tls resume side=server offered=yes" in lines, lines
                assert up["resumed"] == "no", lines
                dropped += 1
                break
        assert dropped, "no worker offered its session from before the change"
    finally:
        testbed.mx_cert("ext-mx", "good")
