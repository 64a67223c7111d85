"""The testbed's content scanners as the tests see them: where they
listen, test messages for them (EICAR in every wrapping clamd unpacks,
rspamd's GTUBE-like patterns for each action), and scanclient, the driver
of the daemon's own clamd and rspamd clients (tests/scanners), run inside
a testbed namespace with its results parsed.

The EICAR test file is built from hex: no file of the repository holds
the string itself."""

import base64
import io
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from .logs import log_fields, log_unquote
from .topology import new_token

SCAN_V4 = "192.0.2.60"     # clamd-1, rspamd
SCAN_V4_2 = "192.0.2.61"   # clamd-2
SCAN_V6 = "2001:db8:1::60"

EICAR = bytes.fromhex(
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d"
    "5354414e444152442d414e544956495255532d544553542d46494c452124482b482a")
EICAR_NAME = "Smtpgw.Test.EICAR.UNOFFICIAL"

# rspamd's test patterns (enable_test_patterns in the testbed): the first
# three letters choose the action.
GTUBE_TAIL = "JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE = {"reject": "X" + GTUBE_TAIL, "add header": "Y" + GTUBE_TAIL,
         "rewrite subject": "Z" + GTUBE_TAIL, "no action": "A" + GTUBE_TAIL}


def _headers(token, subject, extra=""):
    return (f"From: Alice <alice@ext.test>\r\n"
            f"To: Bob <bob@int.test>\r\n"
            f"Subject: {subject} {token}\r\n"
            f"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\n"
            f"Message-ID: <{token}@ext.test>\r\n"
            f"MIME-Version: 1.0\r\n{extra}")


def _b64(data):
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def _multipart(token, subject, parts):
    """parts: (content-type, headers, body text) with body already encoded."""
    b = f"b-{token}"
    out = _headers(token, subject, f'Content-Type: multipart/mixed; boundary="{b}"\r\n') + "\r\n"
    out += "This is a multi-part message in MIME format.\r\n"
    for ctype, hdrs, body in parts:
        out += f"--{b}\r\nContent-Type: {ctype}\r\n{hdrs}\r\n{body}\r\n"
    return (out + f"--{b}--\r\n").encode()


def _zip(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def msg_plain(token, payload=EICAR):
    return (_headers(token, "plain") + "Content-Type: text/plain\r\n\r\n"
            "See below.\r\n").encode() + payload + b"\r\n"


def msg_attachment(token, payload=EICAR):
    return _multipart(token, "attachment", [
        ("text/plain; charset=us-ascii", "", "The file is attached."),
        ("application/octet-stream; name=\"tool.com\"",
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"tool.com\"\r\n", _b64(payload)),
    ])


def msg_zip(token, payload=EICAR):
    return _multipart(token, "zip", [
        ("text/plain; charset=us-ascii", "", "The archive is attached."),
        ("application/zip; name=\"tools.zip\"",
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"tools.zip\"\r\n",
         _b64(_zip("tool.com", payload))),
    ])


def msg_nested(token, payload=EICAR):
    """An attached message (message/rfc822) that carries the attachment."""
    # the inner boundary must not start with the outer one (that is
    # ambiguous MIME, which an inbound action refuses before any scan)
    inner = msg_attachment("inner-" + token, payload).decode()
    return _multipart(token, "forwarded", [
        ("text/plain; charset=us-ascii", "", "Forwarding this."),
        ("message/rfc822", "Content-Disposition: attachment\r\n", inner),
    ])


def msg_text(token, text, subject="hello"):
    return (_headers(token, subject) + "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            + text + "\r\n").encode()


def msg_with_attachment(token, text, attachment):
    """A short text part (rspamd looks for GTUBE only in small text parts)
    and an attachment, so the body spans many chunks."""
    return _multipart(token, "report", [
        ("text/plain; charset=us-ascii", "", text),
        ("application/octet-stream; name=\"data.bin\"",
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"data.bin\"\r\n", _b64(attachment)),
    ])


def msg_ordinary(token):
    return msg_text(token, "Hi Bob,\r\n\r\nlunch tomorrow at noon?\r\n\r\nAlice")


class ScanDir:
    """A directory of message files every user can read (scanclient may
    run as the workers' unprivileged user); removed by cleanup()."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="smtpgw-scan-"))
        os.chmod(self.path, 0o755)

    def write(self, name, data):
        p = self.path / name
        p.write_bytes(data)
        os.chmod(p, 0o644)
        return str(p)

    def big(self, name, size):
        """A text message of about size octets (base64 lines of noise)."""
        p = self.path / name
        line = (base64.b64encode(os.urandom(57)) + b"\r\n")
        with open(p, "wb") as f:
            f.write(msg_text(new_token(), "big message follows"))
            written = 0
            while written < size:
                f.write(line)
                written += len(line)
        os.chmod(p, 0o644)
        return str(p)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def run_scanclient(tb, args, netns="gw", user=None, timeout=120):
    """Run scanclient ARGS inside netns (as user, if given); returns
    (result lines as dicts in the order the scans ended, status lines as
    {group number: {key: value}}, the CompletedProcess)."""
    exe = str(tb.path("scanclient"))
    if not os.access(exe, os.X_OK):
        raise AssertionError(f"{exe} is not built (meson: tests/scanners)")
    argv = ["ip", "netns", "exec", tb.path(f"netns-{netns}").name]
    if user:
        argv += ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
    argv += [exe] + [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    results, status, group = [], {}, None
    for line in r.stdout.splitlines():
        if line.startswith("result "):
            f = {k: log_unquote(v) for k, v in log_fields(line).items()}
            results.append(f)
        elif line.startswith("status group="):
            group = int(line.split("=", 1)[1])
            status[group] = {}
        elif "=" in line and group is not None:
            k, v = line.split("=", 1)
            status[group][k] = v
    return results, status, r


def by_file(results):
    return {r["file"]: r for r in results}


def clamd_servers(tb, *names, transport="unix"):
    """Server list for scanclient: names clamd-1 / clamd-2, over the Unix
    socket, "tcp" (IPv4) or "tcp6"."""
    out = []
    for n in names:
        if transport == "unix":
            out.append(f"unix:{tb.path(f'{n}-socket')}")
        elif transport == "tcp":
            out.append(f"tcp:{SCAN_V4 if n == 'clamd-1' else SCAN_V4_2}:3310")
        else:
            if n != "clamd-1":
                raise ValueError("only clamd-1 listens on IPv6")
            out.append(f"tcp:[{SCAN_V6}]:3310")
    return " ".join(out)


def rspamd_servers(tb, transport="tcp"):
    if transport == "unix":
        return f"unix:{tb.path('rspamd-socket')}"
    if transport == "tcp6":
        return f"tcp:[{SCAN_V6}]:11333"
    return f"tcp:{SCAN_V4}:11333"


def scanners_up(tb):
    """Every scanner running and answering (a test may have stopped one)."""
    for n in ("clamd-1", "clamd-2", "rspamd"):
        tb.cmd("scanners", "resume", n, check=False)
    tb.cmd("scanners", "up", timeout=300)


def dot_stuff_bytes(data):
    """DATA encoding of a CRLF message (bytes): leading dots doubled, the end marker."""
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"


def send_through(tb, fl, data, server=None, rcpts=None, sender=None, timeout=60):
    """One message (bytes) along flow fl over a raw SMTP session to server
    (default the flow's MX).  Returns (reply to the end of data, session
    id in the gateway log, gateway log offset before the session)."""
    from .topology import random_lport
    offset = tb.log_offset()
    lport = random_lport()
    with tb.connect(fl.client, server or fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        r = c.cmd(f"MAIL FROM:<{sender or fl.sender}>")
        assert r.code == 250, c.dialogue()
        for rcpt in rcpts or [fl.rcpt]:
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert r.code == 250, c.dialogue()
        r = c.cmd("DATA")
        assert r.code == 354, c.dialogue()
        c.send(dot_stuff_bytes(data))
        reply = c.reply(timeout=timeout)
        try:
            c.cmd("QUIT")
        except Exception:  # a drop / block verdict closes the session
            pass
    sid = tb.gateway_session(offset, fl.client_addr, lport)
    return reply, sid, offset


def quarantine_records(tb):
    """{id: head dict} of the gateway's quarantine (rcpt: a list)."""
    out = {}
    for p in sorted(Path(tb.path("gw-quarantine")).glob("*.msg")):
        head = p.read_bytes().split(b"\n\n", 1)[0].decode("latin-1").splitlines()
        assert head[0] == "smtpgw-quarantine 1", head[:1]
        rec = {"rcpt": []}
        for line in head[1:]:
            k, v = line.split("=", 1)
            if k == "rcpt":
                rec["rcpt"].append(v)
            else:
                rec[k] = v
        out[rec["id"]] = rec
    return out


def quarantined_message(tb, qid):
    """The message octets of a quarantine record."""
    data = (Path(tb.path("gw-quarantine")) / f"{qid}.msg").read_bytes()
    return data.split(b"\n\n", 1)[1]


def quarantine_of(tb, sid):
    """The quarantine record of gateway session sid (its head dict), or None."""
    for rec in quarantine_records(tb).values():
        if rec["session"] == sid:
            return rec
    return None
