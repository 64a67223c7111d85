"""SmtpConn: a raw SMTP client whose socket is made in a testbed namespace
and driven from the test (exact bytes, one write or one at a time;
replies parsed; the dialogue kept for failure messages)."""

import socket
import ssl
import time
from dataclasses import dataclass

from .netns import family_of, in_netns


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
