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

Environment:
  SMTPGW_E2E_REUSE=1  use a testbed that is already up, and leave it up
  SMTPGW_E2E_KEEP=1   do not run `testbed down` at the end
  SMTPGW_TB_PREFIX / SMTPGW_TB_STATE are passed through to the testbed.

Run as root: /usr/bin/python3 -m pytest tests/e2e
"""

import contextlib
import ctypes
import json
import os
import random
import re
import select
import socket
import ssl
import subprocess
import tempfile
import threading
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
    # second addresses where nothing listens: for ScriptedServer
    "int-script": {4: "192.0.2.26", 6: "2001:db8:1::26"},
    "ext-script": {4: "198.51.100.26", 6: "2001:db8:2::26"},
    # `testbed extra-segment add`: a host behind a gateway interface in no zone
    "extra-client": {4: "203.0.113.10", 6: "2001:db8:3::10"},
    "gw-extra0": {4: "203.0.113.1", 6: "2001:db8:3::1"},
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
    """key=value fields of one log line, as a dict of strings; a quoted
    value without its quotes, its escapes kept (log_unquote decodes them)."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in FIELD_RE.findall(line)}


def log_unquote(value):
    """A logged value as the peer sent it: the surrounding double quotes
    gone (log_fields already strips them) and the escapes of a quoted
    value decoded - \\" and \\\\, and \\xHH for other bytes
    ('"/CN=a \\"b\\""' -> '/CN=a "b"', 'x\\x0d' -> 'x\\r')."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r'\\(x[0-9a-fA-F]{2}|["\\])',
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                  else m.group(1), value)


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

    def gateway_kind(self):
        """"netns" or "qemu": what `testbed up` chose."""
        try:
            return (self.path("state") / "gateway").read_text().strip()
        except FileNotFoundError:
            return os.environ.get("SMTPGW_TB_GATEWAY", "netns")

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

    def messages_with(self, host, token):
        """Texts of every message in host's Maildir that contain token."""
        out = []
        for p in self.messages(host):
            try:
                text = p.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if token in text:
                out.append(text)
        return out

    def wait_for_messages(self, host, token, count, timeout=DELIVERY_TIMEOUT):
        """Wait until count messages with token are in host's Maildir;
        returns their texts (all of them, if more came)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_with(host, token)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} messages with {token} in {host}'s "
                    f"Maildir after {timeout:.0f} s; {host} maillog tail:\n"
                    + tail(self.maillog(host), 15))
            time.sleep(0.1)

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

    # raw sockets inside the testbed

    def netns(self, host):
        """Path of host's network namespace (/run/netns/<prefix><host>)."""
        return self.path(f"netns-{host}")

    def connect(self, host, addr, port=25, lport=0, timeout=10.0):
        """An SmtpConn from host's namespace to addr:port."""
        return SmtpConn.open(self.netns(host), addr, port, lport, timeout)

    # Postfix on the MX hosts

    def mx_chunking(self, host, on):
        """Offer CHUNKING on host's Postfix or not (waits until it shows)."""
        self.cmd("mx-chunking", host, "on" if on else "off", timeout=60)

    def mx_cert(self, host, kind):
        """Make host's Postfix present another certificate on 25 and 465
        (`testbed mx-cert`: good, intermediate, missing-intermediate,
        self-signed, expired, wrong-name, unknown-ca); waits until it does."""
        self.cmd("mx-cert", host, kind, timeout=60)

    def send_mta(self, host, message, sender, *rcpts):
        """Inject message (str) into host's Postfix with its sendmail."""
        r = subprocess.run([str(TESTBED), "send-mta", host, "-f", sender, *rcpts],
                           input=message, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise TestbedError(f"send-mta {host} failed (exit {r.returncode}):\n"
                               f"{r.stdout}{r.stderr}")

    def mx_session(self, host, offset, addr, port, timeout=LOG_TIMEOUT):
        """The smtpd session on host whose client was addr:port, once it
        has ended (see MxSession); offset is a maillog_offset()."""
        deadline = time.monotonic() + timeout
        while True:
            sess = MxSession.find(self.maillog(host)[offset:], addr, port)
            if sess is not None and sess.disconnect:
                return sess
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no finished smtpd session for {addr}:{port} in {host}'s "
                    f"maillog after {timeout:.0f} s; tail:\n"
                    + tail(self.maillog(host)[offset:], 20))
            time.sleep(0.1)

    def assert_not_queued(self, host, sess, token, grace=0.5):
        """Nothing of this smtpd session was queued on host: none of its
        queue ids reached the queue manager and no message with token
        arrived.  Call after mx_session() returned (the session is over)."""
        time.sleep(grace)
        log = self.maillog(host)
        for qid in sess.queue_ids:
            assert not re.search(rf"qmgr\[\d+\]: {qid}: from=", log), (
                f"{host} queued {qid} of the session:\n" + "\n".join(sess.lines))
        assert self.messages_with(host, token) == [], (
            f"{host} delivered a message with {token}")

    # gateway log, by session

    def gateway_session(self, offset, client_addr, client_port, timeout=LOG_TIMEOUT):
        """Session id of the gateway session of client_addr:client_port."""
        line, _ = self.wait_for_session(offset, client_addr, client_port, timeout)
        m = re.search(r"\s([0-9a-f]{12})\s+session start", line)
        assert m, f"no session id in {line!r}"
        return m.group(1)

    def wait_gateway_line(self, offset, sid, pattern, timeout=LOG_TIMEOUT):
        """First gateway log line of session sid (after offset) that
        matches the regular expression pattern."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            lines = [l for l in self.log_since(offset).splitlines()
                     if f" {sid} " in l]
            for l in lines:
                if rx.search(l):
                    return l
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no line matching {pattern!r} for session {sid} in the "
                    f"gateway log; its lines:\n" + "\n".join(lines))
            time.sleep(0.05)

    def upstream_endpoint(self, offset, sid):
        """(addr, port) the gateway connected upstream from, for sid."""
        line = self.wait_gateway_line(offset, sid, r"session upstream connected local=")
        return split_hostport(log_fields(line)["local"])

    def tcp_queues(self, host):
        """{(local, peer): (recv_q, send_q)} of host's TCP connections,
        addresses as `ss -tn` prints them (IPv6 in brackets)."""
        out = {}
        r = self.exec(host, "ss", "-tnH", check=True)
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 5:
                out[(f[3], f[4])] = (int(f[1]), int(f[2]))
        return out

    def wait_relayed(self, fl, lport, up, timeout=LOG_TIMEOUT):
        """Wait until what the client sent so far has gone through: the
        gateway has read it all from the client, sent it all upstream
        (up = the upstream connection's local (addr, port)) and the
        server has read it all."""
        def hp(a, p):
            return f"[{a}]:{p}" if ":" in a else f"{a}:{p}"
        client, server, upl = (hp(fl.client_addr, lport), hp(fl.server_addr, 25),
                               hp(*up))
        deadline = time.monotonic() + timeout
        while True:
            gw, mx = self.tcp_queues("gw"), self.tcp_queues(fl.server)
            a, b, c = gw.get((server, client)), gw.get((upl, server)), mx.get((server, upl))
            if a and b and c and a[0] == 0 and b[1] == 0 and c[0] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"data not relayed: gw {gw}, {fl.server} {mx}")
            time.sleep(0.05)

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


# ------------------------------------------------------ Postfix sessions

class MxSession:
    """One smtpd session in a Postfix maillog, found by its client's
    address and port (the testbed turns smtpd_client_port_logging on):
    its lines, queue ids and how it ended."""

    def __init__(self, pid, lines):
        self.pid = pid
        self.lines = lines
        self.queue_ids = [m.group(1) for l in lines
                          if (m := re.search(r": ([0-9A-F]{6,}): client=", l))]
        self.disconnect = next((l for l in lines if " disconnect from " in l), None)
        self.lost = next((l for l in lines if " lost connection after " in l), None)

    @classmethod
    def find(cls, log, addr, port):
        client = f"[{addr}]:{port}"
        pid, lines = None, []
        for line in log.splitlines():
            m = re.search(r"postfix/smtpd\[(\d+)\]: ", line)
            if not m:
                continue
            if pid is None:
                if line.endswith(f" connect from unknown{client}"):
                    pid, lines = m.group(1), [line]
                continue
            if m.group(1) == pid:
                lines.append(line)
                if " disconnect from " in line:
                    break
        return cls(pid, lines) if pid else None

    def __str__(self):
        return "\n".join(self.lines)


# --------------------------------------------------- raw SMTP over netns

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(path):
    """Run the body with this thread in the network namespace at path.
    Sockets made inside stay in that namespace for good."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(str(path), os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {path}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(own)


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class ConnectionClosed(AssertionError):
    pass


@dataclass
class Reply:
    lines: list

    @property
    def code(self):
        return int(self.lines[-1][:3])

    @property
    def text(self):
        return "\n".join(self.lines)

    def __str__(self):
        return self.text


def parse_reply(data):
    """(first complete reply, octets it took) from bytes received, or
    (None, 0) when no reply is complete yet."""
    pos, lines = 0, []
    while True:
        i = data.find(b"\r\n", pos)
        if i < 0:
            return None, 0
        line = data[pos:i].decode("latin-1")
        lines.append(line)
        pos = i + 2
        if len(line) < 4 or line[3] != "-":
            return Reply(lines), pos


class SmtpConn:
    """A raw SMTP client: a socket made in a testbed namespace, driven
    from the test.  send() writes exactly the bytes given; reply() reads
    one (multi-line) reply.  The dialogue is kept for failure messages."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.end = None  # "eof" | "reset" once the peer is gone
        self.transcript = []
        self.local = sock.getsockname()[:2]

    @classmethod
    def open(cls, nspath, addr, port=25, lport=0, timeout=10.0):
        with in_netns(nspath):
            s = socket.socket(family_of(addr), socket.SOCK_STREAM)
            try:
                if lport:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("::" if ":" in addr else "0.0.0.0", lport))
                s.settimeout(timeout)
                s.connect((addr, port))
            except BaseException:
                s.close()
                raise
        return cls(s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def lport(self):
        return self.local[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Read once; False when the peer is gone or the deadline passed."""
        left = deadline - time.monotonic()
        if left <= 0 or self.end:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.end = "reset"
            return False
        if not chunk:
            self.end = "eof"
            return False
        self.transcript.append(("S", chunk))
        self.buf += chunk
        return True

    def reply(self, timeout=10.0):
        """The next reply; ConnectionClosed if the peer closes first,
        AssertionError if none comes within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            r, used = parse_reply(self.buf)
            if r is not None:
                self.buf = self.buf[used:]
                return r
            if not self._fill(deadline):
                if self.end:
                    raise ConnectionClosed(
                        f"connection closed ({self.end}) before a reply\n{self.dialogue()}")
                raise AssertionError(f"no reply within {timeout} s\n{self.dialogue()}")

    def replies(self, n, timeout=10.0):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=10.0):
        """Send one command line (CRLF added) and read its reply."""
        self.send(line + "\r\n")
        return self.reply(timeout)

    def read_to_end(self, timeout=10.0):
        """Every reply until the peer closes: (replies, end, seconds) with
        end "eof", "reset" or "timeout"."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while self._fill(deadline):
            pass
        secs = time.monotonic() - t0
        replies = []
        while True:
            r, used = parse_reply(self.buf)
            if r is None:
                break
            replies.append(r)
            self.buf = self.buf[used:]
        return replies, self.end or "timeout", secs

    def ehlo(self, name="client.test"):
        """Greeting and EHLO; returns the EHLO reply (asserted 250)."""
        g = self.reply()
        assert g.code == 220, self.dialogue()
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, self.dialogue()
        return r

    def start_tls(self, server_hostname=None, timeout=10.0):
        """TLS handshake on this connection (after a 220 to STARTTLS, or
        at once on port 465), as a client that verifies nothing; the
        SMTP dialogue goes on inside it.  Returns the server's leaf
        certificate (DER)."""
        assert not self.buf, f"plaintext left before TLS: {self.buf!r}"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.transcript.append(("C", b"[TLS handshake done]\r\n"))
        return self.sock.getpeercert(binary_form=True)

    def abort(self):
        """Close with a RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def close(self):
        self.sock.close()

    def dialogue(self, limit=4000):
        """The dialogue so far, C: / S: prefixed, bytes escaped."""
        out = []
        for who, data in self.transcript:
            text = data.decode("latin-1")
            text = text.replace("\r", "\\r").replace("\0", "\\0")
            for l in text.split("\n"):
                if l:
                    out.append(f"{who}: {l}")
        text = "\n".join(out)
        return text if len(text) <= limit else text[:limit // 2] + "\n...\n" + text[-limit // 2:]


# ------------------------------------------------------------ TLS helpers

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


def message(token, headers=(), body="", subject=None):
    """An RFC 5322 message (CRLF line ends) carrying token."""
    lines = ["From: <alice@int.test>",
             "To: <user@ext.test>",
             f"Subject: {subject or 'smtpgw e2e ' + token}",
             "Date: Thu, 01 Jan 2026 00:00:00 +0000",
             f"Message-ID: <{token}@client.test>",
             *headers, ""]
    text = "\r\n".join(lines) + "\r\n" + (body or f"token {token}\r\n")
    return text


def dot_stuff(text):
    """DATA encoding of a CRLF text: leading dots doubled, end marker."""
    lines = text.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines) + ".\r\n"


TRACE_HEADERS = ("return-path:", "x-original-to:", "delivered-to:", "received:")


def strip_trace(delivered):
    """A delivered Maildir message without the trace headers Postfix
    put on top (Return-Path, X-Original-To, Delivered-To, Received)."""
    lines = delivered.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].lower().startswith(TRACE_HEADERS):
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "\t"):
                i += 1
            continue
        break
    return "\n".join(lines[i:])


def delivered_to(text):
    """The Delivered-To address of a delivered message."""
    m = re.search(r"^Delivered-To: (\S+)$", text, re.M)
    return m.group(1) if m else None


# ------------------------------------------------------ scripted servers

class ServerSession:
    """One connection to a ScriptedServer, seen from the server."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.buf = b""
        self.received = b""     # every byte the client sent
        self.commands = []      # command lines (without CRLF)
        self.messages = []      # DATA contents, dot-stuffed, without the final dot
        self.events = []        # what the handler did, for assertions
        self.error = None
        self.done = threading.Event()

    def send(self, text):
        """Send reply text; lines joined by CRLF, CRLF added."""
        self.sock.sendall((text + "\r\n").encode("latin-1"))

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, OSError):
            return False
        if not chunk:
            return False
        self.buf += chunk
        self.received += chunk
        return True

    def readline(self, timeout=30.0):
        """The next line without CRLF, or None at EOF/timeout."""
        while b"\n" not in self.buf:
            if not self._fill(timeout):
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")

    def read_bytes(self, n, timeout=30.0):
        """At least n more bytes (returned, and gone from the buffer)."""
        while len(self.buf) < n:
            if not self._fill(timeout):
                return None
        out, self.buf = self.buf, b""
        return out

    def read_exact(self, n, timeout=30.0):
        """Exactly n bytes, or None at EOF/timeout."""
        while len(self.buf) < n:
            if not self._fill(timeout):
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_data(self, timeout=30.0):
        """DATA contents up to CRLF.CRLF (excluded), or None at EOF."""
        while True:
            data = b"\r\n" + self.buf
            i = data.find(b"\r\n.\r\n")
            if i >= 0:
                body = data[2:i + 2]
                self.buf = data[i + 5:]
                return body
            if not self._fill(timeout):
                return None

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class ScriptedServer:
    """An SMTP server the test scripts: listens on addr:port in host's
    namespace (a second address, e.g. 198.51.100.26, so traffic to it
    crosses the gateway like mail to a real MX) and runs handler(session)
    in a thread per connection.  close() ends everything it started."""

    def __init__(self, tb, host, addr, handler, port=25):
        with in_netns(tb.netns(host)):
            ls = socket.socket(family_of(addr), socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((addr, port))
            ls.listen(16)
        self.lsock = ls
        self.addr = addr
        self.handler = handler
        self.sessions = []
        self._threads = []
        self._stop = threading.Event()
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self):
        while not self._stop.is_set():
            r, _, _ = select.select([self.lsock], [], [], 0.05)
            if not r:
                continue
            try:
                c, peer = self.lsock.accept()
            except OSError:
                return
            sess = ServerSession(c, peer)
            self.sessions.append(sess)
            t = threading.Thread(target=self._run, args=(sess,), daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, sess):
        try:
            self.handler(sess)
        except Exception as e:  # reported by session()
            sess.error = e
        finally:
            sess.close()
            sess.done.set()

    def session(self, n=0, timeout=10.0, finished=True):
        """The n-th connection; waits for it (and for its handler to end)."""
        deadline = time.monotonic() + timeout
        while len(self.sessions) <= n:
            if time.monotonic() > deadline:
                raise AssertionError(f"scripted server {self.addr}: no connection {n}")
            time.sleep(0.02)
        sess = self.sessions[n]
        if finished:
            assert sess.done.wait(max(0.0, deadline - time.monotonic())), (
                f"scripted server {self.addr}: handler still running")
        if sess.error:
            raise sess.error
        return sess

    def close(self):
        self._stop.set()
        with contextlib.suppress(OSError):
            self.lsock.close()
        for sess in self.sessions:
            sess.close()
        for t in self._threads:
            t.join(timeout=5)


def scripted_smtp(greeting_delay=0.0, ehlo=("PIPELINING", "SIZE 10240000", "8BITMIME",
                                            "ENHANCEDSTATUSCODES"),
                  replies=None, data_end="250 2.0.0 Ok: queued as SCRIPTED",
                  close_at=None, die_in_data_after=None, silent_at=None):
    """A handler for ScriptedServer that plays a plain MX:
    greeting_delay  seconds to wait before the 220;
    ehlo            the EHLO keywords;
    replies         {"MAIL": "550 ...", ...} replies instead of 250/354;
    data_end        the reply to the end of data;
    close_at        a verb ("RCPT", ...): close instead of answering it,
                    or "IDLE": close after the EHLO reply;
    die_in_data_after  close after this many message bytes (DATA or BDAT);
    silent_at       "GREETING", a verb, or "DATAEND": from there on answer
                    nothing, just read until the peer closes.
    BDAT is served if "CHUNKING" is among the keywords.  The session
    records commands, messages (BDAT: the chunks joined) and events."""
    replies = replies or {}

    def silent(sess, where):
        sess.events.append(f"silent at {where}")
        while sess.readline(timeout=60) is not None:
            pass
        sess.events.append("eof")

    def handler(sess):
        chunks = []  # BDAT chunks of the message being received
        if silent_at == "GREETING":
            return silent(sess, "GREETING")
        if greeting_delay:
            time.sleep(greeting_delay)
        sess.send("220 script.test ESMTP scripted")
        sess.events.append("greeted")
        while True:
            line = sess.readline()
            if line is None:
                sess.events.append("eof")
                return
            sess.commands.append(line)
            verb = line[:4].upper()
            if close_at == verb:
                sess.events.append(f"closed at {verb}")
                return
            if silent_at == verb:
                return silent(sess, verb)
            if verb in replies:
                sess.send(replies[verb])
                if not (verb == "DATA" and replies[verb].startswith("354")):
                    continue
            elif verb == "EHLO":
                kw = ["script.test"] + list(ehlo)
                sess.send("\r\n".join(f"250{'-' if i < len(kw) - 1 else ' '}{k}"
                                       for i, k in enumerate(kw)))
                if close_at == "IDLE":
                    time.sleep(0.2)
                    sess.events.append("closed idle")
                    return
                continue
            elif verb == "QUIT":
                sess.send("221 2.0.0 Bye")
                sess.events.append("quit")
                return
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                sess.send("250 2.0.0 Ok")
                continue
            elif verb == "DATA":
                sess.send("354 End data with <CR><LF>.<CR><LF>")
            elif verb == "BDAT" and "CHUNKING" in ehlo:
                words = line.split()
                size, last = int(words[1]), len(words) > 2
                if die_in_data_after is not None:
                    got = sess.read_bytes(min(size, die_in_data_after) or 1)
                    sess.events.append(f"died in data after {len(got or b'')} bytes")
                    return
                chunk = sess.read_exact(size)
                if chunk is None:
                    sess.events.append("eof in data")
                    return
                chunks.append(chunk)
                if not last:
                    sess.send(f"250 2.0.0 {size} octets received")
                    continue
                sess.messages.append(b"".join(chunks))
                chunks.clear()
                sess.events.append("data end")
                sess.send(data_end)
                continue
            else:
                sess.send("502 5.5.2 Error: command not recognized")
                continue
            # DATA accepted
            if die_in_data_after is not None:
                got = sess.read_bytes(die_in_data_after)
                sess.events.append(f"died in data after {len(got or b'')} bytes")
                return
            data = sess.read_data()
            if data is None:
                sess.events.append("eof in data")
                return
            sess.messages.append(data)
            sess.events.append("data end")
            if silent_at == "DATAEND":
                return silent(sess, "DATAEND")
            sess.send(data_end)

    return handler


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
