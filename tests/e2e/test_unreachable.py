"""Unreachable servers: the client hears 421, never silence.

Proves that when smtpgw cannot reach the original destination the client
gets an SMTP `421` reply and then an orderly close (EOF, not a reset and
not a hang):
- no host at the address (198.51.100.99, 2001:db8:2::99): the upstream
  connect times out, and the 421 arrives within `connect-timeout` (set
  to 2 s here) plus a little;
- a host that refuses the port (port 465 of ext-mx's second address,
  where nothing listens): the server's RST makes the 421 come at once.
  Port 465 is implicit TLS, so the 421 arrives inside a TLS session that
  smtpgw completes with its Proxy Server certificate (there is no real
  certificate to forge from).
"""

import time

import pytest

CONNECT_TIMEOUT = 2
SLACK = 1.5


@pytest.fixture(scope="module")
def short_connect_timeout(module_gateway_config):
    module_gateway_config.set("global", "connect-timeout", str(CONNECT_TIMEOUT))


def check_421_then_close(r, within):
    assert r["connect"] == "ok", r
    assert r["data"].startswith("421"), r
    assert r["first_line_secs"] is not None and r["first_line_secs"] < within, r
    assert r["end"] == "eof", r


@pytest.mark.parametrize("addr", ["198.51.100.99", "2001:db8:2::99"])
def test_no_such_host(testbed, short_connect_timeout, addr):
    r = testbed.probe("int-client", addr, 25, connect_timeout=2.0,
                      read_timeout=CONNECT_TIMEOUT + 10)
    check_421_then_close(r, CONNECT_TIMEOUT + SLACK)


@pytest.mark.parametrize("addr", ["198.51.100.26", "[2001:db8:2::26]"])
def test_port_refused_by_server(testbed, short_connect_timeout, addr):
    t0 = time.time()
    r = testbed.exec("int-client", "sh", "-c",
                     f"timeout 10 openssl s_client -quiet -connect {addr}:465 "
                     "</dev/null 2>/dev/null", timeout=30)
    assert r.stdout.startswith("421 4.4.1"), r.stdout
    assert time.time() - t0 < 5, "the 421 must come at once"
