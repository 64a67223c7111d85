"""Testbed: the tests' driver of tests/testbed/testbed (commands, paths,
gateway control, swaks, Maildirs, logs, probes, raw connections), and
MxSession, the receiving Postfix's side of a session in its maillog."""

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .logs import log_fields, session_lines, split_hostport, tail
from .smtp_client import SmtpConn
from .topology import DELIVERY_TIMEOUT, LOG_TIMEOUT, NETPROBE, PYTHON, TESTBED, new_token


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
