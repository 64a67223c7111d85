"""A reload that cannot build its new generation leaves the running one
serving, untouched.

smtpgw builds a new generation completely - configuration, TLS material
(every profile's ciphers, ciphersuites, ca-file), a signer that has loaded
and checked the CA keys, workers that are ready - before it stops the old
classifier or drains a worker.  Each case below is a change that passes the
parser but fails to load:

1. `apply` of a staged file whose TLS profile says `ciphers = NOSUCHCIPHER`;
2. `apply` of a staged file whose profile's `ca-file` does not exist.
   `smtpgw -t` loads what a reload loads, so `smtpgwctl check` and `apply`
   refuse both with the daemon's FILE:LINE message, before anything
   changes.
3. The same broken file made active behind smtpgwctl's back and SIGHUP:
   the daemon rejects the reload itself (status file: reload-result
   rejected, the reason in reload-error, generation unchanged) - the
   contract `smtpgwctl apply` reads.
4. The untrusted CA's key replaced by a key of another certificate: the
   new generation's signer refuses to start, the reload is rejected.

After each: the classifier and the workers are the same processes as
before, and outbound mail is delivered in cleartext and over STARTTLS
(the TLS material and the signer of the running generation still work).
Before the fix, cases 1-3 left the gateway refusing all SMTP while apply
said the old configuration was still serving.
"""

import os
import signal
import subprocess
import time

import pytest

from conftest import flow, ini_set
from gwctl import gwctl  # noqa: F401 (fixture)


def children(st):
    return st["classifier-pid"], st["worker-pids"], st.get("signer-pid")


def mail_flows(tb):
    fl = flow("outbound", 4)
    tb.send_and_wait(fl)
    _, msg = tb.send_and_wait(fl, extra=["-tls"])
    assert msg


def hup_and_wait(ctl, timeout=30):
    st = ctl.status()
    os.kill(int(st["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = ctl.status()
        if now["reloads"] != st["reloads"]:
            return now
        time.sleep(0.1)
    raise AssertionError("smtpgw did not report the reload")


BROKEN = {
    "cipher": (("tls-profile Testbed", "ciphers", "NOSUCHCIPHER"),
               'ciphers: OpenSSL accepts none of "NOSUCHCIPHER"'),
    "ca-file": (("tls-profile Testbed", "ca-file", "/nonexistent/smtpgw-e2e-ca.pem"),
                "ca-file /nonexistent/smtpgw-e2e-ca.pem cannot be loaded"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_apply_refuses_tls_material_that_does_not_load(testbed, gwctl, case):
    (section, key, value), words = BROKEN[case]
    st0 = gwctl.status()
    active0 = gwctl.active.read_text()
    gwctl.staged.write_text(ini_set(active0, section, key, value))

    r = gwctl.fails("check")
    assert words in r.stderr, r.stderr
    r = gwctl.fails("apply")
    assert words in r.stderr, r.stderr
    assert f"{gwctl.staged}:" in r.stderr, r.stderr

    assert gwctl.active.read_text() == active0
    st = gwctl.status()
    assert st["generation"] == st0["generation"], st
    assert children(st) == children(st0), (st0, st)
    mail_flows(testbed)
    gwctl.ok("discard")


@pytest.mark.parametrize("case", list(BROKEN))
def test_daemon_rejects_the_reload_and_keeps_serving(testbed, gwctl, case):
    (section, key, value), words = BROKEN[case]
    st0 = gwctl.status()
    active0 = gwctl.active.read_text()
    try:
        gwctl.active.write_text(ini_set(active0, section, key, value))
        st = hup_and_wait(gwctl)
    finally:
        gwctl.active.write_text(active0)
    assert st["reload-result"] == "rejected", st
    assert words in st["reload-error"], st
    assert st["generation"] == st0["generation"], st
    assert children(st) == children(st0), (st0, st)
    assert st["classifier"] == "running" and st["signer"] == "running", st
    mail_flows(testbed)
    # and a good reload still works afterwards
    gwctl.apply()
    mail_flows(testbed)


def test_signer_that_cannot_start_rejects_the_reload(testbed, gwctl):
    key = gwctl.etc / "tls" / "untrusted-authority.key"
    saved = key.read_bytes()
    st0 = gwctl.status()
    try:
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(key)], check=True,
                       capture_output=True)
        r = gwctl.fails("check")
        assert "untrusted-authority.key does not belong to" in r.stderr, r.stderr
        st = hup_and_wait(gwctl)
    finally:
        key.write_bytes(saved)
    assert st["reload-result"] == "rejected", st
    assert "untrusted-authority.key does not belong to" in st["reload-error"], st
    assert st["generation"] == st0["generation"], st
    assert children(st) == children(st0), (st0, st)
    mail_flows(testbed)
