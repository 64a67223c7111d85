"""A clamd that stalls (`testbed scanners stall clamd-1`: SIGSTOP, so the
kernel still accepts connections and nothing answers), with scans through
other pools in the same event loop, as sessions of one worker are:

- the scan on the stalled server ends as an error ("timeout") after the
  request timeout, not earlier, and not as "unavailable" (it took the
  message: a message that hangs a scanner must not pass as unavailable);
- scans through clamd-2, started at the same moment, finish in
  milliseconds, long before that timeout: the loop is never blocked;
- a pool of clamd-1 and clamd-2 fails over after the timeout and still
  finds the virus through clamd-2;
- a scan cancelled while it waits on the stalled server ends at once
  (a session that goes away), and the process stays sound.
"""

import pytest

from lib.scanners import (EICAR_NAME, ScanDir, by_file, clamd_servers, msg_plain, msg_zip,
                          run_scanclient, scanners_up)
from lib.topology import new_token

TIMEOUT_MS = 3000


@pytest.fixture
def clamd1_stalled(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("scanclient runs in the gw namespace (netns gateway only)")
    scanners_up(testbed)
    d = ScanDir()
    testbed.cmd("scanners", "stall", "clamd-1")
    assert "clamd-1: stalled" in testbed.cmd("scanners", "status").stdout
    yield d
    d.cleanup()
    scanners_up(testbed)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_stall_times_out_while_others_flow(testbed, clamd1_stalled, transport):
    token = new_token()
    stalled = clamd1_stalled.write(f"stalled-{transport}.eml", msg_plain(token))
    others = [clamd1_stalled.write(f"other-{transport}-{i}.eml", msg_zip(token)) for i in range(4)]
    results, status, r = run_scanclient(testbed, [
        "-t", TIMEOUT_MS, "-S",
        "clamd", clamd_servers(testbed, "clamd-1", transport=transport), stalled,
        "::", "clamd", clamd_servers(testbed, "clamd-2", transport=transport), *others])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    s = res[stalled]
    assert s["status"] == "error", s
    assert "timeout" in s["reason"] or "timed out" in s["reason"], s
    assert TIMEOUT_MS - 100 <= int(s["ms"]) <= TIMEOUT_MS + 2000, s
    for path in others:
        assert res[path]["status"] == "infected", res[path]
        assert int(res[path]["ms"]) < TIMEOUT_MS / 2, res[path]
    # the others ended first: nothing waited behind the stalled scan
    order = [x["file"] for x in results]
    assert order.index(stalled) == len(order) - 1, order


def test_failover_after_timeout(testbed, clamd1_stalled):
    path = clamd1_stalled.write("fo-stall.eml", msg_plain(new_token()))
    results, status, r = run_scanclient(testbed, [
        "-t", TIMEOUT_MS, "-S", "clamd", clamd_servers(testbed, "clamd-1", "clamd-2"), path])
    assert r.returncode == 0, r.stderr
    x = results[0]
    assert x["status"] == "infected" and x["virus"] == EICAR_NAME, x
    assert x["server"] == clamd_servers(testbed, "clamd-2"), x
    assert int(x["ms"]) >= TIMEOUT_MS - 100, x
    assert status[1]["clamd.1.health"] == "down", status
    assert status[1]["clamd.1.timeouts"] == "1", status


def test_cancel_while_stalled(testbed, clamd1_stalled):
    token = new_token()
    stalled = clamd1_stalled.write("cancel.eml", msg_plain(token))
    other = clamd1_stalled.write("after-cancel.eml", msg_zip(token))
    results, status, r = run_scanclient(testbed, [
        "-t", TIMEOUT_MS, "-S",
        "clamd", clamd_servers(testbed, "clamd-1"), "cancel-ms=300", stalled,
        "::", "clamd", clamd_servers(testbed, "clamd-2"), "delay-ms=600", "chunk=512", other])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    assert res[stalled]["status"] == "cancelled", res
    assert res[other]["status"] == "infected", res
    assert status[1]["clamd.1.active"] == "0", status
    assert status[2]["clamd.1.infected"] == "1", status
