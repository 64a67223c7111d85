"""STARTTLS when the client's window is full: plaintext that arrives
while the 220 is still queued is never run as a command inside TLS.

A man in the middle on the client's side can append plaintext commands
after a client's STARTTLS; RFC 3207 5 says nothing read after the
STARTTLS line and before the handshake may ever be interpreted.  The
gateway once discarded what was buffered with the STARTTLS line, but
when the 220 could not be written at once (a small client receive
window) it went back to reading before the handshake began, and what
arrived meanwhile was executed as the first command inside TLS.

Here the client (int-client, outbound) shrinks its receive buffer, the
gateway namespace's TCP send buffers are made small (net.ipv4.tcp_wmem,
restored afterwards), and the client asks for 2000 locally answered
replies without reading them (RCPT before MAIL: 503 each, about 80 KiB),
so the 220 to its STARTTLS is stuck behind them.  Only then does it send
`MAIL FROM:<injected@evil.test>` in plaintext, drain its replies up to
the 220 and start TLS.  Proves: the injected line is never executed --
either the handshake fails (the plaintext reached the TLS layer, which
refuses it: the right outcome), or, if it succeeds, the first reply
inside TLS is the one to the client's own EHLO; and the gateway never
logs a refused or forwarded MAIL for that session after `tls ready
side=client`.
"""

import socket
import ssl
import time

from conftest import SmtpConn, flow, in_netns, random_lport

FL = flow("outbound", 4)
FLOOD = 2000


def test_plaintext_after_starttls_never_runs_in_tls(testbed):
    old_wmem = testbed.sysctl("gw", "net.ipv4.tcp_wmem")
    testbed.sysctl("gw", "net.ipv4.tcp_wmem", "4096 4096 4096")
    try:
        lport = random_lport()
        off = testbed.log_offset()
        with in_netns(testbed.netns(FL.client)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", lport))
            s.settimeout(10)
            s.connect((FL.server_addr, 25))
        c = SmtpConn(s)
        try:
            assert "STARTTLS" in c.ehlo(FL.helo).text, c.dialogue()
            # in writes of 100 lines: below the pipelining window either way
            for _ in range(FLOOD // 100):
                c.send("RCPT TO:<x@ext.test>\r\n" * 100)
                time.sleep(0.02)
            c.send("STARTTLS\r\n")
            sid = testbed.gateway_session(off, FL.client_addr, lport)
            # the destination said 220 and the client's 220 is queued
            testbed.wait_gateway_line(off, sid, r"tls starttls side=server code=220")
            time.sleep(0.5)
            c.send("MAIL FROM:<injected@evil.test>\r\n")
            time.sleep(0.5)
            replies = [c.reply(timeout=10) for _ in range(FLOOD)]
            assert all(r.code == 503 for r in replies), c.dialogue()
            assert c.reply(timeout=10).code == 220, c.dialogue()
            try:
                c.start_tls(timeout=5)
            except (ssl.SSLError, OSError):
                handshake = "failed"
            else:
                handshake = "done"
                first = c.cmd(f"EHLO {FL.helo}", timeout=5)
                assert first.code == 250, f"injected command ran inside TLS\n{c.dialogue()}"
        finally:
            c.close()
        time.sleep(0.5)
        lines = [l for l in testbed.log_since(off).splitlines() if f" {sid} " in l]
        text = "\n".join(lines)
        after = text.split("tls ready side=client", 1)[1] if "tls ready side=client" in text \
            else ""
        assert "command=MAIL" not in after and "injected" not in text, text
        if handshake == "failed":
            assert "tls ready side=client" not in text, text
    finally:
        testbed.sysctl("gw", "net.ipv4.tcp_wmem", old_wmem)
