"""Protocol errors get the right reply from smtpgw, and nothing gets through.

Proves, one case each, what smtpgw answers and what reaches the
destination (ext-mx's session summary: which commands it saw, whether a
DATA completed; and its Maildir):
- HTTP (GET, POST, CONNECT, a "Host:" header line) after the greeting:
  `500 5.5.1` and close; ext-mx sees no command;
- an unknown command: `500 5.5.2`, the session goes on;
- VRFY / EXPN: `502 5.5.1`, not forwarded; with allow-vrfy = yes VRFY
  reaches ext-mx and its answer comes back;
- a MAIL parameter of an extension not advertised (an unknown one after
  EHLO, SIZE after HELO): `555 5.5.4`, not forwarded;
- talking before the greeting (scripted upstream greets after 1 s): the
  greeting, then `421 4.5.0 ... improper command pipelining`, close; the
  upstream never gets a command;
- bytes after EHLO or DATA before their reply: the owed replies, then
  `421 4.5.0`, close; the message is never completed upstream;
- BDAT with a malformed size: `501 5.5.4` and close;
- max-recipients = 3: RCPTs 4 and 5 get `452 4.5.3`, the message goes to
  the first three only;
- a 1200-octet message line: `500 5.5.2` after the dot; a 3000-octet
  command line: `500 5.5.2` and close; a 999-octet line is refused too,
  and a 1000-octet line right before the final dot still gets its 500 at
  once (the dot is not missed);
- a bare LF in DATA: `554 5.6.0` after the dot, the upstream aborted (no
  dot); the session goes on (a new upstream connection: MAIL gets 250,
  test_deny_keeps_session.py has the rest);
- max-message-size = 2048: MAIL SIZE=4096 gets `552 5.3.4`; a 4 KiB
  message gets `552 5.3.4` after its dot and is not delivered.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import pytest

from conftest import (ADDR, dot_stuff, delivered_to, flow, message, new_token,
                      random_lport, scripted_smtp)

pytestmark = pytest.mark.usefixtures("streamed_outbound")

FL = flow("outbound", 4)


class Session:
    """A raw session from int-client to ext-mx through the gateway, with
    what ext-mx logged about it once it is over."""

    def __init__(self, testbed, fl=FL):
        self.tb, self.fl = testbed, fl
        self.mx_off = testbed.maillog_offset(fl.server)
        self.offset = testbed.log_offset()
        self.lport = random_lport()
        self.c = testbed.connect(fl.client, fl.server_addr, lport=self.lport)

    def __enter__(self):
        return self.c

    def __exit__(self, *exc):
        self.c.close()

    def mx(self):
        """ext-mx's view of the session (waits until it ended)."""
        sid = self.tb.gateway_session(self.offset, self.fl.client_addr, self.lport)
        addr, port = self.tb.upstream_endpoint(self.offset, sid)
        return self.tb.mx_session(self.fl.server, self.mx_off, addr, port)


def closes_after(c, *codes):
    """The replies still to come are exactly codes, then EOF."""
    replies, how, _ = c.read_to_end(5)
    assert [r.code for r in replies] == list(codes), c.dialogue()
    assert how == "eof", c.dialogue()
    return replies


@pytest.mark.parametrize("request_text", [
    "GET / HTTP/1.1\r\nHost: mx.ext.test\r\n\r\n",
    "POST /submit HTTP/1.1\r\nHost: mx.ext.test\r\nContent-Length: 0\r\n\r\n",
    "CONNECT mx.ext.test:25 HTTP/1.1\r\n\r\n",
    "Host: mx.ext.test\r\n\r\n",
], ids=["GET", "POST", "CONNECT", "Host"])
def test_http(testbed, request_text):
    s = Session(testbed)
    with s as c:
        assert c.reply().code == 220
        c.send(request_text)
        r = closes_after(c, 500)[0]
        assert r.lines[-1].startswith("500 5.5.1 "), c.dialogue()
    assert " commands=0" in s.mx().disconnect


def test_unknown_command(testbed):
    with Session(testbed) as c:
        c.ehlo()
        r = c.cmd("XYZZY plugh")
        assert r.code == 500 and r.lines[-1].startswith("500 5.5.2 "), c.dialogue()
        assert c.cmd("NOOP").code == 250
        assert c.cmd("QUIT").code == 221


@pytest.mark.parametrize("cmd", ["VRFY user", "EXPN staff"])
def test_vrfy_expn_refused(testbed, cmd):
    s = Session(testbed)
    with s as c:
        c.ehlo()
        r = c.cmd(f"{cmd}@ext.test")
        assert r.code == 502 and r.lines[-1].startswith("502 5.5.1 "), c.dialogue()
        assert c.cmd("QUIT").code == 221
    assert " vrfy=" not in s.mx().disconnect and " expn=" not in s.mx().disconnect


def test_vrfy_allowed(testbed, gateway_config):
    gateway_config.set("global", "allow-vrfy", "yes")
    s = Session(testbed)
    with s as c:
        c.ehlo()
        r = c.cmd("VRFY user@ext.test")
        assert r.code == 252, c.dialogue()  # Postfix's own answer
        assert c.cmd("QUIT").code == 221
    assert " vrfy=1 " in s.mx().disconnect


def test_parameter_not_advertised(testbed):
    s = Session(testbed)
    with s as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<alice@int.test> XFROB=1")
        assert r.code == 555 and r.lines[-1].startswith("555 5.5.4 "), c.dialogue()
        assert c.cmd("HELO client.int.test").code == 250
        r = c.cmd("MAIL FROM:<alice@int.test> SIZE=100")  # no ESMTP, no SIZE
        assert r.code == 555 and r.lines[-1].startswith("555 5.5.4 "), c.dialogue()
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("QUIT").code == 221
    assert " mail=1 " in s.mx().disconnect


def test_early_talker(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(greeting_delay=1.0))
    with testbed.connect("int-client", ADDR["ext-script"][4]) as c:
        c.send("EHLO impatient.int.test\r\n")
        replies = closes_after(c, 220, 421)
        assert replies[1].lines[-1].startswith("421 4.5.0 ") and \
            "improper command pipelining" in replies[1].text, c.dialogue()
    assert srv.session().commands == []


def test_pipelining_violation_after_ehlo(testbed):
    s = Session(testbed)
    with s as c:
        assert c.reply().code == 220
        c.send("EHLO client.int.test\r\nMAIL FROM:<alice@int.test>\r\n")
        replies = closes_after(c, 250, 421)
        assert replies[1].lines[-1].startswith("421 4.5.0 "), c.dialogue()
    assert " mail=" not in s.mx().disconnect


def test_pipelining_violation_after_data(testbed):
    token = new_token()
    s = Session(testbed)
    with s as c:
        c.ehlo()
        c.send("MAIL FROM:<alice@int.test>\r\nRCPT TO:<user@ext.test>\r\nDATA\r\n"
               + dot_stuff(message(token)))
        replies, how, _ = c.read_to_end(5)
        codes = [r.code for r in replies]
        # the owed replies (354 included, DATA was sent), then 421 and close
        assert codes[:2] == [250, 250] and codes[-1] == 421, c.dialogue()
        assert 250 not in codes[2:] and how == "eof", c.dialogue()
        assert replies[-1].lines[-1].startswith("421 4.5.0 "), c.dialogue()
    sess = s.mx()
    assert " data=0/1 " in sess.disconnect, sess
    testbed.assert_not_queued("ext-mx", sess, token)


@pytest.mark.parametrize("cmd", ["BDAT 12x", "BDAT", "BDAT -5 LAST", "BDAT 5 FIRST"])
def test_malformed_bdat(testbed, cmd):
    with Session(testbed) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<user@ext.test>").code == 250
        c.send(f"{cmd}\r\nsome data\r\n")
        r = closes_after(c, 501)[0]
        assert r.lines[-1].startswith("501 5.5.4 "), c.dialogue()


def test_too_many_recipients(testbed, gateway_config):
    gateway_config.set("global", "max-recipients", "3")
    token = new_token()
    rcpts = [f"user+{token[-8:]}-{i}@ext.test" for i in range(5)]
    with Session(testbed) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        replies = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        assert [r.code for r in replies] == [250, 250, 250, 452, 452], c.dialogue()
        assert all(r.lines[-1].startswith("452 4.5.3 ") for r in replies[3:]), c.dialogue()
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
    msgs = testbed.wait_for_messages("ext-mx", token, 3)
    assert sorted(delivered_to(m) for m in msgs) == sorted(rcpts[:3])


def data_session(testbed, token, data, expect_code, expect_enh, then=None):
    """Send data (raw DATA contents, end included); the end of data must
    get expect_code; then(c) runs next; ext-mx must not complete DATA
    nor store anything."""
    s = Session(testbed)
    with s as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<user@ext.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data)
        r = c.reply()
        assert r.code == expect_code and r.lines[-1].startswith(
            f"{expect_code} {expect_enh} "), c.dialogue()
        if then:
            then(c)
    sess = s.mx()
    assert " data=0/1 " in sess.disconnect, sess
    testbed.assert_not_queued("ext-mx", sess, token)


def test_line_too_long_in_data(testbed):
    token = new_token()
    data = dot_stuff(message(token, body="x" * 1200 + "\r\nshort line\r\n"))
    data_session(testbed, token, data, 500, "5.5.2")


def test_line_of_999_octets(testbed):
    token = new_token()
    data = dot_stuff(message(token, body="y" * 999 + "\r\nshort line\r\n"))
    data_session(testbed, token, data, 500, "5.5.2")


def test_long_line_right_before_the_dot(testbed):
    """A 1000-octet line followed at once by the end of data: the client
    must get its 500, not wait for timeout-client-data."""
    with Session(testbed) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<user@ext.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send("Subject: long\r\n\r\n" + "y" * 1000 + "\r\n.\r\n")
        r = c.reply(timeout=3)
        assert r.code == 500 and r.lines[-1].startswith("500 5.5.2 "), c.dialogue()


def test_command_line_too_long(testbed):
    with Session(testbed) as c:
        c.ehlo()
        c.send("NOOP " + "x" * 3000 + "\r\n")
        r = closes_after(c, 500)[0]
        assert r.lines[-1].startswith("500 5.5.2 "), c.dialogue()


def test_bare_lf_in_data(testbed):
    token = new_token()
    data = message(token, body="a line with a bare LF\nhere\r\n") + ".\r\n"

    def then(c):
        # the aborted connection is replaced: the session goes on
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221, c.dialogue()

    data_session(testbed, token, data, 554, "5.6.0", then)


def test_message_too_big(testbed, gateway_config):
    gateway_config.set("global", "max-message-size", "2048")
    with Session(testbed) as c:
        ehlo = c.ehlo()
        assert "SIZE 2048" in [l[4:] for l in ehlo.lines], ehlo
        r = c.cmd("MAIL FROM:<alice@int.test> SIZE=4096")
        assert r.code == 552 and r.lines[-1].startswith("552 5.3.4 "), c.dialogue()
    token = new_token()
    data = dot_stuff(message(token, body="0123456789abcdef\r\n" * 256))
    data_session(testbed, token, data, 552, "5.3.4")
