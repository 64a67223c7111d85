"""Fifty recipients with mixed answers: each RCPT gets its own reply.

Proves that smtpgw relays the destination's answer to every RCPT
unchanged and in command order, pipelined or not: the testbed's Postfix
rejects `reject550+N@...` with 550 5.1.1 and defers `defer450+N@...` with
450 4.2.0 and accepts the rest.  Fifty RCPTs written in one go (after MAIL,
before DATA) get fifty replies whose codes and texts match the pattern
position by position; the message is then accepted and delivered to the
thirty accepted recipients only, once each.  The gateway's message line
says rcpts=50 accepted=30.  Outbound over IPv4 and inbound over IPv6.
"""

import pytest

from conftest import dot_stuff, delivered_to, flow, message, new_token, random_lport

N = 50


def recipients(fl, token):
    """(address, expected code, expected text) for N recipients."""
    domain = fl.rcpt.split("@")[1]
    tag = token[-8:]
    out = []
    for i in range(N):
        kind = i % 5
        if kind == 3:
            out.append((f"reject550+{tag}-{i}@{domain}", 550,
                        "5.1.1", "Recipient rejected by the testbed (reject550)"))
        elif kind == 4:
            out.append((f"defer450+{tag}-{i}@{domain}", 450,
                        "4.2.0", "Recipient deferred by the testbed (defer450)"))
        else:
            out.append((f"user+{tag}-{i}@{domain}", 250, "2.1.5", "Ok"))
    return out


@pytest.mark.parametrize("fl", [flow("outbound", 4), flow("inbound", 6)],
                         ids=["outbound-v4", "inbound-v6"])
def test_mixed_replies_in_order(testbed, fl):
    token = new_token()
    rcpts = recipients(fl, token)
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        c.send(f"MAIL FROM:<{fl.sender}>\r\n"
               + "".join(f"RCPT TO:<{a}>\r\n" for a, *_ in rcpts))
        assert c.reply().code == 250, c.dialogue()
        got = c.replies(N)
        for (addr, code, enh, text), r in zip(rcpts, got):
            assert r.code == code, f"{addr}: {r}\n{c.dialogue()}"
            assert r.lines[-1].startswith(f"{code} {enh} "), f"{addr}: {r}"
            assert text in r.text, f"{addr}: {r}"
            if code != 250:
                assert f"<{addr}>" in r.text, f"{addr}: {r}"

        assert c.cmd("DATA").code == 354, c.dialogue()
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221

    accepted = sorted(a for a, code, *_ in rcpts if code == 250)
    msgs = testbed.wait_for_messages(fl.server, token, len(accepted))
    assert sorted(delivered_to(m) for m in msgs) == accepted

    sid = testbed.gateway_session(offset, fl.client_addr, lport)
    line = testbed.wait_gateway_line(offset, sid, r"smtp message result=")
    assert "result=accepted" in line and f"rcpts={N} accepted={len(accepted)}" in line, line


def test_one_at_a_time(testbed):
    """The same without pipelining: command, reply, command, reply."""
    fl = flow("outbound", 6)
    token = new_token()
    rcpts = recipients(fl, token)[:10]
    with testbed.connect(fl.client, fl.server_addr) as c:
        c.ehlo(fl.helo)
        assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250
        for addr, code, enh, _ in rcpts:
            r = c.cmd(f"RCPT TO:<{addr}>")
            assert r.code == code and r.lines[-1].startswith(f"{code} {enh} "), c.dialogue()
        assert c.cmd("DATA").code == 354
        c.send(dot_stuff(message(token)))
        assert c.reply().code == 250, c.dialogue()
    accepted = sorted(a for a, code, *_ in rcpts if code == 250)
    msgs = testbed.wait_for_messages(fl.server, token, len(accepted))
    assert sorted(delivered_to(m) for m in msgs) == accepted
