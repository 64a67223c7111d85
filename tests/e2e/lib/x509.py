"""TLS from the outside: `openssl s_client -showcerts` from a namespace,
and `openssl x509` / `openssl verify` on the certificates it saw."""

import re
import subprocess
import tempfile

from .topology import TESTBED


PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", re.S)


def s_client(tb, host, addr, port, starttls=None, servername=None, cafile=None,
             extra=(), timeout=15):
    """`openssl s_client -showcerts` from host's namespace to addr:port
    (starttls="smtp" for STARTTLS; servername sets SNI, else none is
    sent; extra: more s_client options).  Returns (CompletedProcess, [PEM of each certificate sent,
    leaf first])."""
    target = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    argv = ["timeout", str(timeout), "openssl", "s_client", "-connect", target, "-showcerts"]
    if starttls:
        argv += ["-starttls", starttls]
    argv += ["-servername", servername] if servername else ["-noservername"]
    if cafile:
        argv += ["-CAfile", str(cafile)]
    argv += list(extra)
    r = subprocess.run([str(TESTBED), "exec", host, *argv], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout + 30)
    return r, PEM_CERT_RE.findall(r.stdout)


def x509_text(pem, *opts):
    """`openssl x509 -noout OPTS` of one PEM certificate (RFC 2253 names)."""
    r = subprocess.run(["openssl", "x509", "-noout", "-nameopt", "RFC2253", *opts],
                       input=pem, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def x509_field(pem, opt):
    """'-subject', '-issuer', '-fingerprint' ...: the value after '='."""
    return x509_text(pem, opt).split("=", 1)[1].strip()


def x509_sans(pem):
    """The subjectAltName entries, e.g. ['DNS:mx.ext.test', 'IP Address:...']."""
    out = x509_text(pem, "-ext", "subjectAltName").splitlines()
    return [e.strip() for l in out[1:] for e in l.split(",") if e.strip()]


def x509_verify(pem, cafile):
    """`openssl verify -CAfile cafile` of a leaf: (ok, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        r = subprocess.run(["openssl", "verify", "-CAfile", str(cafile), f.name],
                           capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr
