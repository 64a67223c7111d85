"""PIPELINING through the gateway: one write, every reply, in order, once.

Proves that a client may pipeline (RFC 2920) through smtpgw: the EHLO
reply shows PIPELINING; MAIL, three RCPTs and DATA written in a single
send() get exactly five replies in command order (250 250 250 250 354);
the message and QUIT written together after it get 250 and 221; and the
destination receives the message exactly once per recipient.  Both
directions, both families, with a raw client; and once more with
`swaks --pipeline`.  The gateway's message line counts the recipients.
A second transaction written right behind the first one's end of data
(MAIL, RCPT, DATA after the dot) is answered in order and delivered too.
"""

import pytest

from conftest import FLOW_IDS, FLOWS, dot_stuff, delivered_to, message, new_token, random_lport


def rcpts_for(fl, token):
    user, domain = fl.rcpt.split("@")
    return [f"{user}+{token[-8:]}-{i}@{domain}" for i in range(3)]


@pytest.mark.parametrize("fl", FLOWS, ids=FLOW_IDS)
def test_raw_pipelined_group(testbed, fl):
    token = new_token()
    rcpts = rcpts_for(fl, token)
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        ehlo = c.ehlo(fl.helo)
        assert "PIPELINING" in ehlo.lines[1:] or any(
            l[4:] == "PIPELINING" for l in ehlo.lines), ehlo

        c.send(f"MAIL FROM:<{fl.sender}>\r\n"
               + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts)
               + "DATA\r\n")
        codes = [r.code for r in c.replies(5)]
        assert codes == [250, 250, 250, 250, 354], c.dialogue()

        c.send(dot_stuff(message(token)) + "QUIT\r\n")
        end = c.replies(2)
        assert [r.code for r in end] == [250, 221], c.dialogue()
        _, how, _ = c.read_to_end(5)
        assert how == "eof", c.dialogue()

    msgs = testbed.wait_for_messages(fl.server, token, len(rcpts))
    assert sorted(delivered_to(m) for m in msgs) == sorted(rcpts)

    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    line = testbed.wait_gateway_line(offset, sid, r"smtp message result=")
    assert "result=accepted" in line and "rcpts=3 accepted=3" in line, line


def test_swaks_pipeline(testbed):
    fl = FLOWS[0]
    token = new_token()
    rcpts = rcpts_for(fl, token)
    r = testbed.swaks(fl, token, extra=["--pipeline", "--to", ",".join(rcpts)])
    assert r.returncode == 0, r.stdout + r.stderr
    # swaks wrote the group at once: every command shows before any reply
    lines = [l.strip() for l in r.stdout.splitlines()]
    group = lines.index(f"-> MAIL FROM:<{fl.sender}>")
    assert lines[group:group + 5] == (
        [f"-> MAIL FROM:<{fl.sender}>"] + [f"-> RCPT TO:<{x}>" for x in rcpts]
        + ["-> DATA"]), r.stdout
    assert [l.split()[:2] for l in lines[group + 5:group + 10]] == \
        [["<-", c] for c in ("250", "250", "250", "250", "354")], r.stdout
    msgs = testbed.wait_for_messages(fl.server, token, len(rcpts))
    assert sorted(delivered_to(m) for m in msgs) == sorted(rcpts)


def test_next_transaction_pipelined_after_the_dot(testbed):
    """The end of data may be followed at once by the next transaction
    (RFC 2920: a group may begin with the message content)."""
    fl = FLOWS[0]
    t1, t2 = new_token(), new_token()
    with testbed.connect(fl.client, fl.server_addr) as c:
        c.ehlo(fl.helo)
        c.send(f"MAIL FROM:<{fl.sender}>\r\nRCPT TO:<{fl.rcpt}>\r\nDATA\r\n")
        assert [r.code for r in c.replies(3)] == [250, 250, 354], c.dialogue()
        c.send(dot_stuff(message(t1))
               + f"MAIL FROM:<{fl.sender}>\r\nRCPT TO:<{fl.rcpt}>\r\nDATA\r\n")
        assert [r.code for r in c.replies(4)] == [250, 250, 250, 354], c.dialogue()
        c.send(dot_stuff(message(t2)) + "QUIT\r\n")
        assert [r.code for r in c.replies(2)] == [250, 221], c.dialogue()
    assert len(testbed.wait_for_messages(fl.server, t1, 1)) == 1
    assert len(testbed.wait_for_messages(fl.server, t2, 1)) == 1
