"""Rotating the Proxy Authority and the untrusted CA under load: every
session sees a consistent chain, before, during and after.

Three kinds of outbound TLS session run back to back from int-client to
ext-mx all along (openssl s_client, which shows every certificate sent):
STARTTLS on 25 and implicit TLS on 465 with SNI mx.ext.test - validated,
so a leaf from the Proxy Authority - and 465 with SNI nomatch.ext.test -
a name mismatch, signed by the untrusted CA.  Meanwhile the Proxy
Authority is replaced with `smtpgwctl cert regenerate-authority`, the
untrusted CA's files are replaced by a new CA (smtpgwctl has no verb for
it; the files are what the daemon reads), and `smtpgwctl apply` reloads.

Every session's leaf verifies against the CA certificate sent with it
(`openssl verify -CAfile <that CA>`): a leaf is never signed by one key
while the chain carries another CA.  Sessions of each kind ran both
before and after the change; those that started after apply returned
(plus a moment for the old workers to stop accepting) chain to the NEW
authority, and the validated kinds to the new Proxy Authority, the
mismatch to the new untrusted CA.  The old generation's signer goes away
with its last worker.  Finally the original CA files are put back (and
applied) for the tests that follow.

Before the fix the signer kept the old keys until a restart: after the
apply, workers sent the new CA certificate with a leaf signed by the old
key.
"""

import shutil
import subprocess
import threading
import time

from conftest import ADDR, log_fields, s_client, x509_field, x509_verify

KINDS = {
    "starttls-25": (dict(port=25, starttls="smtp"), "authority"),
    "465-sni": (dict(port=465, servername="mx.ext.test"), "authority"),
    "465-mismatch": (dict(port=465, servername="nomatch.ext.test"), "untrusted"),
}
GRACE = 0.5  # seconds for the old workers to stop accepting once apply returned


def fingerprint(pem):
    return x509_field(pem, "-fingerprint")


class Load:
    """One thread per kind, each running sessions back to back until stopped."""

    def __init__(self, tb):
        self.tb = tb
        self.results = []  # (kind, started, ended, certs, stdout)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True)
                        for k in KINDS]

    def run(self, kind):
        opts = KINDS[kind][0]
        while not self.stop.is_set():
            t0 = time.monotonic()
            r, certs = s_client(self.tb, "int-client", ADDR["ext-mx"][4], **opts)
            with self.lock:
                self.results.append((kind, t0, time.monotonic(), certs,
                                     r.stdout[-1500:] + r.stderr[-500:]))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def make_ca(tmp, cn):
    key, crt = tmp / f"{cn}.key", tmp / f"{cn}.crt"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "30",
                    "-subj", f"/O=smtpgw e2e/CN={cn}",
                    "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-addext", "subjectKeyIdentifier=hash", "-out", str(crt)],
                   check=True, capture_output=True)
    return key, crt


def install(src, dst, mode):
    tmp = dst.with_name(dst.name + ".e2e")
    shutil.copyfile(src, tmp)
    tmp.chmod(mode)
    tmp.rename(dst)


def gw_status(tb):
    text = tb.path("gw-status").read_text()
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def apply(tb):
    gen = int(gw_status(tb)["generation"])
    r = tb.exec("gw", "smtpgwctl", "apply", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    st = gw_status(tb)
    assert st["reload-result"] == "ok" and int(st["generation"]) == gen + 1, st
    return st


def test_rotation_under_load_keeps_every_chain_consistent(testbed, tmp_path):
    tls = testbed.path("gw-etc") / "tls"
    names = ["proxy-authority.crt", "proxy-authority.key",
             "untrusted-authority.crt", "untrusted-authority.key"]
    saved = {n: (tls / n).read_bytes() for n in names}
    old_pa = fingerprint((tls / "proxy-authority.crt").read_text())
    old_ua = fingerprint((tls / "untrusted-authority.crt").read_text())
    off = testbed.log_offset()
    gen0 = gw_status(testbed)["generation"]
    try:
        with Load(testbed) as load:
            time.sleep(3)
            r = testbed.exec("gw", "smtpgwctl", "cert", "regenerate-authority", "--cn",
                             "smtpgw e2e rotated Proxy Authority")
            assert r.returncode == 0, r.stdout + r.stderr
            key, crt = make_ca(tmp_path, "smtpgw e2e rotated untrusted CA")
            install(key, tls / "untrusted-authority.key", 0o600)
            install(crt, tls / "untrusted-authority.crt", 0o644)
            apply(testbed)
            applied = time.monotonic()
            time.sleep(4)
        new_pa = fingerprint((tls / "proxy-authority.crt").read_text())
        new_ua = fingerprint((tls / "untrusted-authority.crt").read_text())
        assert new_pa != old_pa and new_ua != old_ua

        results = list(load.results)
        assert len(results) >= 12, f"only {len(results)} sessions ran"
        seen = {k: {"before": 0, "after": 0} for k in KINDS}
        for kind, t0, t1, certs, out in results:
            assert len(certs) == 2, f"{kind}: {len(certs)} certificates sent:\n{out}"
            leaf, ca = certs
            with open(tmp_path / "sent-ca.pem", "w") as f:
                f.write(ca)
            ok, vout = x509_verify(leaf, tmp_path / "sent-ca.pem")
            assert ok, (f"{kind} session at +{t0 - applied:.2f}s: the leaf does not verify "
                        f"against the CA sent with it:\n{vout}")
            fp = fingerprint(ca)
            want_old, want_new = ((old_pa, new_pa) if KINDS[kind][1] == "authority"
                                  else (old_ua, new_ua))
            assert fp in (want_old, want_new), f"{kind}: chained to an unknown CA {fp}"
            if t1 < applied - 0.2:
                seen[kind]["before"] += 1
            if t0 > applied + GRACE:
                seen[kind]["after"] += 1
                assert fp == want_new, (f"{kind} session started {t0 - applied:.2f}s after "
                                        "apply still chains to the old CA")
        for kind, n in seen.items():
            assert n["before"] and n["after"], (kind, seen)

        # The new generation's signer issued for them; the old one is gone with its workers.
        text = testbed.log_since(off)
        issued = [log_fields(l) for l in text.splitlines() if "signer issued" in l]
        assert {f["ca"] for f in issued} == {"authority", "untrusted"}, issued[-5:]
        assert all(f.get("worker", "").isdigit() for f in issued)
        deadline = time.monotonic() + 20
        while f"master generation done generation={gen0}" not in text:
            assert time.monotonic() < deadline, "the old generation never finished:\n" + text[-3000:]
            time.sleep(0.2)
            text = testbed.log_since(off)
    finally:
        for n, data in saved.items():
            tmp = tls / (n + ".e2e")
            tmp.write_bytes(data)
            tmp.chmod(0o600 if n.endswith(".key") else 0o644)
            tmp.rename(tls / n)
        apply(testbed)
