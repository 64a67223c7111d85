"""av server / spam server (the scanners in [global]) and quarantine
list|show|raw|delete (release needs a destination: tests/e2e)."""

import re

from conftest import needs_daemon

pytestmark = needs_daemon

RECORD = (
    "smtpgw-quarantine 1\n"
    "id={id}\ntime=1764936000\nsession=4f2a91c0e1d3\naction=SMTP-Incoming.Standard\n"
    "direction=inbound\nclient=198.51.100.10:40123\nserver=192.0.2.25:25\n"
    "server-name=mx.int.test\nserver-tls=yes\nclient-tls=none\nhelo=client.ext.test\n"
    "mail-from=bob@ext.test\nrcpt=user@int.test\nverdict=deny\n"
    "reason=virus Eicar found%1B[31m\nvirus=Eicar\nspam-score=\n"
    "reply=554 5.7.1 no\nsize={size}\n\n")
MESSAGE = b"Subject: hello\r\nFrom: <bob@ext.test>\r\n\r\nbody line\r\n"
QID = "1764936000-4f2a91c0e1d3-0001"


def test_servers(box):
    r = box.ok("av", "server", "list")
    assert "no clamd server is configured" in r.out
    box.ok("av", "server", "add", "tcp:192.0.2.60:3310")
    box.ok("av", "server", "add", "unix:/run/clamav/clamd.ctl")
    assert box.ok("av", "server", "list").out == \
        "tcp:192.0.2.60:3310\nunix:/run/clamav/clamd.ctl\n"
    assert "clamd-servers = tcp:192.0.2.60:3310 unix:/run/clamav/clamd.ctl" in \
        box.staged.read_text()
    r = box.fails("av", "server", "add", "tcp:192.0.2.60:3310")
    assert "already configured" in r.err
    box.ok("av", "server", "del", "tcp:192.0.2.60:3310")
    assert box.ok("av", "server", "list").out == "unix:/run/clamav/clamd.ctl\n"
    r = box.fails("av", "server", "del", "tcp:192.0.2.61:3310")
    assert "is not configured" in r.err
    box.ok("av", "server", "del", "unix:/run/clamav/clamd.ctl")
    assert "clamd-servers" not in box.staged.read_text()
    box.ok("spam", "server", "add", "tcp:[2001:db8::60]:11333")
    assert "rspamd-servers = tcp:[2001:db8::60]:11333" in box.staged.read_text()


def test_server_addresses_checked(box):
    r = box.fails("av", "server", "add", "clamd.example:3310", rc=2)
    assert "is not unix:/PATH, tcp:ADDRESS:PORT" in r.err
    r = box.fails("av", "server", "add", "tcp:192.0.2.60:3310;reboot", rc=2)
    # the daemon's parser has the last word: names are never resolved
    r = box.fails("av", "server", "add", "tcp:clamd.example:3310")
    assert "refused" in r.err
    r = box.fails("av", "server", rc=2)
    assert box.ok("av", "--help").out.startswith("usage: smtpgwctl av server VERB")


def quarantine_box(box):
    qdir = box.root / "quarantine"
    qdir.mkdir()
    text = box.conf.read_text()
    box.conf.write_text(text.replace("[global]\n", f"[global]\nquarantine-dir = {qdir}\n", 1))
    data = RECORD.format(id=QID, size=len(MESSAGE)).encode() + MESSAGE
    (qdir / f"{QID}.msg").write_bytes(data)
    return qdir


def test_quarantine(box):
    r = box.ok("quarantine", "list")
    assert "the quarantine is empty" in r.out or "quarantine" in r.out
    qdir = quarantine_box(box)
    r = box.ok("quarantine", "list")
    assert QID in r.out and "inbound" in r.out and "deny" in r.out and "held" in r.out, r.out
    assert "<bob@ext.test>" in r.out and "1 kept" in r.out, r.out
    r = box.ok("quarantine", "show", QID)
    assert "sender:        <bob@ext.test>" in r.out and "Subject: hello" in r.out, r.out
    assert "body line" not in r.out
    # control octets of a record never reach the terminal
    assert "\x1b" not in r.out and "Eicar found?[31m" in r.out, r.out
    r = box.run("quarantine", "raw", QID)
    assert r.rc == 0 and r.out == MESSAGE.decode().replace("\r\n", "\n")  # text mode reads CRLF as LF
    r = box.ok("quarantine", "delete", QID)
    assert f"deleted {QID}" in r.out
    assert not (qdir / f"{QID}.msg").exists()
    audit = (qdir / "audit.log").read_text()
    assert re.search(rf"delete id={QID} by=\S+ from=<bob@ext.test>", audit), audit
    r = box.fails("quarantine", "show", QID)
    assert "no quarantined message" in r.err


def test_quarantine_usage(box):
    r = box.fails("quarantine", "release", "../etc/passwd", rc=2)
    assert "is not a quarantine ID" in r.err
    r = box.fails("quarantine", "show", rc=2)
    assert "expected one ID" in r.err
    r = box.fails("quarantine", "list", "x", rc=2)
    r = box.fails("quarantine", "purge", rc=2)
    assert "unknown verb" in r.err
    assert "release ID" in box.ok("quarantine", "--help").out
    assert box.ok("quarantine", "release", "--help").out.startswith(
        "usage: smtpgwctl quarantine release ID")
