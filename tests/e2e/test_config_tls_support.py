"""TLS Support, switched with smtpgwctl, decides which of 25 and 465 is
intercepted and which is rejected - in both directions.

For each direction (outbound int-client -> ext-mx under SMTP-Proxy-Out,
inbound ext-client -> int-mx under SMTP-Proxy-In), IPv4 and IPv6, the
policy's TLS Support is set with `smtpgwctl policy set ... tls-support`
and activated with `smtpgwctl apply` (the daemon's generation moves).
Then a connection to each port either
  - is intercepted: the TCP connection is made (to the gateway's
    transparent listener) and the gateway logs a session for it under the
    policy - port 465 is implicit TLS, so the session line is the proof; or
  - is rejected: a TCP reset at once (ECONNREFUSED within a second), and
    the classifier logs `classify decision=reject reason=no-policy`.
disabled covers 25 only, enabled 25 and 465, required 465 only.  The
other direction's policy stays `enabled` throughout and keeps working.
"""

import pytest

from conftest import flow, random_lport
from gwctl import gwctl, session_for, wait_reject  # noqa: F401 (fixture)

# Also run against the QEMU appliance (scripts/test: pytest -m qemu).
pytestmark = pytest.mark.qemu

COVERS = {"disabled": {25}, "enabled": {25, 465}, "required": {465}}


def check_port(tb, fl, port, intercepted):
    off = tb.log_offset()
    lport = random_lport()
    r = tb.probe(fl.client, fl.server_addr, port, connect_timeout=2.0, read_timeout=0.5,
                 lport=lport)
    if intercepted:
        assert r["connect"] == "ok", f"{fl.id} port {port} not intercepted: {r}"
        _, f = session_for(tb, off, fl.client_addr, lport)
        assert (f["policy"], f["direction"], f["zone"]) == (fl.policy, fl.direction, fl.zone)
        assert f["server"].endswith(f":{port}")
    else:
        assert r["connect"] == "refused", f"{fl.id} port {port} not reset: {r}"
        assert r["connect_secs"] < 1.0, r
        _, f = wait_reject(tb, off, fl.client_addr, port)
        assert f["reason"] == "no-policy", f
        assert f["zone"] == fl.zone


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
def test_tls_support_switches_ports(testbed, gwctl, direction):
    policy = flow(direction, 4).policy
    other = flow("inbound" if direction == "outbound" else "outbound", 4)
    for value in ("disabled", "required", "enabled"):
        gwctl.ok("policy", "set", policy, "tls-support", value)
        gwctl.apply()
        listed = gwctl.ok("policy", "show", policy).stdout
        assert f"tls-support = {value}" in listed
        for family in (4, 6):
            fl = flow(direction, family)
            for port in (25, 465):
                check_port(testbed, fl, port, port in COVERS[value])
        # The other direction's policy is untouched.
        check_port(testbed, other, 25, True)
        check_port(testbed, other, 465, True)
