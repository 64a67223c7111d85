"""STARTTLS command injection: plaintext pipelined after STARTTLS is never
executed, inside TLS or outside it (CVE-2011-0411 and its kin).

int-client, through the gateway to ext-mx, sends after EHLO one write:
"STARTTLS\\r\\nMAIL FROM:<evil@x>\\r\\n".  The gateway answers the STARTTLS
with 220 and nothing else (no reply for the injected MAIL, then or
later), and logs `smtp starttls plaintext-discarded bytes=20`.  After the
handshake the session starts afresh (RFC 3207 4.2): MAIL before EHLO is
refused with 503, EHLO's reply is the first thing the client reads, and
RCPT right after it is refused with 503 because no MAIL is in effect -
had the injected MAIL run inside TLS, that RCPT would have been accepted.
A proper transaction then delivers, from the client's own sender; the
injected sender never reaches ext-mx.
"""

from conftest import dot_stuff, flow, message, new_token, random_lport


def test_plaintext_after_starttls_is_discarded(testbed):
    fl = flow("outbound", 4)
    token = new_token()
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(fl.client, fl.server_addr, 25, lport=lport) as c:
        assert "STARTTLS" in c.ehlo(fl.helo).text, c.dialogue()
        c.send("STARTTLS\r\nMAIL FROM:<evil@x>\r\n")
        r = c.reply()
        assert r.code == 220, c.dialogue()
        c.start_tls()

        # Nothing is waiting for us: no reply to the injected MAIL.
        replies, end, _ = c.read_to_end(timeout=0.5)
        assert (replies, end) == ([], "timeout"), c.dialogue()
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 503, c.dialogue()
        e = c.cmd(f"EHLO {fl.helo}")
        assert e.code == 250 and "STARTTLS" not in e.text, c.dialogue()
        r = c.cmd(f"RCPT TO:<{fl.rcpt}>")
        assert r.code == 503, "RCPT accepted: the injected MAIL ran\n" + c.dialogue()

        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354, c.dialogue()
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
        c.cmd("QUIT")

    got = testbed.wait_for_message(fl.server, token)
    assert f"Return-Path: <{fl.sender}>" in got
    sid = testbed.gateway_session(off, fl.client_addr, lport)
    testbed.wait_gateway_line(off, sid, r"smtp starttls plaintext-discarded bytes=20\b")
    testbed.wait_gateway_line(off, sid, r"tls ready side=client ")
    assert "evil@x" not in testbed.log_since(off)
    assert testbed.messages_with(fl.server, "evil@x") == []
