"""STARTTLS response injection: a destination (or a man in the middle on
its side) that sends more than the 220 to STARTTLS ends the session; the
extra bytes are never taken as replies.

A scripted MX on 198.51.100.26 offers STARTTLS and answers it with
"220 ready\\r\\n250 injected\\r\\n" in one write.  The client (int-client,
through the gateway) asked for STARTTLS after EHLO: it gets `421` and the
connection is closed; "250 injected" never reaches it, as a reply to
anything.  The gateway logs `upstream lost reason="data after the
STARTTLS reply (response injection)"` and never starts TLS with that
server: after STARTTLS the server reads nothing but the end of the
connection (no ClientHello, no further command).  The 421 is the only
answer to STARTTLS: the upstream's 220 is not passed on either (a client
told 220 would start a handshake the gateway never answers).
"""

import pytest

from conftest import ADDR, flow, random_lport, scripted_smtp


def starttls_through_injecting_server(testbed, scripted_server):
    """(client connection, its STARTTLS replies, server session, gateway sid)."""
    fl = flow("outbound", 4)
    srv = scripted_server(scripted_smtp(
        ehlo=("PIPELINING", "SIZE 10240000", "STARTTLS"),
        replies={"STAR": "220 ready\r\n250 injected"}))
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(fl.client, ADDR["ext-script"][4], 25, lport=lport) as c:
        assert "STARTTLS" in c.ehlo(fl.helo).text, c.dialogue()
        c.send("STARTTLS\r\n")
        replies, end, _ = c.read_to_end(timeout=5)
        assert end == "eof", c.dialogue()
    sid = testbed.gateway_session(off, fl.client_addr, lport)
    testbed.wait_gateway_line(off, sid, r'upstream lost reason="data after the STARTTLS '
                                        r'reply \(response injection\)"')
    assert "tls ready" not in "\n".join(
        l for l in testbed.log_since(off).splitlines() if f" {sid} " in l)
    return c, replies, srv.session()


def test_injected_reply_is_never_relayed(testbed, scripted_server):
    c, replies, sess = starttls_through_injecting_server(testbed, scripted_server)
    assert replies and replies[-1].code == 421, c.dialogue()
    assert "injected" not in c.dialogue()
    assert all(r.code != 250 for r in replies), c.dialogue()
    # The server never saw a handshake or a command after STARTTLS.
    assert sess.commands[-1] == "STARTTLS", sess.commands
    assert sess.received.endswith(b"STARTTLS\r\n"), sess.received
    assert sess.events[-1] == "eof", sess.events


def test_starttls_answered_by_421_alone(testbed, scripted_server):
    c, replies, _ = starttls_through_injecting_server(testbed, scripted_server)
    assert [r.code for r in replies] == [421], c.dialogue()
