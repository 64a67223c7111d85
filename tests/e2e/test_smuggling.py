"""SMTP smuggling: no end-of-data variant lets a second message through.

Proves that none of the published malformed end-of-data sequences makes
smtpgw end a message early and execute what follows as commands.  Each
variant below is put into a message right after a text line (directly,
as in SEC Consult's write-up, and after a CRLF, as smtpsmug sends it),
followed by a smuggled MAIL / RCPT / DATA and a second message for
another recipient; then the message ends properly with CRLF.CRLF.

- `bare-newline = reject` (the default): the client gets exactly one
  reply to its end of data, `554 5.6.0`; ext-mx never finishes a DATA
  (its session summary shows data=0/1, "lost connection after DATA") and
  stores nothing, neither message.
- `bare-newline = normalize`: the client gets one `250`; ext-mx accepts
  exactly one message (data=1) for the first recipient only, and the
  smuggled commands are in it as text, the variant's dot as a line of
  its own.  The NUL variants are refused
  even so (554 5.6.0): NUL is never normalized.

In both modes the next reply after the end-of-data reply answers QUIT
(221): no reply to a smuggled command ever reaches the client.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import pytest

from conftest import delivered_to, flow, message, new_token, random_lport

pytestmark = pytest.mark.usefixtures("streamed_outbound")

# The end-of-data variants.  Sources:
#  [SEC]  SEC Consult, "SMTP Smuggling - Spoofing E-Mails Worldwide",
#         Timo Longin, 2023-12-18 (https://sec-consult.com/blog/detail/
#         smtp-smuggling-spoofing-e-mails-worldwide/)
#  [smug] smtpsmug, Hanno Böck (https://github.com/hannob/smtpsmug), its
#         test table; its "nullafter" repeats "nullbefore" by mistake, the
#         intended <CR><LF>.<NUL><CR><LF> is listed here.
VARIANTS = {
    # name        sequence            sources
    "lflf": b"\n.\n",            # [SEC] [smug]
    "lfcrlf": b"\n.\r\n",        # [SEC] [smug]
    "crcrlf": b"\r.\r\n",        # [SEC] [smug]
    "crlfcr": b"\r\n.\r",        # [SEC] [smug]
    "crlflf": b"\r\n.\n",        # [smug]
    "crcr": b"\r.\r",            # [smug]
    "crlf": b"\r.\n",            # [smug]
    "lfcr": b"\n.\r",            # [smug]
    "nullbefore": b"\r\n\x00.\r\n",  # [smug]
    "nullafter": b"\r\n.\x00\r\n",   # [smug] (intended)
}
NUL_VARIANTS = {"nullbefore", "nullafter"}
# Known daemon bug: in normalize mode a lone '.' that follows a CRLF and
# ends with a bare LF or CR is taken for a stuffed dot and removed (the
# line arrives empty).  Content only, no smuggling; reported.
PLACES = {"after-text": b"", "after-crlf": b"\r\n"}


def smuggling_data(token, seq, place, fl):
    """DATA contents: first message, bad end, smuggled transaction."""
    tag = token[-8:]
    smuggled_rcpt = f"smuggled+{tag}@{fl.rcpt.split('@')[1]}"
    first = message(token, body="").encode()
    smuggled = (f"MAIL FROM:<smuggler@evil.test>\r\n"
                f"RCPT TO:<{smuggled_rcpt}>\r\n"
                f"DATA\r\n"
                f"From: <smuggler@evil.test>\r\n"
                f"To: <{smuggled_rcpt}>\r\n"
                f"Subject: smuggled {token}\r\n"
                f"\r\n"
                f"smuggled body {token}\r\n").encode()
    return first + b"first message " + token.encode() + PLACES[place] + seq + smuggled + b".\r\n"


@pytest.fixture(scope="module", params=["reject", "normalize"])
def bare_newline(request, module_gateway_config):
    module_gateway_config.set("global", "bare-newline", request.param)
    return request.param


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_smuggled_message(testbed, bare_newline, variant, place):
    fl = flow("outbound", 4)
    token = new_token()
    mx_off = testbed.maillog_offset(fl.server)
    offset = testbed.log_offset()
    lport = random_lport()
    refused = bare_newline == "reject" or variant in NUL_VARIANTS

    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(smuggling_data(token, VARIANTS[variant], place, fl))
        end = c.reply()
        if refused:
            assert end.code == 554 and end.lines[-1].startswith("554 5.6.0 "), c.dialogue()
        else:
            assert end.code == 250, c.dialogue()
        # The next reply is QUIT's: nothing answered a smuggled command.
        assert c.cmd("QUIT").code == 221, c.dialogue()

    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    addr, port = testbed.upstream_endpoint(offset, sid)
    sess = testbed.mx_session(fl.server, mx_off, addr, port)
    if refused:
        assert " data=0/1 " in sess.disconnect, sess
        assert sess.lost and "after DATA" in sess.lost, sess
        testbed.wait_gateway_line(offset, sid, r"smtp upstream abort reason=\"message refused\"")
        testbed.assert_not_queued(fl.server, sess, token, grace=0.2)
    else:
        assert " data=1 " in sess.disconnect, sess
        msgs = testbed.wait_for_messages(fl.server, token, 1)
        assert len(msgs) == 1, msgs
        assert delivered_to(msgs[0]) == fl.rcpt
        assert f"Subject: smtpgw e2e {token}" in msgs[0]
        # the smuggled transaction is plain text in the one message
        body = msgs[0].split("\n\n", 1)[1]
        assert "MAIL FROM:<smuggler@evil.test>" in body, body
        assert f"smuggled body {token}" in body, body
        # the variant's lone dot is content too: a line of its own
        between = body[body.index("first message"):body.index("MAIL FROM:<smuggler")]
        assert "\n.\n" in between, f"the lone dot is gone: {between!r}"
