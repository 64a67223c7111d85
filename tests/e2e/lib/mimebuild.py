"""MIME messages the content-inspection scenarios send, built so a test
knows every part's exact bytes (to check what a strip left), and one
SMTP session that sends them through the gateway."""

import base64
import io
import zipfile

from .mail import dot_stuff


# The first octets of a Windows executable: what libmagic calls
# application/x-dosexec (an MZ header and the PE signature it points to).
def pe_bytes(size=4096):
    b = bytearray(size)
    b[0:2] = b"MZ"
    b[0x3C:0x40] = (0x80).to_bytes(4, "little")
    b[0x80:0x84] = b"PE\x00\x00"
    b[0x84:0x86] = (0x14C).to_bytes(2, "little")  # i386
    return bytes(b)


def zip_bytes(entries):
    """A zip archive (deflated) holding {name: bytes}."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


def b64lines(data):
    enc = base64.b64encode(data).decode()
    return "\r\n".join(enc[i:i + 76] for i in range(0, len(enc), 76)) + "\r\n"


class Part:
    """One leaf of a multipart: its header lines and body (CRLF text)."""

    def __init__(self, headers, body):
        self.headers = headers
        self.body = body

    def text(self):
        return "\r\n".join(self.headers) + "\r\n\r\n" + self.body


def text_part(text):
    return Part(["Content-Type: text/plain; charset=us-ascii",
                 "Content-Transfer-Encoding: 7bit"], text)


def attachment(data, ctype, disposition):
    return Part([f"Content-Type: {ctype}", "Content-Transfer-Encoding: base64",
                 f"Content-Disposition: {disposition}"], b64lines(data))


def multipart(token, parts, boundary="=_smtpgw_e2e_b0undary", headers=()):
    """(message text, [(start, end) of each part's text in it]): a
    multipart/mixed message whose parts' byte ranges are known."""
    head = ["From: <alice@ext.test>", "To: <user@int.test>",
            f"Subject: smtpgw e2e {token}", "Date: Thu, 01 Jan 2026 00:00:00 +0000",
            f"Message-ID: <{token}@client.test>", "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"', *headers]
    text = "\r\n".join(head) + "\r\n\r\nThis is a MIME message.\r\n"
    spans = []
    for p in parts:
        text += f"--{boundary}\r\n"
        start = len(text)
        text += p.text()
        if not text.endswith("\r\n"):
            text += "\r\n"
        spans.append((start, len(text) - 2))  # the CRLF before the delimiter is not the part's
    text += f"--{boundary}--\r\n"
    return text, spans


def send(testbed, fl, text, sender=None, rcpt=None, lport=0, expect=250):
    """One session: EHLO, MAIL, RCPT, DATA with text; returns (end-of-data
    reply, connection) after QUIT."""
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        r = c.cmd(f"MAIL FROM:<{sender or fl.sender}>")
        assert r.code == 250, c.dialogue()
        r = c.cmd(f"RCPT TO:<{rcpt or fl.rcpt}>")
        assert r.code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354, c.dialogue()
        c.send(dot_stuff(text))
        r = c.reply(timeout=60)
        if expect is not None:
            assert r.code == expect, c.dialogue()
        c.cmd("QUIT")
    return r, c
