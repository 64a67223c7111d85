"""A session in the middle of a DATA transfer when `smtpgwctl apply` runs
completes with the configuration it started with.

int-client opens an SMTP session to ext-mx through the gateway (policy
SMTP-Proxy-Out, whose action allows 50 MB messages), sends MAIL, RCPT,
DATA and the first half of a 16 KB message.  Then, while that transfer
is open, a clone of that action, Out-Tiny, with max-message-size 2048,
is given to SMTP-Proxy-Out and applied: the daemon reloads (generation
moves), the old worker is draining.  A new session already
runs under the new configuration: its EHLO advertises SIZE 2048 and
`MAIL FROM:<...> SIZE=16000` is refused with 552.  The old session then
sends the rest of its message: it is accepted with the destination's
250, delivered whole, and when the session ends its worker - one of the
old generation - exits ("master drained worker pid=...").
"""

import re
import time

from conftest import dot_stuff, flow, message, new_token, random_lport
from gwctl import gwctl  # noqa: F401 (fixture)


def test_session_in_data_finishes_under_its_configuration(testbed, gwctl):
    fl = flow("outbound", 4)
    token = new_token()
    lines = [f"{token} line {i:04d} " + "x" * 60 for i in range(200)]
    msg = message(token, body="\r\n".join(lines) + "\r\n")
    data = dot_stuff(msg).encode("latin-1")
    assert len(data) > 16000
    half = len(data) // 2
    off = testbed.log_offset()
    lport = random_lport()

    with testbed.connect(fl.client, fl.server_addr, 25, lport=lport) as old:
        ehlo = old.ehlo()
        assert "SIZE 2048" not in ehlo.text
        assert old.cmd(f"MAIL FROM:<{fl.sender}>").code == 250, old.dialogue()
        assert old.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250, old.dialogue()
        assert old.cmd("DATA").code == 354, old.dialogue()
        old.send(data[:half])
        line, f = testbed.wait_for_session(off, fl.client_addr, lport)
        assert f["policy"] == "SMTP-Proxy-Out"
        worker = re.search(r"smtpgw\[(\d+)\] worker:", line).group(1)

        gwctl.ok("action", "clone", gwctl.policy_action("SMTP-Proxy-Out"), "Out-Tiny")
        gwctl.ok("action", "set", "Out-Tiny", "max-message-size", "2048")
        gwctl.ok("policy", "set", "SMTP-Proxy-Out", "action", "Out-Tiny")
        gwctl.apply()
        st = gwctl.status()
        assert int(st["workers-draining"]) >= 1, st
        assert worker not in st["worker-pids"].split(), st

        # New sessions get the new configuration at once.
        with testbed.connect(fl.client, fl.server_addr, 25) as new:
            assert "SIZE 2048" in new.ehlo().text, new.dialogue()
            r = new.cmd(f"MAIL FROM:<{fl.sender}> SIZE={len(data)}")
            assert r.code == 552, new.dialogue()
            new.cmd("QUIT")

        # The old one finishes under the configuration it started with.
        old.send(data[half:])
        r = old.reply(timeout=30)
        assert r.code == 250, old.dialogue()
        assert old.cmd("QUIT").code == 221, old.dialogue()

    delivered = testbed.wait_for_message(fl.server, token)
    body = delivered.split("\n\n", 1)[1]
    assert [l for l in body.splitlines() if l.startswith(token)] == lines

    # Its worker, of the old generation, exits once the session is over.
    deadline = time.monotonic() + 10
    while f"master drained worker pid={worker}" not in testbed.log_since(off):
        assert time.monotonic() < deadline, testbed.log_since(off)[-3000:]
        time.sleep(0.1)
