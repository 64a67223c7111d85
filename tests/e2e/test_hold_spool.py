"""A held message larger than the memory bound goes through the spool, byte-exact.

With hold = always and hold-memory = 4096 (the smallest allowed):
- a 2 MiB message with dot-leading lines, held until its verdict, spills
  into the spool directory: the gateway logs "smtp hold spooled"; while
  it waits for the destination's 354 (a scripted MX that takes its time)
  the worker holds exactly one open file in spool-dir -- unlinked: the
  directory lists nothing -- and the destination has received nothing of
  the message (a NOOP took DATA's place);
- then the destination receives it byte for byte as the client sent it
  (dot-stuffing included), the client gets the destination's 250, the
  gateway logs "smtp hold released ... spooled=yes", and afterwards no
  worker has a file open in spool-dir and the directory is empty;
- through the real Postfix (ext-mx), the delivered copy reads exactly as
  written.
"""

import os
import threading
from pathlib import Path

from conftest import ADDR, dot_stuff, flow, message, new_token, random_lport

FL = flow("outbound", 4)


def big_body(token):
    lines = []
    i = 0
    size = 0
    while size < 2 * 1024 * 1024:
        line = (f".{i:07d} dot-leading line of {token}" if i % 5 == 0 else
                f"{i:07d} " + "abcdefghijklmnopqrstuvwxyz0123456789" * (i % 3 + 1))
        lines.append(line)
        size += len(line) + 2
        i += 1
    return "\r\n".join(lines) + "\r\n"


def holding_mx(release, data_asked):
    """A scripted MX that answers DATA only once release is set."""

    def handler(sess):
        sess.send("220 script.test ESMTP scripted")
        while True:
            line = sess.readline(timeout=60)
            if line is None:
                return
            sess.commands.append(line)
            verb = line[:4].upper()
            if verb == "EHLO":
                sess.send("250-script.test\r\n250-PIPELINING\r\n250 8BITMIME")
            elif verb == "DATA":
                data_asked.set()
                release.wait(30)
                sess.send("354 go ahead")
                data = sess.read_data(timeout=60)
                if data is None:
                    return
                sess.messages.append(data)
                sess.send("250 2.0.0 Ok: queued as HELD")
            elif verb == "QUIT":
                sess.send("221 2.0.0 Bye")
                return
            else:
                sess.send("250 2.0.0 Ok")

    return handler


def worker_pids(testbed):
    master = int(Path(testbed.path("gw-pid")).read_text().split()[0])
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(d.name))
    return pids


def spool_files_open(testbed, spool):
    """Descriptors of the gateway's children that are files in spool."""
    found = []
    for pid in worker_pids(testbed):
        fddir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fddir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(spool) + "/"):
                found.append((pid, target))
    return found


def test_spooled_byte_exact(testbed, gateway_config, scripted_server):
    gateway_config.update({("global", "hold"): "always", ("global", "hold-memory"): "4096"})
    spool = Path(testbed.path("gw-spool"))
    release, data_asked = threading.Event(), threading.Event()
    srv = scripted_server(holding_mx(release, data_asked))
    token = new_token()
    msg = message(token, body=big_body(token))
    offset = testbed.log_offset()
    lport = random_lport()
    try:
        with testbed.connect(FL.client, ADDR["ext-script"][4], lport=lport) as c:
            c.ehlo(FL.helo)
            assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
            assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
            assert c.cmd("DATA").code == 354, c.dialogue()
            c.send(dot_stuff(msg))
            assert data_asked.wait(30), "the gateway never sent DATA"
            sid = testbed.gateway_session(offset, FL.client_addr, lport)
            testbed.wait_gateway_line(offset, sid, r"smtp hold spooled memory=4096 ")
            # held: one unlinked file open, nothing named, nothing sent yet
            assert len(spool_files_open(testbed, spool)) == 1, spool_files_open(testbed, spool)
            assert list(spool.iterdir()) == []
            sess = srv.session(finished=False)
            assert sess.messages == [] and "NOOP" in sess.commands, sess.commands
            release.set()
            r = c.reply(timeout=60)
            assert r.code == 250 and "queued as HELD" in r.text, c.dialogue()
            assert c.cmd("QUIT").code == 221
    finally:
        release.set()
    sess = srv.session()
    assert sess.messages == [dot_stuff(msg)[:-3].encode("latin-1")]
    line = testbed.wait_gateway_line(offset, sid, r"smtp hold released ")
    assert "spooled=yes" in line, line
    testbed.wait_gateway_line(offset, sid, r"session end ")
    assert spool_files_open(testbed, spool) == []
    assert list(spool.iterdir()) == []


def test_spooled_through_postfix(testbed, gateway_config):
    gateway_config.update({("global", "hold"): "always", ("global", "hold-memory"): "4096"})
    token = new_token()
    msg = message(token, body=big_body(token))
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(FL.client, FL.server_addr, lport=lport) as c:
        c.ehlo(FL.helo)
        assert c.cmd(f"MAIL FROM:<{FL.sender}>").code == 250, c.dialogue()
        assert c.cmd(f"RCPT TO:<{FL.rcpt}>").code == 250, c.dialogue()
        assert c.cmd("DATA").code == 354, c.dialogue()
        c.send(dot_stuff(msg))
        assert c.reply(timeout=60).code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221
    sid = testbed.gateway_session(offset, FL.client_addr, lport)
    assert "spooled=yes" in testbed.wait_gateway_line(offset, sid, r"smtp hold released ")
    delivered = testbed.wait_for_message(FL.server, token)
    body = delivered.split("\n\n", 1)[1]
    assert body == msg.split("\r\n\r\n", 1)[1].replace("\r\n", "\n")
    assert list(Path(testbed.path("gw-spool")).iterdir()) == []
