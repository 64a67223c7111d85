"""Shared fixtures and helpers for the smtpgw end-to-end tests.

The tests drive the network-namespace testbed (tests/testbed/testbed): one
`testbed up` per session, `testbed down` at the end.  Mail is sent with
swaks from a client namespace; delivery is observed in the receiving
Postfix's Maildir; the gateway's behaviour is read from its log.  Every
message carries a fresh token so a test only ever looks at its own mail.

Environment:
  SMTPGW_E2E_REUSE=1  use a testbed that is already up, and leave it up
  SMTPGW_E2E_KEEP=1   do not run `testbed down` at the end
  SMTPGW_TB_PREFIX / SMTPGW_TB_STATE are passed through to the testbed.

Run as root: /usr/bin/python3 -m pytest tests/e2e
"""

import json
import os
import random
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "tests" / "testbed" / "testbed"
PYTHON = "/usr/bin/python3"
NETPROBE = Path(__file__).resolve().parent / "netprobe.py"

DELIVERY_TIMEOUT = 30.0  # seconds for Postfix to put a message in a Maildir
LOG_TIMEOUT = 10.0  # seconds for an expected line to show in a log


# ---------------------------------------------------------------- topology

ADDR = {
    "int-mx": {4: "192.0.2.25", 6: "2001:db8:1::25"},
    "int-client": {4: "192.0.2.10", 6: "2001:db8:1::10"},
    "ext-mx": {4: "198.51.100.25", 6: "2001:db8:2::25"},
    "ext-client": {4: "198.51.100.10", 6: "2001:db8:2::10"},
    "gw-lan0": {4: "192.0.2.1", 6: "2001:db8:1::1"},
    "gw-wan0": {4: "198.51.100.1", 6: "2001:db8:2::1"},
}


@dataclass(frozen=True)
class Flow:
    """One way through the gateway: who talks to whom, and what the
    gateway should make of it."""

    direction: str  # "outbound" | "inbound"
    family: int  # 4 | 6
    client: str  # client namespace
    server: str  # server namespace
    client_addr: str
    server_addr: str
    gw_server_side: str  # gateway address the server sees without spoofing
    zone: str  # zone the client's traffic arrives from
    policy: str
    sender: str
    rcpt: str
    helo: str

    @property
    def id(self):
        return f"{self.direction}-v{self.family}"


def flow(direction, family):
    if direction == "outbound":
        return Flow(direction, family, "int-client", "ext-mx",
                    ADDR["int-client"][family], ADDR["ext-mx"][family],
                    ADDR["gw-wan0"][family], "trusted", "SMTP-Proxy-Out",
                    "alice@int.test", "user@ext.test", "client.int.test")
    if direction == "inbound":
        return Flow(direction, family, "ext-client", "int-mx",
                    ADDR["ext-client"][family], ADDR["int-mx"][family],
                    ADDR["gw-lan0"][family], "external", "SMTP-Proxy-In",
                    "bob@ext.test", "user@int.test", "client.ext.test")
    raise ValueError(direction)


FLOWS = [flow(d, f) for d in ("outbound", "inbound") for f in (4, 6)]
FLOW_IDS = [f.id for f in FLOWS]


def new_token():
    return "e2e-" + uuid.uuid4().hex


def random_lport():
    """A client port below the ephemeral range, so it identifies the
    session in the gateway log and never collides with the kernel's
    own choices."""
    return random.randrange(20000, 32000)


# ------------------------------------------------------------ log parsing

FIELD_RE = re.compile(r'(?:^|\s)([a-z][a-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def log_fields(line):
    """key=value fields of one log line, as a dict of strings."""
    return {k: v.strip('"') for k, v in FIELD_RE.findall(line)}


def split_hostport(value):
    """'192.0.2.10:40000' or '[2001:db8::1]:40000' -> (addr, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([0-9.]+):(\d+)", value)
    if not m:
        raise ValueError(f"not an address:port: {value!r}")
    if m.group(1):
        return m.group(1), int(m.group(2))
    return m.group(3), int(m.group(4))


def session_lines(text):
    """(line, fields) for every log line that describes a session's
    endpoints and classification."""
    out = []
    for line in text.splitlines():
        f = log_fields(line)
        if {"client", "server", "zone", "direction"} <= f.keys():
            out.append((line, f))
    return out


def received_from_addr(message):
    """Client address in the first (topmost) Received header that Postfix
    added: 'Received: from helo (unknown [192.0.2.10])' or
    '... [IPv6:2001:db8:1::10])'."""
    head = message.split("\n\n", 1)[0]
    unfolded = re.sub(r"\n[ \t]+", " ", head)
    for line in unfolded.splitlines():
        if line.lower().startswith("received:"):
            m = re.search(r"\(\S*\s*\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]\)", line)
            return m.group(1) if m else None
    return None


# ----------------------------------------------------------------- testbed

class TestbedError(Exception):
    pass


class Testbed:
    """Thin wrapper around tests/testbed/testbed and the testbed's files."""

    def cmd(self, *args, check=True, timeout=120):
        r = subprocess.run([str(TESTBED), *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise TestbedError(f"testbed {' '.join(args)} failed "
                               f"(exit {r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def __init__(self):
        self._paths = {}

    def path(self, name):
        """`testbed path NAME`, remembered: the paths never change."""
        if name not in self._paths:
            self._paths[name] = Path(self.cmd("path", name).stdout.strip())
        return self._paths[name]

    def is_up(self):
        return self.cmd("status", check=False).returncode == 0

    def exec(self, host, *argv, timeout=60, check=False):
        return self.cmd("exec", host, *argv, check=check, timeout=timeout)

    # gateway control
    def restart_gateway(self):
        self.cmd("restart-gateway")

    def stop_gateway(self):
        self.cmd("stop-gateway")

    def start_gateway(self):
        self.cmd("start-gateway")

    def gateway_running(self):
        out = self.cmd("status", check=False).stdout
        return "smtpgw: running" in out

    # mail
    def maildir(self, host):
        return self.path(f"{host}-maildir")

    def messages(self, host):
        md = self.maildir(host)
        return sorted(p for sub in ("new", "cur") for p in (md / sub).iterdir()
                      if p.is_file())

    def find_message(self, host, token):
        for p in self.messages(host):
            try:
                text = p.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if token in text:
                return text
        return None

    def wait_for_message(self, host, token, timeout=DELIVERY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            text = self.find_message(host, token)
            if text is not None:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no message with {token} in {host}'s Maildir after "
                    f"{timeout:.0f} s; {host} maillog tail:\n"
                    + tail(self.maillog(host), 15))
            time.sleep(0.1)

    def swaks(self, fl, token, lport=None, body=None, extra=(), timeout=60):
        """Send one message along flow fl; returns the CompletedProcess."""
        body = body if body is not None else f"token {token}\n"
        argv = ["swaks", "--server", fl.server_addr, "--port", "25",
                "--to", fl.rcpt, "--from", fl.sender, "--helo", fl.helo,
                "--header", f"Subject: smtpgw e2e {token}",
                "--timeout", "20"]
        if lport:
            argv += ["--local-interface", fl.client_addr, "--local-port", str(lport)]
        argv += list(extra)
        if len(body) <= 4096:
            return self.exec(fl.client, *argv, "--body", body, timeout=timeout)
        # Too big for one argument: hand swaks a file, and keep its
        # transcript short.
        with tempfile.NamedTemporaryFile("w", prefix="smtpgw-e2e-",
                                         suffix=".txt") as f:
            f.write(body)
            f.flush()
            return self.exec(fl.client, *argv, "--body", "@" + f.name,
                             "--suppress-data", timeout=timeout)

    def send_and_wait(self, fl, token=None, lport=None, **kw):
        """Send along fl and wait for delivery; returns (token, message)."""
        token = token or new_token()
        r = self.swaks(fl, token, lport=lport, **kw)
        assert r.returncode == 0, (
            f"swaks {fl.id} failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
        return token, self.wait_for_message(fl.server, token)

    # logs
    def log_offset(self):
        try:
            return self.path("gw-log").stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        try:
            with open(self.path("gw-log"), "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_session(self, offset, client_addr, client_port=None,
                         timeout=LOG_TIMEOUT):
        """First session line logged after offset whose client is
        client_addr (and client_port, when given)."""
        deadline = time.monotonic() + timeout
        while True:
            for line, f in session_lines(self.log_since(offset)):
                try:
                    addr, port = split_hostport(f["client"])
                except ValueError:
                    continue
                if addr == client_addr and client_port in (None, port):
                    return line, f
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no session line for client {client_addr}:{client_port} "
                    f"in the gateway log; log since the test began:\n"
                    + tail(self.log_since(offset), 30))
            time.sleep(0.1)

    def maillog(self, host):
        try:
            return self.path(f"{host}-maillog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maillog_offset(self, host):
        return len(self.maillog(host))

    def probe(self, host, addr, port, connect_timeout=5.0, read_timeout=5.0,
              send=None, lport=0):
        """Run netprobe.py in host's namespace; returns its JSON dict."""
        argv = [PYTHON, str(NETPROBE), addr, str(port),
                "--connect-timeout", str(connect_timeout),
                "--read-timeout", str(read_timeout)]
        if send is not None:
            argv += ["--send", send]
        if lport:
            argv += ["--lport", str(lport)]
        r = self.exec(host, *argv, timeout=connect_timeout + read_timeout + 30)
        if r.returncode != 0:
            raise TestbedError(f"netprobe failed: {r.stdout}{r.stderr}")
        return json.loads(r.stdout)

    def sysctl(self, host, name, value=None):
        """Read (value None) or write a sysctl in host's namespace;
        returns the value read or the previous value."""
        old = self.exec(host, "sysctl", "-n", name, check=True).stdout.strip()
        if value is not None:
            self.exec(host, "sysctl", "-qw", f"{name}={value}", check=True)
        return old

    def netstat_counter(self, host, group, name):
        """A counter from /proc/net/netstat or /proc/net/snmp in host."""
        text = self.exec(host, "cat", "/proc/net/netstat", "/proc/net/snmp",
                         check=True).stdout.splitlines()
        for keys, vals in zip(text[::2], text[1::2]):
            k, v = keys.split(), vals.split()
            if k and k[0] == f"{group}:" and name in k:
                return int(v[k.index(name)])
        raise KeyError(f"{group}:{name}")


def tail(text, n):
    return "\n".join(text.splitlines()[-n:])


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


def ini_set(text, section, key, value):
    """Set key = value in [section] of an ini text, keeping everything
    else (comments, order) as it is."""
    lines = text.splitlines()
    head = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]\s*$")
    start = next((i for i, l in enumerate(lines) if head.match(l)), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
    keyre = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start + 1, end):
        if keyre.match(lines[i]):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    lines.insert(last + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


class GatewayConfig:
    """Edits the testbed's copy of smtpgw.conf and applies it with
    `testbed restart-gateway`; restore() puts the original back."""

    def __init__(self, tb):
        self.tb = tb
        self.path = tb.path("gw-conf")
        self.original = self.path.read_text()

    def set(self, section, key, value):
        self.update({(section, key): value})

    def update(self, settings):
        text = self.path.read_text()
        new = text
        for (section, key), value in settings.items():
            new = ini_set(new, section, key, value)
        if new != text:
            self.path.write_text(new)
            self.tb.restart_gateway()

    def restore(self):
        if self.path.read_text() != self.original or not self.tb.gateway_running():
            self.path.write_text(self.original)
            self.tb.restart_gateway()


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
