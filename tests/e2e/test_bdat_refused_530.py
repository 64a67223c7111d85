"""A BDAT refused before its chunk is read still has its chunk skipped.

With `sender-encryption = required` every command but EHLO, NOOP,
STARTTLS and QUIT is answered `530 5.7.0` before TLS.  A BDAT refused
that way announces a chunk: its octets are message data, never
commands.  Here the chunk is made of command lines (RSET, MAIL, RCPT,
NOOP); the client gets exactly one reply, the 530 for its BDAT, and the
next command (QUIT) gets its own reply.  Nothing of the chunk reaches
the destination.  (The chunk was once parsed as commands: four more
replies, and a NOOP forwarded upstream.)
"""

from conftest import flow, random_lport

FL = flow("outbound", 4)


def test_refused_bdat_chunk_is_skipped(testbed, gateway_config):
    gateway_config.set("action Testbed-Outgoing", "sender-encryption", "required")
    chunk = "RSET\r\nMAIL FROM:<a@int.test>\r\nRCPT TO:<b@ext.test>\r\nNOOP\r\n"
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(FL.client, FL.server_addr, 25, lport=lport) as c:
        c.ehlo(FL.helo)
        c.send(f"BDAT {len(chunk)} LAST\r\n{chunk}")
        r = c.reply()
        assert r.lines[0].startswith("530 5.7.0"), c.dialogue()
        assert c.cmd("QUIT").code == 221, c.dialogue()
        replies, end, _ = c.read_to_end(timeout=5)
    assert replies == [] and end == "eof", c.dialogue()
    sid = testbed.gateway_session(off, FL.client_addr, lport)
    lines = [l for l in testbed.log_since(off).splitlines() if f" {sid} " in l]
    refused = [l for l in lines if "smtp refused" in l]
    assert len(refused) == 1 and "command=BDAT" in refused[0], "\n".join(lines)
