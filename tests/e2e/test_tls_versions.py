"""The destination leg never gets weaker TLS than the client leg.

Proves both directions of the rule "smtpgw never offers the upstream
weaker TLS than the client negotiated with it":
- implicit TLS (465): the client's ClientHello is read before the
  upstream handshake, so a client that offers TLS 1.3 makes smtpgw demand
  TLS 1.3 upstream (the server leg logs TLSv1.3), while a client limited to
  TLS 1.2 still gets through;
- STARTTLS (25): the upstream handshake comes first, so the client leg is
  capped at the version the destination negotiated - with ext-mx limited
  to TLS 1.2, a client offering TLS 1.3 gets TLS 1.2 from smtpgw, never a
  stronger-looking session than the one its mail travels on.
"""

import re
import time

from conftest import log_fields, s_client

PA = "198.51.100.25"


def tls_versions(testbed, offset):
    """{side: version} from the gateway's tls ready lines since offset."""
    out = {}
    for line in testbed.log_since(offset).splitlines():
        if " tls ready " in line:
            f = log_fields(line)
            out[f["side"]] = f["version"]
    return out


def test_implicit_tls_upstream_at_least_client(testbed):
    off = testbed.log_offset()
    r, _ = s_client(testbed, "int-client", PA, 465, servername="mx.ext.test")
    assert "TLSv1.3" in r.stdout, r.stdout
    deadline = time.time() + 5
    while time.time() < deadline and len(tls_versions(testbed, off)) < 2:
        time.sleep(0.1)
    assert tls_versions(testbed, off) == {"server": "TLSv1.3", "client": "TLSv1.3"}

    off = testbed.log_offset()
    r, _ = s_client(testbed, "int-client", PA, 465, servername="mx.ext.test",
                    extra=["-tls1_2"])
    assert re.search(r"Protocol *: TLSv1\.2", r.stdout), r.stdout


def test_starttls_client_capped_at_upstream(testbed):
    etc = str(testbed.path("ext-mx-config"))

    def mx_protocols(value):
        for key in ("smtpd_tls_protocols", "smtpd_tls_mandatory_protocols"):
            testbed.exec("ext-mx", "postconf", "-c", etc, "-e", f"{key}={value}", check=True)
        testbed.exec("ext-mx", "postfix", "-c", etc, "reload", check=True)

    def mx_speaks(version):
        r, _ = s_client(testbed, "ext-client", PA, 25, starttls="smtp")
        return re.search(rf"Protocol *: {version}", r.stdout) is not None

    mx_protocols("<=TLSv1.2")
    try:
        deadline = time.time() + 15
        while not mx_speaks("TLSv1.2") and time.time() < deadline:
            time.sleep(0.3)
        assert mx_speaks("TLSv1.2"), "ext-mx did not switch to TLS 1.2"
        off = testbed.log_offset()
        r, _ = s_client(testbed, "int-client", PA, 25, starttls="smtp")
        assert re.search(r"Protocol *: TLSv1\.2", r.stdout), r.stdout
        deadline = time.time() + 5
        while time.time() < deadline and len(tls_versions(testbed, off)) < 2:
            time.sleep(0.1)
        assert tls_versions(testbed, off) == {"server": "TLSv1.2", "client": "TLSv1.2"}
    finally:
        mx_protocols(">=TLSv1")
        deadline = time.time() + 15
        while not mx_speaks("TLSv1.3") and time.time() < deadline:
            time.sleep(0.3)
