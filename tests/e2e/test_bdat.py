"""BDAT (CHUNKING) through the gateway, to a destination with and without it.

Proves that a client may send a message in BDAT chunks through smtpgw
(which always offers CHUNKING) and that the destination stores exactly
the bytes sent, whether smtpgw forwards the chunks as BDAT (ext-mx offers
CHUNKING) or converts them to DATA (`testbed mx-chunking ext-mx off`):
the Maildir copy, without the trace headers Postfix puts on top, equals
the message as sent (CRLF read as LF).  The messages hold lines that
begin with '.', a line that is only '.', and '..'; the chunks are split
in the middle of a line, between CR and LF, and right before a line's
leading dot; a message ends with `BDAT n LAST` or with `BDAT 0 LAST`;
all chunks may come in one write (BDAT pipelines); a 300 KiB message in
three chunks exceeds the converter's buffer.  Every chunk gets a 250.
ext-mx's session summary shows which way it went (bdat=N or data=1).
BDAT content that breaks the DATA rules (bare LF, NUL, a line over 998
octets) is refused the same way as in DATA, whether it would have been
forwarded as BDAT or converted.

The outbound action does not scan here (the streamed_outbound fixture:
antivirus and spam off): what is tested is the streamed path, which a
scanning action replaces with a held message.
"""

import pytest

from conftest import flow, message, new_token, random_lport, strip_trace

pytestmark = pytest.mark.usefixtures("streamed_outbound")

DOTTY = ("first line\r\n"
         ".leading dot\r\n"
         "..two leading dots\r\n"
         ".\r\n"
         ". dot space\r\n"
         "after a lone dot\r\n"
         "...\r\n"
         "last line\r\n")


@pytest.fixture(scope="module", params=["chunking", "no-chunking"])
def upstream_chunking(request, testbed):
    """ext-mx offers CHUNKING (forwarded as BDAT) or not (converted)."""
    on = request.param == "chunking"
    if not on:
        testbed.mx_chunking("ext-mx", False)
    try:
        yield on
    finally:
        if not on:
            testbed.mx_chunking("ext-mx", True)


def split_at(data, cuts):
    """data cut at the given offsets (sorted, distinct)."""
    out, prev = [], 0
    for c in cuts:
        out.append(data[prev:c])
        prev = c
    out.append(data[prev:])
    return [c for c in out if c]


def awkward_chunks(data):
    """Cuts mid-line, between CR and LF, and before a leading dot."""
    mid_line = data.index(b"first line") + 5
    cr_lf = data.index(b"\r\n..two") + 1
    before_dot = data.index(b"\r\n.\r\n") + 2
    return split_at(data, sorted({mid_line, cr_lf, before_dot}))


def send_bdat(c, chunks, zero_last=False, pipelined=False):
    """Send chunks as BDAT; returns the replies (one per BDAT command)."""
    cmds = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1 and not zero_last
        cmds.append(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
    if zero_last:
        cmds.append(b"BDAT 0 LAST\r\n")
    if pipelined:
        c.send(b"".join(cmds))
        return c.replies(len(cmds), timeout=30)
    replies = []
    for cmd in cmds:
        c.send(cmd)
        replies.append(c.reply(timeout=30))
    return replies


CASES = {
    "one-chunk-last": dict(split="none"),
    "awkward-chunks-last": dict(split="awkward"),
    "awkward-chunks-bdat0": dict(split="awkward", zero_last=True),
    "pipelined-v6": dict(split="awkward", pipelined=True, family=6),
    "300k-three-chunks": dict(split="thirds", big=True),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bdat_delivers_byte_identical(testbed, upstream_chunking, case):
    opts = CASES[case]
    fl = flow("outbound", opts.get("family", 4))
    token = new_token()
    body = DOTTY
    if opts.get("big"):
        line = ".0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
        body = DOTTY + line * (300 * 1024 // len(line))
    msg = message(token, body=body).encode()
    if opts["split"] == "none":
        chunks = [msg]
    elif opts["split"] == "awkward":
        chunks = awkward_chunks(msg)
    else:
        third = len(msg) // 3
        chunks = split_at(msg, [third + 7, 2 * third + 13])

    mx_off = testbed.maillog_offset("ext-mx")
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        ehlo = c.ehlo(fl.helo)
        assert any(l[4:] == "CHUNKING" for l in ehlo.lines), ehlo
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250
        replies = send_bdat(c, chunks, opts.get("zero_last", False),
                            opts.get("pipelined", False))
        assert [r.code for r in replies] == [250] * len(replies), c.dialogue()
        assert c.cmd("QUIT").code == 221

    got = testbed.wait_for_message(fl.server, token)
    sent = msg.decode().replace("\r\n", "\n")
    assert strip_trace(got) == sent, "delivered message differs from the one sent"

    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    ehlo_line = testbed.wait_gateway_line(offset, sid, r"smtp ehlo upstream=")
    up = ehlo_line.split("upstream=")[1].split()[0].split(",")
    assert ("CHUNKING" in up) == upstream_chunking, ehlo_line

    addr, port = testbed.upstream_endpoint(offset, sid)
    sess = testbed.mx_session("ext-mx", mx_off, addr, port)
    if upstream_chunking:
        assert " bdat=" in sess.disconnect and " data=" not in sess.disconnect, sess
    else:
        assert " data=1 " in sess.disconnect and " bdat=" not in sess.disconnect, sess


BAD_CONTENT = {
    "bare-lf": (b"a line with a bare LF\nin it\r\n", 554, "5.6.0"),
    "nul": (b"a line with a \x00 NUL\r\n", 554, "5.6.0"),
    "long-line": (b"x" * 1200 + b"\r\n", 500, "5.5.2"),
}


@pytest.mark.parametrize("bad", list(BAD_CONTENT))
def test_bdat_content_checked_like_data(testbed, upstream_chunking, bad):
    """A BDAT message breaking the DATA rules (bare LF, NUL, a line over
    998 octets) is refused like a DATA one and not delivered.

    Both when the chunks are forwarded as BDAT (the destination offers
    CHUNKING: the bytes are checked as they pass, and the held-back
    "BDAT 0 LAST" is never sent) and when they are converted to DATA."""
    content, code, enh = BAD_CONTENT[bad]
    fl = flow("outbound", 4)
    token = new_token()
    msg = message(token).encode() + content
    with testbed.connect(fl.client, fl.server_addr) as c:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        r = c.reply()
    refused = r.code == code and r.lines[-1].startswith(f"{code} {enh} ")
    assert refused, c.dialogue()
    assert testbed.messages_with(fl.server, token) == []
