"""A client that vanishes mid-message never gets a message delivered.

Proves that when the client disconnects in the middle of DATA (with a
FIN or a RST, over IPv4 and IPv6) or in the middle of a BDAT chunk,
smtpgw aborts the upstream connection without an end of data: the
gateway logs `smtp upstream abort reason="client ... mid-message"`,
ext-mx logs "lost connection after DATA" (or BDAT) and a session summary
without a completed DATA/BDAT, and nothing of the session is queued or
delivered.  Part of the message has reached ext-mx before the client
goes (its lost-connection line counts the bytes), so the abort is really
what stops it.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import re

import pytest

from conftest import flow, message, new_token, random_lport

pytestmark = pytest.mark.usefixtures("streamed_outbound")

ABORT = r'smtp upstream abort reason="client (disconnected|error) mid-message"'


def partial_message(token):
    """A message cut off mid-line: headers and 2000 body lines, no end."""
    text = message(token, body="".join(f"line {i} of a message that never ends\r\n"
                                       for i in range(2000)))
    return text + "and this line is cut"


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_disconnect_in_data(testbed, family, how):
    fl = flow("outbound", family)
    token = new_token()
    mx_off = testbed.maillog_offset(fl.server)
    offset = testbed.log_offset()
    lport = random_lport()
    c = testbed.connect(fl.client, fl.server_addr, lport=lport)
    try:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(partial_message(token))
        sid = testbed.gateway_session(offset, fl.client_addr, lport)
        addr, port = testbed.upstream_endpoint(offset, sid)
        testbed.wait_relayed(fl, lport, (addr, port))
    finally:
        if how == "rst":
            c.abort()
        else:
            c.close()

    testbed.wait_gateway_line(offset, sid, ABORT)
    end = testbed.wait_gateway_line(offset, sid, r"session end reason=")
    assert re.search(r"reason=client-(disconnect|error)", end), end

    sess = testbed.mx_session(fl.server, mx_off, addr, port)
    assert sess.lost and "lost connection after DATA" in sess.lost, sess
    m = re.search(r"after DATA \((\d+) bytes\)", sess.lost)
    assert m and int(m.group(1)) > 0, sess
    assert " data=0/1 " in sess.disconnect, sess
    testbed.assert_not_queued(fl.server, sess, token)


def test_disconnect_in_bdat_chunk(testbed):
    fl = flow("outbound", 4)
    token = new_token()
    mx_off = testbed.maillog_offset(fl.server)
    offset = testbed.log_offset()
    lport = random_lport()
    msg = message(token).encode()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250
        # announce more than is sent, then go away
        c.send(f"BDAT {len(msg) + 1000} LAST\r\n".encode() + msg)
        sid = testbed.gateway_session(offset, fl.client_addr, lport)
        addr, port = testbed.upstream_endpoint(offset, sid)
        testbed.wait_relayed(fl, lport, (addr, port))

    testbed.wait_gateway_line(offset, sid, ABORT)
    sess = testbed.mx_session(fl.server, mx_off, addr, port)
    assert sess.lost and "lost connection after BDAT" in sess.lost, sess
    assert " bdat=0/1 " in sess.disconnect, sess
    testbed.assert_not_queued(fl.server, sess, token)
