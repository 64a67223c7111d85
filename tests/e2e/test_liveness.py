"""No session is pinned forever: a silent peer meets a timer, a closing
client is noticed, in the states where that once failed.

Each session holds a slot in max-sessions and max-sessions-per-client,
so a session that never ends is a denial of service.  With the server
timeouts at 3 s (timeout-server-command, timeout-server-data-end) and
the client command timeout at 3 s, this proves:
- STARTTLS towards a destination that answers 220 and then says nothing
  (no TLS handshake): the client, told 220 and paused at its
  ClientHello while the gateway's upstream handshake waits, sees the
  session end 3 to 6 s later (the upstream handshake's timer used to be
  cancelled right after it was armed);
- the same destination, but the client closes while the gateway waits
  for it: the session ends within 2 s, although the server timeout is
  the default 300 s here (the paused client leg's close went unseen);
- implicit TLS (465) towards a destination that accepts TCP and never
  answers TLS: the client's handshake is paused at its ClientHello; the
  client closes; the session ends within 2 s;
- a client that is told 220 to STARTTLS and never starts its handshake
  is cut off after timeout-client-command;
- a client that goes silent inside an AUTH exchange (after a 334) is
  cut off with `421 4.4.2` after timeout-client-command;
- `tls-action allow` (the legs spliced after the relayed STARTTLS) with
  both peers silent: the session ends after timeout-server-data-end
  (reason spliced-idle-timeout); it had no timeout at all;
- 600 locally answered commands in one write right after the greeting
  (more than the 256-deep pipelining window): all 600 are answered in
  order and the client's close then ends the session (it used to
  freeze at the window, outliving the client).
The scripted destination listens on ext-mx's second address
(198.51.100.26), so every session crosses the gateway outbound.
"""

import select
import socket
import ssl
import time

import pytest

from conftest import ADDR, ScriptedServer, flow, in_netns, random_lport, scripted_smtp

FL = flow("outbound", 4)
SHORT = 3


def answer_starttls_then_silent(sess):
    """An MX that offers STARTTLS, answers it with 220, then never speaks."""
    sess.send("220 script.test ESMTP scripted")
    while True:
        line = sess.readline(timeout=60)
        if line is None:
            sess.events.append("eof")
            return
        sess.commands.append(line)
        verb = line[:4].upper()
        if verb == "EHLO":
            sess.send("250-script.test\r\n250-PIPELINING\r\n250 STARTTLS")
        elif verb == "STAR":
            sess.send("220 2.0.0 Ready to start TLS")
            sess.events.append("silent after 220")
            while sess.read_bytes(1, timeout=60) is not None:
                pass
            sess.events.append("eof")
            return
        else:
            sess.send("250 2.0.0 Ok")


def session_end(testbed, off, lport, timeout=10.0):
    """(sid, seconds until its 'session end' line appeared, the line)."""
    sid = testbed.gateway_session(off, FL.client_addr, lport)
    t0 = time.monotonic()
    line = testbed.wait_gateway_line(off, sid, r"session end ", timeout=timeout)
    return sid, time.monotonic() - t0, line


def client_hello_after_starttls(c):
    """After the 220: start TLS on c's socket, send the ClientHello, get
    no answer.  Returns the TLS socket (it owns the descriptor)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(c.sock, server_hostname="ext.test", do_handshake_on_connect=False)
    tls.setblocking(False)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return tls


def wait_closed(tls, limit):
    """(seconds until the gateway ended the session, what the client got:
    "failed" for a failed handshake, else the text read inside TLS -- the
    gateway may finish the handshake with its own certificate to say why)."""
    t0 = time.monotonic()
    done, got = False, b""
    while time.monotonic() - t0 < limit:
        r, _, _ = select.select([tls], [], [], 0.2)
        if not r:
            continue
        try:
            if not done:
                tls.do_handshake()
                done = True
                continue
            chunk = tls.recv(4096)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue
        except (ssl.SSLError, OSError):
            return time.monotonic() - t0, got.decode("latin-1") if done else "failed"
        if not chunk:
            return time.monotonic() - t0, got.decode("latin-1")
        got += chunk
    return None, got.decode("latin-1")


def test_upstream_silent_after_starttls_220(testbed, gateway_config, scripted_server):
    gateway_config.set("global", "timeout-server-command", str(SHORT))
    scripted_server(answer_starttls_then_silent)
    lport = random_lport()
    off = testbed.log_offset()
    c = testbed.connect(FL.client, ADDR["ext-script"][4], 25, lport=lport)
    assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
    assert c.cmd("STARTTLS").code == 220, c.dialogue()
    tls = client_hello_after_starttls(c)
    try:
        took, got = wait_closed(tls, SHORT + 5)
    finally:
        tls.close()
    assert took is not None and SHORT - 0.5 <= took <= SHORT + 3, (took, got)
    assert got == "failed" or got.startswith("421 "), got
    _, _, line = session_end(testbed, off, lport)
    assert "smtp upstream lost reason=\"timeout\"" in testbed.log_since(off), line


def test_client_close_noticed_while_upstream_tls_silent(testbed, scripted_server):
    # the server timeout stays at its default (300 s): only noticing the
    # client's close can end this session soon
    srv = scripted_server(answer_starttls_then_silent)
    lport = random_lport()
    off = testbed.log_offset()
    c = testbed.connect(FL.client, ADDR["ext-script"][4], 25, lport=lport)
    assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
    assert c.cmd("STARTTLS").code == 220, c.dialogue()
    tls = client_hello_after_starttls(c)
    sess = srv.session(finished=False)
    deadline = time.monotonic() + 5
    while "silent after 220" not in sess.events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "silent after 220" in sess.events, sess.events
    time.sleep(0.5)
    tls.close()
    _, took, line = session_end(testbed, off, lport, timeout=5)
    assert took < 2.5, (took, line)
    assert "reason=client-disconnect" in line, line


def test_implicit_tls_client_close_noticed_while_upstream_silent(testbed):
    def accept_and_say_nothing(sess):
        sess.events.append("accepted")
        while sess.read_bytes(1, timeout=60) is not None:
            pass
        sess.events.append("eof")

    srv = ScriptedServer(testbed, "ext-mx", ADDR["ext-script"][4], accept_and_say_nothing,
                         port=465)
    try:
        lport = random_lport()
        off = testbed.log_offset()
        with in_netns(testbed.netns(FL.client)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", lport))
            s.settimeout(5)
            s.connect((ADDR["ext-script"][4], 465))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        tls = ctx.wrap_socket(s, server_hostname="ext.test", do_handshake_on_connect=False)
        tls.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()  # the ClientHello goes out; no answer comes
        sess = srv.session(finished=False)
        testbed.wait_gateway_line(off, testbed.gateway_session(off, FL.client_addr, lport),
                                  r"session upstream connected")
        deadline = time.monotonic() + 5
        while "accepted" not in sess.events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "accepted" in sess.events, sess.events
        time.sleep(0.5)
        tls.close()  # wrap_socket took over the socket's descriptor
        _, took, line = session_end(testbed, off, lport, timeout=5)
        assert took < 2.5, (took, line)
    finally:
        srv.close()


def test_client_silent_after_starttls_220(testbed, gateway_config):
    gateway_config.set("global", "timeout-client-command", str(SHORT))
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(FL.client, FL.server_addr, 25, lport=lport) as c:
        assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
        assert c.cmd("STARTTLS").code == 220, c.dialogue()
        # never a ClientHello
        replies, end, took = c.read_to_end(timeout=SHORT + 5)
    assert end in ("eof", "reset") and took <= SHORT + 3, (end, took, c.dialogue())
    session_end(testbed, off, lport)


def test_client_silent_in_auth_exchange(testbed, gateway_config, scripted_server):
    gateway_config.set("global", "timeout-client-command", str(SHORT))
    scripted_server(scripted_smtp(ehlo=("PIPELINING", "AUTH PLAIN"),
                                  replies={"AUTH": "334 "}))
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(FL.client, ADDR["ext-script"][4], 25, lport=lport) as c:
        assert "AUTH PLAIN" in c.ehlo(FL.helo).text, c.dialogue()
        assert c.cmd("AUTH PLAIN").code == 334, c.dialogue()
        t0 = time.monotonic()
        replies, end, _ = c.read_to_end(timeout=SHORT + 5)
        took = time.monotonic() - t0
    assert [r.code for r in replies] == [421], c.dialogue()
    assert end == "eof" and SHORT - 0.5 <= took <= SHORT + 3, (end, took)
    session_end(testbed, off, lport)


def test_spliced_session_idle_timeout(testbed, gateway_config, scripted_server):
    gateway_config.update({("action Testbed-Outgoing", "tls-action"): "allow",
                           ("policy SMTP-Proxy-Out", "tls-support"): "disabled",
                           ("global", "timeout-server-data-end"): str(SHORT)})
    scripted_server(answer_starttls_then_silent)
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(FL.client, ADDR["ext-script"][4], 25, lport=lport) as c:
        assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
        assert c.cmd("STARTTLS").code == 220, c.dialogue()
        sid = testbed.gateway_session(off, FL.client_addr, lport)
        testbed.wait_gateway_line(off, sid, r"tls action=allow spliced=yes")
        t0 = time.monotonic()
        _, end, _ = c.read_to_end(timeout=SHORT + 5)
        took = time.monotonic() - t0
    assert end == "eof" and took <= SHORT + 3, (end, took)
    _, _, line = session_end(testbed, off, lport)
    assert "reason=spliced-idle-timeout" in line, line


def test_pipelined_flood_answered_then_close_noticed(testbed):
    n = 600
    lport = random_lport()
    off = testbed.log_offset()
    c = testbed.connect(FL.client, FL.server_addr, 25, lport=lport)
    assert c.reply().code == 220, c.dialogue()
    c.send("XYZZY\r\n" * n)
    replies = c.replies(n, timeout=10)
    assert all(r.code == 500 for r in replies), c.dialogue()
    c.sock.shutdown(socket.SHUT_WR)
    _, end, _ = c.read_to_end(timeout=5)
    c.close()
    assert end == "eof", c.dialogue()
    _, took, _ = session_end(testbed, off, lport, timeout=5)
    assert took < 2.5
