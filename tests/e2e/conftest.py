"""Shared fixtures and helpers for the smtpgw end-to-end tests.

The tests drive the network-namespace testbed (tests/testbed/testbed): one
`testbed up` per session, `testbed down` at the end.  Mail is sent with
swaks from a client namespace, or byte by byte with SmtpConn, a raw client
whose socket is opened inside a namespace (setns) but driven from the test
itself; ScriptedServer is the other end of that trick, an SMTP server the
test scripts, bound to a testbed host's second address.  Delivery is
observed in the receiving Postfix's Maildir, the server's side of a
session in its maillog (MxSession), the gateway's behaviour in its log.
Every message carries a fresh token so a test only ever looks at its own
mail.

The helpers live in the package lib/ next to this file (one module per
noun, see lib/__init__.py); this file keeps the fixtures and re-exports
every helper, so tests keep importing from conftest.

Environment:
  SMTPGW_E2E_REUSE=1  use a testbed that is already up, and leave it up
  SMTPGW_E2E_KEEP=1   do not run `testbed down` at the end
  SMTPGW_TB_PREFIX / SMTPGW_TB_STATE are passed through to the testbed.

Run as root: /usr/bin/python3 -m pytest tests/e2e
"""

import os
import sys
from pathlib import Path

import pytest

# lib/ is imported as a top-level package: pytest puts this directory on
# sys.path, but tests/appliance loads this file by its path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# Re-exported for the tests (`from conftest import ...`) and tests/appliance.
from lib.gateway_config import GatewayConfig, ini_set  # noqa: E402,F401
from lib.logs import (FIELD_RE, log_fields, log_unquote, session_lines,  # noqa: E402,F401
                      split_hostport, tail)
from lib.mail import (TRACE_HEADERS, delivered_to, dot_stuff, message,  # noqa: E402,F401
                      received_from_addr, strip_trace)
from lib.netns import CLONE_NEWNET, family_of, in_netns  # noqa: E402,F401
from lib.scripted_server import ScriptedServer, ServerSession, scripted_smtp  # noqa: E402,F401
from lib.smtp_client import ConnectionClosed, Reply, SmtpConn, parse_reply  # noqa: E402,F401
from lib.testbed import MxSession, Testbed, TestbedError  # noqa: E402,F401
from lib.topology import (ADDR, DELIVERY_TIMEOUT, FLOW_IDS, FLOWS, LOG_TIMEOUT,  # noqa: E402,F401
                          NETPROBE, PYTHON, REPO, TESTBED, Flow, flow, new_token,
                          random_lport)
from lib.x509 import (PEM_CERT_RE, s_client, x509_field, x509_sans, x509_text,  # noqa: E402,F401
                      x509_verify)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def testbed():
    """The testbed, up for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("the end-to-end tests need root (network namespaces)")
    tb = Testbed()
    reuse = os.environ.get("SMTPGW_E2E_REUSE") == "1" and tb.is_up()
    keep = reuse or os.environ.get("SMTPGW_E2E_KEEP") == "1"
    if not reuse:
        r = tb.cmd("up", check=False, timeout=900)
        if r.returncode != 0:
            tb.cmd("down", check=False)
            pytest.fail(f"testbed up failed (exit {r.returncode}):\n"
                        f"{r.stdout}{r.stderr}", pytrace=False)
    try:
        yield tb
    finally:
        if not keep:
            tb.cmd("down", check=False)


@pytest.fixture
def scripted_server(testbed):
    """Factory: scripted_server(handler, family=4, side="ext") starts a
    ScriptedServer on ext-mx's second address (or int-mx's, side="int");
    all are closed after the test."""
    started = []

    def start(handler, family=4, side="ext"):
        host = f"{side}-mx"
        srv = ScriptedServer(testbed, host, ADDR[f"{side}-script"][family], handler)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.close()


@pytest.fixture
def gateway_config(testbed):
    """Per-test gateway configuration changes, undone afterwards."""
    cfg = GatewayConfig(testbed)
    try:
        yield cfg
    finally:
        cfg.restore()


@pytest.fixture(scope="module")
def module_gateway_config(testbed):
    """Like gateway_config, but the change lasts for a whole module."""
    cfg = GatewayConfig(testbed)
    try:
        yield cfg
    finally:
        cfg.restore()


@pytest.fixture(scope="module")
def streamed_outbound(module_gateway_config):
    """Testbed-Outgoing without its scanners (antivirus and spam off) for a
    whole module: its messages stream to the destination as they arrive and
    only the end of data waits for the verdict -- the engine's streamed
    path, which a scanning action replaces with a held message (scanned and
    quarantined from the held copy).  For the tests of that path."""
    module_gateway_config.update({("action Testbed-Outgoing", "antivirus"): "off",
                                  ("action Testbed-Outgoing", "spam"): "off"})
    yield


# Attach the gateway log written during a failed test to its report.

@pytest.fixture(autouse=True)
def _gateway_log_mark(request):
    if "testbed" in request.fixturenames:
        tb = request.getfixturevalue("testbed")
        request.node._smtpgw_log_offset = tb.log_offset()
        request.node._smtpgw_tb = tb
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and hasattr(item, "_smtpgw_tb"):
        text = item._smtpgw_tb.log_since(item._smtpgw_log_offset)
        rep.sections.append(("gateway log during this test",
                             tail(text, 60) or "(nothing logged)"))
