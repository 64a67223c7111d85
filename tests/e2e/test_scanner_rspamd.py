"""rspamd through the daemon's own client (daemon/rspamd.c, driven by
tests/scanners/scanclient in the gateway's namespace) against the
testbed's real rspamd (its configuration: tests/testbed/README.md):

- each action comes back as rspamd decided it: GTUBE is "reject" with
  rspamd's SMTP message, its test variants "add header" and "rewrite
  subject" (with the new subject), an ordinary message "no action" with
  its symbols and a low score;
- the envelope reaches rspamd in its headers: client address, sender,
  every recipient, queue id and the authenticated user show in rspamd's
  own log line (HELO and the TLS headers are in the same request; the
  unit test checks the request head byte by byte);
- the body goes chunked (streamed) or with Content-Length (a held copy),
  over TCP (IPv4, IPv6) and the Unix socket;
- rspamd stopped: "unavailable" at once; rspamd stalled: an error after
  the timeout; running again: checks work.
"""

import re
import time

import pytest

from lib.scanners import (GTUBE, ScanDir, by_file, msg_ordinary, msg_text, msg_with_attachment,
                          rspamd_servers, run_scanclient, scanners_up)
from lib.topology import new_token

ENVELOPE = ["ip=198.51.100.10", "helo=client.ext.test", "from=alice@ext.test",
            "rcpt=bob@int.test"]


@pytest.fixture(scope="module")
def scan(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("scanclient runs in the gw namespace (netns gateway only)")
    scanners_up(testbed)
    d = ScanDir()
    yield d
    d.cleanup()
    scanners_up(testbed)


def test_actions(testbed, scan):
    token = new_token()
    files = {a: scan.write(f"{a.replace(' ', '-')}.eml",
                           msg_text(token, f"Test.\r\n{p}", subject="offer"))
             for a, p in GTUBE.items()}
    ordinary = scan.write("ordinary.eml", msg_ordinary(token))
    results, status, r = run_scanclient(
        testbed, ["-S", "rspamd", rspamd_servers(testbed), *ENVELOPE, *files.values(), ordinary])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    for action, path in files.items():
        assert res[path]["status"] == "checked", res[path]
        assert res[path]["action"] == action, res[path]
    rej = res[files["reject"]]
    assert float(rej["score"]) >= float(rej["required"]) > 0, rej
    assert rej["smtp_message"] == "Gtube pattern", rej
    assert "GTUBE" in rej["symbols"], rej
    rw = res[files["rewrite subject"]]
    assert rw["subject"] == f"*** SPAM *** offer {token}", rw
    o = res[ordinary]
    assert o["status"] == "checked" and o["action"] == "no action", o
    assert float(o["score"]) < 4, o
    assert int(o["nsymbols"]) > 0 and "MIME_GOOD" in o["symbols"], o
    st = status[1]
    assert st["rspamd.1.reject"] == "1" and st["rspamd.1.no-action"] == "2", st
    assert st["rspamd.1.add-header"] == "1" and st["rspamd.1.rewrite-subject"] == "1", st


def test_envelope_reaches_rspamd(testbed, scan):
    token = new_token()
    path = scan.write("envelope.eml", msg_ordinary(token))
    qid = token[-12:]
    results, _, r = run_scanclient(testbed, [
        "rspamd", rspamd_servers(testbed), *ENVELOPE, "rcpt=carol+x@int.test",
        f"qid={qid}", "user=alice", "tls-version=TLSv1.3",
        "tls-cipher=TLS_AES_256_GCM_SHA384", path])
    assert r.returncode == 0, r.stderr
    assert results[0]["status"] == "checked", results
    log = testbed.path("rspamd-log")
    deadline = time.monotonic() + 10
    line = None
    while line is None and time.monotonic() < deadline:
        for ln in log.read_text(errors="replace").splitlines():
            if "rspamd_task_write_log" in ln and f"qid: <{qid}>" in ln:
                line = ln
        time.sleep(0.2)
    assert line is not None, f"no rspamd log line for qid {qid}"
    assert "ip: 198.51.100.10" in line, line
    assert "user: alice" in line, line
    assert "from: <alice@ext.test>" in line, line
    assert re.search(r"rcpts: <bob@int\.test,carol\+x@int\.test[,>]", line), line


@pytest.mark.parametrize("transport", ["tcp", "tcp6", "unix"])
@pytest.mark.parametrize("length", ["chunked", "known"])
def test_transports_and_framing(testbed, scan, transport, length):
    token = new_token()
    reject = scan.write(f"gtube-{transport}-{length}.eml",
                        msg_with_attachment(token, "Test.\r\n" + GTUBE["reject"],
                                            bytes(range(256)) * 300))
    ordinary = scan.write(f"ord-{transport}-{length}.eml", msg_ordinary(token))
    results, _, r = run_scanclient(testbed, [
        "rspamd", rspamd_servers(testbed, transport), *ENVELOPE, f"length={length}",
        "chunk=4096", reject, ordinary])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    assert res[reject]["action"] == "reject", res[reject]
    assert res[ordinary]["action"] == "no action", res[ordinary]
    assert res[reject]["server"] == rspamd_servers(testbed, transport)


def test_stopped_and_stalled(testbed, scan):
    path = scan.write("down.eml", msg_ordinary(new_token()))
    testbed.cmd("scanners", "stop", "rspamd")
    try:
        results, status, r = run_scanclient(testbed, [
            "-S", "rspamd", f"{rspamd_servers(testbed)} {rspamd_servers(testbed, 'unix')}",
            path])
        assert r.returncode == 0, r.stderr
        assert results[0]["status"] == "unavailable", results
        assert int(results[0]["ms"]) < 1000, results
        assert status[1]["rspamd.1.health"] == "down", status
        assert status[1]["rspamd.2.health"] == "down", status

        testbed.cmd("scanners", "start", "rspamd", timeout=300)
        testbed.cmd("scanners", "stall", "rspamd")
        results, _, r = run_scanclient(testbed, ["-t", 2000, "rspamd", rspamd_servers(testbed),
                                                 path])
        assert r.returncode == 0, r.stderr
        assert results[0]["status"] == "error", results
        assert "timeout" in results[0]["reason"], results
        assert int(results[0]["ms"]) >= 1900, results
    finally:
        scanners_up(testbed)
    results, _, r = run_scanclient(testbed, ["rspamd", rspamd_servers(testbed), path])
    assert results[0]["status"] == "checked", results
