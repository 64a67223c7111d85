"""A quarantined message is released to its original recipient, byte-exact,
once.

A message rspamd refuses (GTUBE) is refused with 554 and kept in the
quarantine.  An admin finds it with `smtpgwctl quarantine list`, looks at
it with `show`, and releases it:
- to a scripted MX (the original destination): a new SMTP session from
  the gateway itself delivers MAIL FROM the original sender, RCPT TO the
  original recipient, and the message octet for octet as the client sent
  it (dot-stuffing included); the list then says "released";
- a second release is refused (exit 1), and nothing more reaches the MX;
- to the real Postfix (int-mx), whose first leg was encrypted: the
  release uses STARTTLS too, judged with the action's TLS profile, and
  the message lands in the Maildir;
- the audit log (quarantine-dir/audit.log) says who released what, and
  who tried again; `quarantine delete` removes a record.
"""

import pytest

from conftest import ADDR, flow, scripted_smtp
from lib.scanners import (GTUBE, dot_stuff_bytes, msg_text, quarantine_of, quarantine_records,
                          scanners_up, send_through)
from lib.topology import new_token

FL = flow("inbound", 4)
MX = ADDR["int-script"][4]


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


def ctl(testbed, *args):
    return testbed.exec("gw", "smtpgwctl", "quarantine", *args, timeout=120)


def refused_message(testbed, server):
    token = new_token()
    data = msg_text(token, f"Quarterly numbers.\r\n.a dot-leading line\r\n{GTUBE['reject']}\r\n")
    reply, sid, _ = send_through(testbed, FL, data, server=server)
    assert reply.code == 554, str(reply)
    rec = quarantine_of(testbed, sid)
    assert rec is not None, f"session {sid} left nothing in the quarantine"
    return token, data, rec


def test_release_byte_exact_once(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(), side="int")
    token, data, rec = refused_message(testbed, MX)
    qid = rec["id"]
    # the refused session never reached DATA at the MX
    assert all(not s.messages for s in srv.sessions), "the refused message reached the MX"
    before = len(srv.sessions)

    r = ctl(testbed, "list")
    assert r.returncode == 0 and qid in r.stdout and "held" in r.stdout, r.stdout + r.stderr
    r = ctl(testbed, "show", qid)
    assert r.returncode == 0, r.stderr
    assert f"<{FL.sender}>" in r.stdout and f"<{FL.rcpt}>" in r.stdout, r.stdout
    assert "verdict:       deny" in r.stdout and token in r.stdout, r.stdout

    r = ctl(testbed, "release", qid)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"released {qid} to {MX}:25 (1 of 1 recipients)" in r.stdout, r.stdout
    sess = srv.session(before)
    assert f"MAIL FROM:<{FL.sender}>" in sess.commands, sess.commands
    assert f"RCPT TO:<{FL.rcpt}>" in sess.commands, sess.commands
    assert sess.messages == [dot_stuff_bytes(data)[:-3]], sess.messages
    r = ctl(testbed, "list")
    assert "released" in [l for l in r.stdout.splitlines() if qid in l][0], r.stdout

    # once
    r = ctl(testbed, "release", qid)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "released once" in r.stderr, r.stderr
    assert len(srv.sessions) == before + 1
    audit = (testbed.path("gw-quarantine") / "audit.log").read_text()
    assert f"release id={qid} by=" in audit and "result=delivered" in audit, audit
    assert "result=refused reason=already-released" in audit, audit

    r = ctl(testbed, "delete", qid)
    assert r.returncode == 0, r.stderr
    assert qid not in quarantine_records(testbed)
    assert f"delete id={qid}" in (testbed.path("gw-quarantine") / "audit.log").read_text()


def test_release_over_tls_to_postfix(testbed):
    token, data, rec = refused_message(testbed, FL.server_addr)
    assert rec["server-tls"] == "yes", rec  # the testbed MX offers STARTTLS: the first leg had it
    r = ctl(testbed, "release", rec["id"])
    assert r.returncode == 0, r.stdout + r.stderr
    got = testbed.wait_for_message(FL.server, token)
    body = got.split("\n\n", 1)[1]
    assert body == data.split(b"\r\n\r\n", 1)[1].decode().replace("\r\n", "\n")
    audit = (testbed.path("gw-quarantine") / "audit.log").read_text()
    line = [l for l in audit.splitlines() if f"release id={rec['id']}" in l][-1]
    assert "result=delivered" in line and "tls=yes" in line, line


def test_bad_ids(testbed):
    r = ctl(testbed, "release", "../../etc/passwd")
    assert r.returncode == 2 and "is not a quarantine ID" in r.stderr, r.stderr
    r = ctl(testbed, "show", "1764936000-4f2a91c0e1d3-ffff")
    assert r.returncode == 1 and "no quarantined message" in r.stderr, r.stderr
    r = ctl(testbed, "release")
    assert r.returncode == 2, r.stderr
