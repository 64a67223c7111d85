"""When the destination refuses or fails, the client hears it, never a 250.

Proves that smtpgw passes the destination's refusals through unchanged
and turns its failures into the right temporary errors:
- Postfix refuses the only recipient through its access map (550 5.1.1
  or 450 4.2.0): the client gets that reply, then Postfix's 554 to DATA;
- a scripted upstream answers the end of data with 550, 451 or a
  three-line 554: the client gets exactly that reply, and the gateway
  logs the message as rejected;
- a scripted upstream answers MAIL with 421: the client gets that 421
  and the connection closes;
- a scripted upstream dies in the middle of DATA: the client's end of
  data gets `451 4.4.2`; after that a command gets `421 4.4.2` and the
  connection closes, or QUIT gets 221; the upstream never saw an end of
  data;
- the same in the middle of a BDAT chunk (the upstream offers
  CHUNKING): `451 4.4.2` once the chunk is in, then `421 4.4.2`;
- a scripted upstream closes instead of answering RCPT, or while the
  client is idle: the client gets `421 4.4.2` and the connection closes;
- a scripted upstream that goes silent (no greeting, no reply to RCPT,
  no reply to the end of data) is given up after the matching
  timeout-server-* setting (2 s here): the client gets `421 4.4.2`
  within 2 to 4 s and the connection closes.
The scripted upstream listens on ext-mx's second address (198.51.100.26
or 2001:db8:2::26), so the session crosses the gateway outbound.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import time

import pytest

from conftest import ADDR, dot_stuff, flow, message, new_token, random_lport, scripted_smtp

pytestmark = pytest.mark.usefixtures("streamed_outbound")


@pytest.mark.parametrize("local,code,enh", [("reject550", 550, "5.1.1"),
                                            ("defer450", 450, "4.2.0")])
def test_postfix_refuses_recipient(testbed, local, code, enh):
    fl = flow("outbound", 4)
    token = new_token()
    rcpt = f"{local}+{token[-8:]}@ext.test"
    with testbed.connect(fl.client, fl.server_addr) as c:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == code and r.lines[-1].startswith(f"{code} {enh} <{rcpt}>"), c.dialogue()
        r = c.cmd("DATA")
        assert r.code == 554 and "no valid recipients" in r.text, c.dialogue()
        assert c.cmd("QUIT").code == 221
    assert testbed.messages_with("ext-mx", token) == []


def start_session(testbed, family, lport=0):
    c = testbed.connect("int-client", ADDR["ext-script"][family], lport=lport)
    c.ehlo("client.int.test")
    return c


@pytest.mark.parametrize("reply", ["550 5.7.1 Scripted: message refused, go away",
                                   "451 4.3.0 Scripted: try again later",
                                   "554-5.7.1 Scripted: first line\r\n"
                                   "554-5.7.1 second line\r\n"
                                   "554 5.7.1 last line"],
                         ids=["550", "451", "554-multiline"])
def test_data_end_refused(testbed, scripted_server, reply):
    srv = scripted_server(scripted_smtp(data_end=reply))
    token = new_token()
    offset = testbed.log_offset()
    lport = random_lport()
    with start_session(testbed, 4, lport) as c:
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<bob@ext.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        r = c.reply()
        assert r.text == reply.replace("\r\n", "\n"), c.dialogue()
        assert c.cmd("QUIT").code == 221
    sess = srv.session()
    assert len(sess.messages) == 1 and token.encode() in sess.messages[0]
    sid = testbed.gateway_session(offset, "192.0.2.10", lport)
    line = testbed.wait_gateway_line(offset, sid, r"smtp message result=")
    assert "result=rejected" in line and f"reply={reply[:3]}" in line, line


def test_421_to_mail(testbed, scripted_server):
    reply = "421 4.3.2 Scripted: shutting down"
    scripted_server(scripted_smtp(replies={"MAIL": reply}))
    with start_session(testbed, 4) as c:
        r = c.cmd("MAIL FROM:<alice@int.test>")
        assert r.text == reply, c.dialogue()
        rest, how, _ = c.read_to_end(5)
        assert rest == [] and how == "eof", c.dialogue()


@pytest.mark.parametrize("after", ["MAIL", "QUIT"])
@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_upstream_dies_mid_data(testbed, scripted_server, family, after):
    srv = scripted_server(scripted_smtp(die_in_data_after=1000), family=family)
    token = new_token()
    offset = testbed.log_offset()
    lport = random_lport()
    body = "".join(f"body line {i}\r\n" for i in range(400))
    data = dot_stuff(message(token, body=body))
    client_addr = ADDR["int-client"][family]
    with start_session(testbed, family, lport) as c:
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<bob@ext.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data[:3000])
        sess = srv.session()  # the upstream has died
        sid = testbed.gateway_session(offset, client_addr, lport)
        testbed.wait_gateway_line(offset, sid, r"smtp upstream lost")
        c.send(data[3000:])
        r = c.reply()
        assert r.code == 451 and r.lines[-1].startswith("451 4.4.2 "), c.dialogue()
        if after == "QUIT":
            assert c.cmd("QUIT").code == 221, c.dialogue()
        else:
            r = c.cmd("MAIL FROM:<alice@int.test>")
            assert r.code == 421 and r.lines[-1].startswith("421 4.4.2 "), c.dialogue()
        rest, how, _ = c.read_to_end(5)
        assert rest == [] and how == "eof", c.dialogue()
    assert sess.messages == [] and b"\r\n.\r\n" not in sess.received
    assert sess.events[-1].startswith("died in data"), sess.events


def test_upstream_closes_instead_of_replying(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(close_at="RCPT"))
    with start_session(testbed, 4) as c:
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        r = c.cmd("RCPT TO:<bob@ext.test>")
        assert r.code == 421 and r.lines[-1].startswith("421 4.4.2 "), c.dialogue()
        rest, how, _ = c.read_to_end(5)
        assert rest == [] and how == "eof", c.dialogue()
    assert srv.session().events[-1] == "closed at RCPT"


def test_upstream_closes_while_idle(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(close_at="IDLE"), family=6)
    with start_session(testbed, 6) as c:
        srv.session()
        replies, how, _ = c.read_to_end(5)
        assert [r.code for r in replies] == [421], c.dialogue()
        assert replies[0].lines[-1].startswith("421 4.4.2 ") and how == "eof", c.dialogue()


def test_upstream_dies_mid_bdat_chunk(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(ehlo=("PIPELINING", "CHUNKING"),
                                        die_in_data_after=500))
    offset = testbed.log_offset()
    lport = random_lport()
    with start_session(testbed, 4, lport) as c:
        assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
        assert c.cmd("RCPT TO:<bob@ext.test>").code == 250
        c.send(b"BDAT 3000 LAST\r\n" + b"x" * 998 + b"\r\n")
        srv.session()
        sid = testbed.gateway_session(offset, "192.0.2.10", lport)
        testbed.wait_gateway_line(offset, sid, r"smtp upstream lost")
        c.send(b"y" * 998 + b"\r\n" + b"z" * 998 + b"\r\n")
        r = c.reply()
        assert r.code == 451 and r.lines[-1].startswith("451 4.4.2 "), c.dialogue()
        r = c.cmd("RSET")
        assert r.code == 421 and r.lines[-1].startswith("421 4.4.2 "), c.dialogue()
        rest, how, _ = c.read_to_end(5)
        assert rest == [] and how == "eof", c.dialogue()


SILENT = {
    "greeting": ("GREETING", "timeout-server-greeting"),
    "rcpt": ("RCPT", "timeout-server-command"),
    "data-end": ("DATAEND", "timeout-server-data-end"),
}


@pytest.mark.parametrize("where", list(SILENT))
def test_silent_upstream_times_out(testbed, scripted_server, gateway_config, where):
    silent_at, key = SILENT[where]
    gateway_config.set("global", key, "2")
    srv = scripted_server(scripted_smtp(silent_at=silent_at))
    with testbed.connect("int-client", ADDR["ext-script"][4]) as c:
        t0 = time.monotonic()
        if where != "greeting":
            c.ehlo("client.int.test")
            assert c.cmd("MAIL FROM:<alice@int.test>").code == 250
            t0 = time.monotonic()
            c.send("RCPT TO:<bob@ext.test>\r\n")
            if where == "data-end":
                assert c.reply().code == 250
                assert c.cmd("DATA").code == 354
                t0 = time.monotonic()
                c.send(dot_stuff(message(new_token())))
        replies, how, _ = c.read_to_end(8)
        secs = time.monotonic() - t0
        assert [r.code for r in replies] == [421], c.dialogue()
        assert replies[0].lines[-1].startswith("421 4.4.2 ") and how == "eof", c.dialogue()
        assert 1.8 <= secs <= 4, f"421 after {secs:.1f} s"
    assert srv.session().events[-2:] == [f"silent at {silent_at}", "eof"]
