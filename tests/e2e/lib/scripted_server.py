"""ScriptedServer: an SMTP server the test scripts, bound to a testbed
host's second address and run in threads of the test; scripted_smtp()
makes the handler of a plain MX with the faults a test asks for."""

import contextlib
import select
import socket
import threading
import time

from .netns import family_of, in_netns


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
