"""AUTH lines up to RFC 4954's 12288 octets are relayed whole.

Kerberos/GSSAPI tickets and OAuth bearer tokens make AUTH command lines
(with their initial response) and SASL response lines far longer than
the general command-line limit; RFC 4954 4 allows 12288 octets for them.
A scripted MX on 198.51.100.26 offers AUTH XOAUTH2 and GSSAPI:
- `AUTH XOAUTH2 <token>` with a realistic 9 KiB bearer token as the
  initial response reaches the MX byte for byte and the client gets the
  MX's 235;
- `AUTH GSSAPI` answered 334, then a 12 KiB response line (the longest
  RFC 4954 allows): the MX gets it byte for byte, the client its 235;
- a 13 KiB AUTH line is refused with `500 5.5.2` and never reaches the
  MX.
The gateway logs `smtp auth started` and never the token.
"""

import base64
import os

from conftest import ADDR, flow, random_lport

FL = flow("outbound", 4)


def auth_mx(sess):
    sess.send("220 script.test ESMTP scripted")
    while True:
        line = sess.readline(timeout=30)
        if line is None:
            sess.events.append("eof")
            return
        sess.commands.append(line)
        verb = line[:4].upper()
        if verb == "EHLO":
            sess.send("250-script.test\r\n250-PIPELINING\r\n250 AUTH XOAUTH2 GSSAPI")
        elif line.upper() == "AUTH GSSAPI":
            sess.send("334 ")
            resp = sess.readline(timeout=30)
            sess.commands.append(resp)
            sess.send("235 2.7.0 Authentication successful")
        elif verb == "AUTH":
            sess.send("235 2.7.0 Authentication successful")
        elif verb == "QUIT":
            sess.send("221 2.0.0 Bye")
            return
        else:
            sess.send("250 2.0.0 Ok")


def bearer(n):
    """An XOAUTH2 initial response around n octets of base64."""
    jwt = base64.urlsafe_b64encode(os.urandom(n * 3 // 4 - 80)).decode().rstrip("=")
    raw = f"user=alice@int.test\x01auth=Bearer {jwt}\x01\x01".encode()
    return base64.b64encode(raw).decode()


def test_long_auth_lines_relayed(testbed, scripted_server):
    srv = scripted_server(auth_mx)
    tok = bearer(9 * 1024)
    gss = base64.b64encode(os.urandom(9213)).decode()  # 12284 octets
    assert len(gss) + 2 <= 12288
    lport = random_lport()
    off = testbed.log_offset()
    with testbed.connect(FL.client, ADDR["ext-script"][4], 25, lport=lport) as c:
        assert "XOAUTH2" in c.ehlo(FL.helo).text, c.dialogue()
        assert c.cmd(f"AUTH XOAUTH2 {tok}").code == 235, c.dialogue(800)
        assert c.cmd("QUIT").code == 221
    sess = srv.session()
    assert f"AUTH XOAUTH2 {tok}" in sess.commands
    with testbed.connect(FL.client, ADDR["ext-script"][4], 25) as c:
        c.ehlo(FL.helo)
        assert c.cmd("AUTH GSSAPI").code == 334, c.dialogue()
        assert c.cmd(gss).code == 235, c.dialogue(800)
        assert c.cmd("QUIT").code == 221
    assert gss in srv.session(1).commands
    log = testbed.log_since(off)
    assert "smtp auth started" in log
    assert tok[:40] not in log and gss[:40] not in log


def test_auth_line_over_12288_refused(testbed, scripted_server):
    srv = scripted_server(auth_mx)
    tok = "A" * 13000
    with testbed.connect(FL.client, ADDR["ext-script"][4], 25) as c:
        c.ehlo(FL.helo)
        c.send(f"AUTH XOAUTH2 {tok}\r\n")
        replies, end, _ = c.read_to_end(timeout=5)
    assert replies and replies[0].lines[0].startswith("500 5.5.2"), c.dialogue(800)
    sess = srv.session()
    assert not any(cmd.startswith("AUTH") for cmd in sess.commands), sess.commands
