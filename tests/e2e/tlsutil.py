"""TLS helpers for the end-to-end scenarios on TLS trust and on the two
legs' encryption (test_tls_resume_*, test_tls_starttls_*,
test_tls_cn_only_*, test_tls_legs_*).

- `tls_client_session(...)`: a raw client through the gateway (STARTTLS on
  25 or TLS at once on 465) with Python's ssl module, so a test can offer
  a session it kept from an earlier connection and learn whether the
  gateway resumed it and which certificate it was shown.
- `make_cert(...)`: a server certificate (EC P-256) made with the openssl
  command, issued by the testbed CA or self-signed, with exactly the
  names a test wants (SANs, or only a subject CN).
- `TlsMx`: a scripted MX (on a ScriptedServer) that offers STARTTLS (or
  speaks TLS at once, on 465), records the SNI each handshake carried and
  whether it resumed a session, and accepts mail.  Its certificate can be
  swapped between connections while its session-ticket keys stay (one
  SSLContext), which Postfix never does.
"""

import contextlib
import re
import os
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field

from conftest import ADDR, ScriptedServer, SmtpConn, random_lport

# --------------------------------------------------------------- clients

@dataclass
class ClientTls:
    lport: int
    reused: bool
    leaf_der: bytes
    session: object
    version: str
    replies: list = field(default_factory=list)


def client_context(max_version=None, tickets=True):
    """A client SSLContext that verifies nothing (the test looks at the
    certificates itself).  tickets=False: TLS 1.2 session IDs only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def tls_client_session(tb, host, addr, port, ctx, sni=None, session=None, lport=None,
                       helo="client.test", after=None):
    """Connect from host to addr:port through the gateway, start TLS
    (STARTTLS on 25, at once on 465) offering session, say EHLO inside
    TLS (which also reads TLS 1.3 tickets), run after(conn) if given,
    QUIT.  Returns a ClientTls."""
    lport = lport or random_lport()
    c = SmtpConn.open(tb.netns(host), addr, port, lport, timeout=15.0)
    try:
        if port == 25:
            c.ehlo(helo)
            r = c.cmd("STARTTLS")
            assert r.code == 220, c.dialogue()
        c.sock.settimeout(15.0)
        c.sock = ctx.wrap_socket(c.sock, server_hostname=sni, session=session)
        c.transcript.append(("C", b"[TLS handshake done]\r\n"))
        if port == 465:
            g = c.reply(timeout=15)
            assert g.code == 220, c.dialogue()
        r = c.cmd(f"EHLO {helo}", timeout=15)
        assert r.code == 250, c.dialogue()
        replies = [r]
        if after is not None:
            replies += after(c) or []
        with contextlib.suppress(Exception):
            c.cmd("QUIT", timeout=5)
        return ClientTls(lport, c.sock.session_reused, c.sock.getpeercert(binary_form=True),
                         c.sock.session, c.sock.version(), replies)
    finally:
        c.close()


def der_to_pem(der):
    return ssl.DER_cert_to_PEM_cert(der)


# ---------------------------------------------------------- certificates

def make_cert(tb, workdir, name, cn, sans=None, issuer="testbed", days=30):
    """A certificate and key in workdir (name.crt, name.key): subject CN=cn,
    subjectAltName sans (e.g. "DNS:a.test,IP:198.51.100.26"; None: no
    SAN extension at all), issued by the testbed CA ("testbed") or
    self-signed ("self").  Returns (certfile, keyfile)."""
    crt = os.path.join(workdir, f"{name}.crt")
    key = os.path.join(workdir, f"{name}.key")
    ext = os.path.join(workdir, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = serverAuth\n")
        if sans:
            f.write(f"subjectAltName = {sans}\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=30)
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    csr = os.path.join(workdir, f"{name}.csr")
    run("openssl", "req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
    if issuer == "self":
        run("openssl", "x509", "-req", "-in", csr, "-signkey", key, "-days", str(days),
            "-extfile", ext, "-out", crt)
        return crt, key
    run("openssl", "x509", "-req", "-in", csr, "-CA", str(tb.path("testbed-ca-cert")),
        "-CAkey", str(tb.path("testbed-ca-key")), "-set_serial",
        str(int.from_bytes(os.urandom(8), "big")), "-days", str(days),
        "-extfile", ext, "-out", crt)
    return crt, key


# ------------------------------------------------------- the scripted MX

@dataclass
class Handshake:
    sni: object          # the server_name the client sent, or None
    reused: bool
    version: str


class TlsMx:
    """A scripted MX on ext-mx's second address (198.51.100.26 / ::26)
    that offers STARTTLS on 25 (or TLS at once, implicit=True, on 465),
    or not (starttls=False), answers it with starttls_reply, and offers
    the EHLO keywords ehlo in cleartext and ehlo_tls inside TLS.
    One SSLContext for its whole life: set_cert() changes the
    certificate for later handshakes, while tickets issued before stay
    valid.  handshakes lists every TLS handshake (SNI, resumed, version);
    messages every DATA content; sessions the plain SMTP transcript per
    connection (commands)."""

    def __init__(self, tb, certfile=None, keyfile=None, family=4, implicit=False,
                 starttls=True, starttls_reply="220 2.0.0 Ready to start TLS",
                 ehlo=("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"),
                 ehlo_tls=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if certfile:
            self.ctx.load_cert_chain(certfile, keyfile)
        self.ctx.sni_callback = self._sni
        self._lock = threading.Lock()
        self._sni_by_obj = {}
        self.handshakes = []
        self.messages = []
        self.commands = []
        self.implicit = implicit
        self.starttls = starttls
        self.ehlo_kw = list(ehlo)
        self.ehlo_tls_kw = list(ehlo if ehlo_tls is None else ehlo_tls)
        self.starttls_reply = starttls_reply
        port = 465 if implicit else 25
        self.addr = ADDR["ext-script"][family]
        self.srv = ScriptedServer(tb, "ext-mx", self.addr, self._handler, port=port)

    def set_cert(self, certfile, keyfile):
        with self._lock:
            self.ctx.load_cert_chain(certfile, keyfile)

    def close(self):
        self.srv.close()

    def _sni(self, sslobj, name, ctx):
        with self._lock:
            self._sni_by_obj[id(sslobj)] = name

    def _wrap(self, sess):
        sess.sock.settimeout(15)
        with self._lock:
            ctx = self.ctx
        tls = ctx.wrap_socket(sess.sock, server_side=True)
        with self._lock:
            sni = self._sni_by_obj.pop(id(tls), None)
            self.handshakes.append(Handshake(sni, tls.session_reused, tls.version()))
        sess.sock = tls

    def _handler(self, sess):
        cmds = []
        self.commands.append(cmds)
        tls = False
        if self.implicit:
            self._wrap(sess)
            tls = True
        sess.send("220 tls-script.test ESMTP scripted")
        while True:
            line = sess.readline(timeout=30)
            if line is None:
                return
            cmds.append(line)
            verb = line[:8].upper().split(" ")[0]
            if verb == "EHLO":
                kw = ["tls-script.test"] + (self.ehlo_tls_kw if tls else self.ehlo_kw)
                if self.starttls and not tls:
                    kw.append("STARTTLS")
                sess.send("\r\n".join(f"250{'-' if i < len(kw) - 1 else ' '}{k}"
                                       for i, k in enumerate(kw)))
            elif verb == "STARTTLS" and self.starttls and not tls:
                sess.send(self.starttls_reply)
                if not self.starttls_reply.startswith("220"):
                    continue
                assert not sess.buf, "plaintext after STARTTLS"
                self._wrap(sess)
                tls = True
            elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                sess.send("250 2.0.0 Ok")
            elif verb == "DATA":
                sess.send("354 End data with <CR><LF>.<CR><LF>")
                data = sess.read_data()
                if data is None:
                    return
                self.messages.append((tls, data))
                sess.send("250 2.0.0 Ok: queued as TLSSCRIPT")
            elif verb == "QUIT":
                sess.send("221 2.0.0 Bye")
                return
            else:
                sess.send("502 5.5.2 Error: command not recognized")


@contextlib.contextmanager
def tls_mx(tb, *args, **kw):
    mx = TlsMx(tb, *args, **kw)
    try:
        yield mx
    finally:
        mx.close()


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="smtpgw-e2e-tls-") as d:
        yield d


# ------------------------------------------------- which legs ran TLS

@dataclass
class MailRun:
    """One message sent by an opportunistic raw client (STARTTLS when it
    is shown), and what happened."""
    lport: int
    starttls_shown: bool
    starttls_reply: object   # the reply to STARTTLS, or None if not sent
    client_tls: bool
    mail_reply: object
    delivered: bool
    dialogue: str


def send_opportunistic(tb, fl, token, addr=None, use_starttls=True, sni=None, helo=None,
                       mail_params=""):
    """int-client (fl.client) to addr (default fl.server_addr) port 25:
    EHLO; STARTTLS if shown and use_starttls (then EHLO again inside);
    MAIL, RCPT, DATA with token; QUIT.  Stops at the first refusal of
    MAIL/RCPT/DATA.  Returns a MailRun."""
    addr = addr or fl.server_addr
    lport = random_lport()
    c = SmtpConn.open(tb.netns(fl.client), addr, 25, lport, timeout=20.0)
    shown = client_tls = delivered = False
    st = mail = None
    try:
        g = c.reply(timeout=20)
        assert g.code == 220, c.dialogue()
        hello = c.cmd(f"{'HELO' if helo == 'HELO' else 'EHLO'} {fl.helo}", timeout=20)
        assert hello.code == 250, c.dialogue()
        shown = any(l[4:].upper().startswith("STARTTLS") for l in hello.lines[1:])
        if shown and use_starttls:
            st = c.cmd("STARTTLS", timeout=20)
            if st.code == 220:
                ctx = client_context()
                c.sock = ctx.wrap_socket(c.sock, server_hostname=sni)
                c.transcript.append(("C", b"[TLS handshake done]\r\n"))
                client_tls = True
                assert c.cmd(f"EHLO {fl.helo}", timeout=20).code == 250, c.dialogue()
        mail = c.cmd(f"MAIL FROM:<{fl.sender}>{mail_params}", timeout=30)
        if mail.code == 250:
            r = c.cmd(f"RCPT TO:<{fl.rcpt}>", timeout=20)
            if r.code == 250 and c.cmd("DATA", timeout=20).code == 354:
                c.send(f"Subject: {token}\r\n\r\ntoken {token}\r\n.\r\n")
                delivered = c.reply(timeout=30).code == 250
        with contextlib.suppress(Exception):
            c.cmd("QUIT", timeout=5)
        return MailRun(lport, shown, st, client_tls, mail, delivered, c.dialogue())
    finally:
        c.close()


def legs(tb, off, sid):
    """{"client": bool, "server": bool}: which legs the gateway logged as
    TLS (`tls ready side=...`) for session sid."""
    lines = [l for l in tb.log_since(off).splitlines() if f" {sid} " in l]
    return {side: any(f" tls ready side={side} " in l for l in lines)
            for side in ("client", "server")}


def mx_saw_tls(tb, fl, mxoff, off, sid):
    """Did the receiving Postfix log a TLS connection for the gateway's
    upstream connection of session sid?"""
    sess = tb.mx_session(fl.server, mxoff, *tb.upstream_endpoint(off, sid))
    return any("TLS connection established from" in l for l in sess.lines)


def received_with_tls(message):
    """The receiving Postfix's own (topmost) Received header says 'with
    ESMTPS' when the message came over TLS, 'with ESMTP' when not."""
    head = message.split("\n\n", 1)[0]
    first = re.sub(r"\n[ \t]+", " ", head)
    for line in first.splitlines():
        if line.lower().startswith("received:"):
            m = re.search(r" with (ESMTPS?A?|SMTPS?) ", line)
            return m.group(1).startswith("ESMTPS") or m.group(1) == "SMTPS" if m else None
    return None
