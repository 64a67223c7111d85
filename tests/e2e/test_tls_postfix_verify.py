"""A verifying Postfix delivers through the gateway when it trusts the
Proxy Authority, and refuses to when it trusts only the real CA.

int-mx relays mail for tls-trust-pa@ext.test through its transport
smtp-trust-pa: `smtp_tls_security_level = verify`, `smtp_tls_CAfile` =
the gateway's Proxy Authority certificate, name mx.ext.test.  The message
is delivered to ext-mx; int-mx logs a *Verified* TLS connection and
status=sent; the gateway logs both legs as TLS with the real certificate
validated.

tls-trust-ca@ext.test goes through smtp-trust-ca, identical except that it
trusts only the testbed CA, which issued ext-mx's real certificate.
Through the gateway it sees a certificate forged by the Proxy Authority,
so verification fails: the message is deferred ("Server certificate not
verified") and never delivered - proof that the verifying client really
checks what the gateway presents.  The deferred message is deleted
afterwards.
"""

import re
import time

import pytest

from conftest import ADDR, LOG_TIMEOUT, log_fields, new_token, tail

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu


def wait_maillog(tb, host, offset, pattern, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, tb.maillog(host)[offset:], re.M)
        if m:
            return m
        assert time.monotonic() < deadline, (
            f"no {pattern!r} in {host}'s maillog; tail:\n" + tail(tb.maillog(host)[offset:], 20))
        time.sleep(0.1)


def send(tb, rcpt, token):
    msg = f"From: <alice@int.test>\nTo: <{rcpt}>\nSubject: smtpgw e2e {token}\n\ntoken {token}\n"
    tb.send_mta("int-mx", msg, "alice@int.test", rcpt)


def test_verifying_postfix_trusting_the_proxy_authority_delivers(testbed):
    token = new_token()
    rcpt = f"tls-trust-pa+{token[-8:]}@ext.test"
    off = testbed.log_offset()
    moff = testbed.maillog_offset("int-mx")

    send(testbed, rcpt, token)
    testbed.wait_for_message("ext-mx", token)
    m = wait_maillog(testbed, "int-mx", moff, rf"postfix/smtp\[(\d+)\]: [0-9A-F]+: "
                     rf"to=<{re.escape(rcpt)}>, relay=\S+\[198\.51\.100\.25\]:25,.* status=(\w+)")
    pid, status = m.groups()
    assert status == "sent", m.group(0)
    log = testbed.maillog("int-mx")[moff:]
    assert re.search(rf"postfix/smtp\[{pid}\]: Verified TLS connection established "
                     r"to 198\.51\.100\.25", log), tail(log, 20)

    line, _ = testbed.wait_for_session(off, ADDR["int-mx"][4])
    sid = re.search(r"\s([0-9a-f]{12})\s+session start", line).group(1)
    testbed.wait_gateway_line(off, sid, r"tls ready side=server ")
    testbed.wait_gateway_line(off, sid, r"tls ready side=client ")
    verdict = log_fields(testbed.wait_gateway_line(off, sid, r"tls verify side=server "))
    assert verdict["result"] == "ok", verdict


def test_verifying_postfix_trusting_only_the_real_ca_defers(testbed):
    token = new_token()
    rcpt = f"tls-trust-ca+{token[-8:]}@ext.test"
    moff = testbed.maillog_offset("int-mx")

    send(testbed, rcpt, token)
    m = wait_maillog(testbed, "int-mx", moff, rf"postfix/smtp\[(\d+)\]: ([0-9A-F]+): "
                     rf"to=<{re.escape(rcpt)}>, relay=.*status=(\w+) \((.*)\)$")
    pid, qid, status, why = m.groups()
    try:
        assert status == "deferred", m.group(0)
        assert "Server certificate not verified" in why, m.group(0)
        log = testbed.maillog("int-mx")[moff:]
        assert re.search(rf"postfix/smtp\[{pid}\]: certificate verification failed for "
                         r"198\.51\.100\.25\S*: "
                         r"untrusted issuer /O=smtpgw/CN=smtpgw Proxy Authority", log), \
            tail(log, 20)
        time.sleep(LOG_TIMEOUT / 10)
        assert testbed.messages_with("ext-mx", token) == []
    finally:
        # Do not leave it retrying for the rest of the run.
        cfg = testbed.path("int-mx-config")
        testbed.exec("int-mx", "postsuper", "-c", str(cfg), "-d", qid)
