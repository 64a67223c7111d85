"""A real Postfix, as the sending MTA, delivers through the gateway both ways.

Proves that smtpgw carries mail between two real MTAs: a message handed
to int-mx's sendmail for ext.test is relayed by int-mx's Postfix over
SMTP to ext-mx (198.51.100.25) through the gateway, and a message handed
to ext-mx's sendmail for int.test goes the other way to int-mx.  Each
arrives with its body intact (dot lines, 100 KiB); the sending Postfix
logs status=sent with the receiver's queue id; the gateway logs the
session (the sending MX as client, the receiving MX as server, the right
zone and direction) and an accepted message with the sender's address.
The sending Postfix's own dialogue (debug_peer_list in the testbed)
shows it pipelined MAIL, RCPT and DATA through the gateway in one group:
all three commands went out before the first reply came back.  Postfix's
SMTP client has no CHUNKING support, so it uses DATA even though the
gateway offers CHUNKING (BDAT is covered by test_bdat.py); the test
notes what it used and requires DATA or BDAT, nothing else.
"""

import re

import pytest

from conftest import ADDR, new_token, split_hostport

CASES = {
    "int-to-ext": ("int-mx", "ext-mx", "alice", "int.test", "user", "ext.test",
                   "outbound", "trusted"),
    "ext-to-int": ("ext-mx", "int-mx", "bob", "ext.test", "user", "int.test",
                   "inbound", "external"),
}


def body_text(token):
    line = "relayed by a real MTA through smtpgw, line {}\n"
    return ("first line\n.a line with a leading dot\n..and two\n"
            + "".join(line.format(i) for i in range(2000)) + f"end {token}\n")


def smtp_dialogue(maillog, sender):
    """The sending smtp process's logged dialogue for the delivery from
    sender: its '> ' (sent) and '< ' (received) lines, in order."""
    pid = None
    for line in maillog.splitlines():
        m = re.search(r"postfix/smtp\[(\d+)\]: > \S+: MAIL FROM:<" + re.escape(sender) + ">",
                      line)
        if m:
            pid = m.group(1)
            break
    assert pid, f"no logged MAIL FROM:<{sender}> in the sending Postfix's maillog"
    out = []
    for line in maillog.splitlines():
        m = re.search(rf"postfix/smtp\[{pid}\]: ([<>]) \S+: (.*)$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_postfix_relays_through_gateway(testbed, case):
    src, dst, user, sdom, ruser, rdom, direction, zone = CASES[case]
    token = new_token()
    sender = f"{user}+{token[-8:]}@{sdom}"
    rcpt = f"{ruser}+{token[-8:]}@{rdom}"
    body = body_text(token)
    msg = (f"From: <{sender}>\nTo: <{rcpt}>\nSubject: smtpgw e2e {token}\n"
           f"Message-ID: <{token}@{sdom}>\n\n{body}")
    offset = testbed.log_offset()
    src_off = testbed.maillog_offset(src)

    testbed.send_mta(src, msg, sender, rcpt)
    got = testbed.wait_for_message(dst, token)
    assert body in got
    assert re.search(rf"^Received: from mx\.{sdom} \(unknown \[{re.escape(ADDR[src][4])}\]\)",
                     got, re.M), got.split("\n\n", 1)[0]

    # the sending Postfix: sent to the other MX, which queued it
    log = testbed.maillog(src)[src_off:]
    assert re.search(rf"to=<{re.escape(rcpt)}>, relay=\S*\[{re.escape(ADDR[dst][4])}\]:25,"
                     r".* status=sent \(250 2\.0\.0 Ok: queued as ", log), log[-2000:]

    # it pipelined: MAIL, RCPT and DATA before the first reply
    dia = smtp_dialogue(log, sender)
    i = next(k for k, (d, t) in enumerate(dia) if d == ">" and t.startswith("MAIL FROM:"))
    group = [t.split(" ")[0] for d, t in dia[i:i + 3]]
    assert [d for d, _ in dia[i:i + 3]] == [">"] * 3 and \
        group[0] == "MAIL" and group[1] == "RCPT" and group[2] in ("DATA", "BDAT"), dia
    assert any(t == "PIPELINING" or t.endswith("-PIPELINING") or t.endswith(" PIPELINING")
               for d, t in dia if d == "<"), "the gateway did not offer PIPELINING"
    print(f"{case}: sending Postfix used {group[2]}")

    # the gateway saw the session and the message
    line, f = testbed.wait_for_session(offset, ADDR[src][4])
    assert split_hostport(f["server"]) == (ADDR[dst][4], 25), line
    assert f["direction"] == direction and f["zone"] == zone, line
    sid = re.search(r"\s([0-9a-f]{12})\s+session start", line).group(1)
    msgline = testbed.wait_gateway_line(offset, sid, r"smtp message result=")
    assert "result=accepted" in msgline and f"from=<{sender}>" in msgline, msgline
