"""A clamd pool with a server down (`testbed scanners stop clamd-1`):

- a pool of clamd-1 and clamd-2 keeps scanning: every message reaches
  clamd-2 (over the Unix sockets and over TCP) and the pool's status says
  clamd-1 is down and why;
- a pool of clamd-1 alone answers "unavailable" at once (nothing took
  the message), with the connect error as the reason;
- a server that comes back is found by the health check (backoff from
  1 s) and is "up" again without a scan having to fail on it first.
"""

import subprocess
import time

import pytest

from lib.scanners import (EICAR_NAME, ScanDir, clamd_servers, msg_attachment, msg_plain,
                          run_scanclient, scanners_up)
from lib.topology import new_token


@pytest.fixture
def clamd1_stopped(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("scanclient runs in the gw namespace (netns gateway only)")
    scanners_up(testbed)
    d = ScanDir()
    testbed.cmd("scanners", "stop", "clamd-1")
    yield d
    d.cleanup()
    scanners_up(testbed)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_failover_to_second_server(testbed, clamd1_stopped, transport):
    token = new_token()
    files = [clamd1_stopped.write(f"fo-{transport}-{i}.eml", msg_attachment(token))
             for i in range(3)]
    servers = clamd_servers(testbed, "clamd-1", "clamd-2", transport=transport)
    results, status, r = run_scanclient(testbed, ["-S", "clamd", servers, *files])
    assert r.returncode == 0, r.stderr
    second = servers.split()[1]
    for x in results:
        assert x["status"] == "infected" and x["virus"] == EICAR_NAME, x
        assert x["server"] == second, x
    assert status[1]["clamd.1.health"] == "down", status
    assert status[1]["clamd.1.last-error"], status
    assert status[1]["clamd.2.health"] == "up", status
    assert status[1]["clamd.2.infected"] == "3", status
    assert status[1]["clamd.unavailable"] == "0", status


@pytest.mark.parametrize("transport,error", [
    ("unix", "No such file or directory"),
    ("tcp", "Connection refused"),
])
def test_only_server_down_is_unavailable(testbed, clamd1_stopped, transport, error):
    path = clamd1_stopped.write(f"alone-{transport}.eml", msg_plain(new_token()))
    results, status, r = run_scanclient(
        testbed, ["-S", "clamd", clamd_servers(testbed, "clamd-1", transport=transport), path])
    assert r.returncode == 0, r.stderr
    assert results[0]["status"] == "unavailable", results
    assert error in results[0]["reason"], results
    assert int(results[0]["ms"]) < 1000, results
    assert status[1]["clamd.unavailable"] == "1", status


def test_health_check_finds_server_back(testbed, clamd1_stopped):
    path = clamd1_stopped.write("back.eml", msg_plain(new_token()))
    exe = str(testbed.path("scanclient"))
    argv = ["ip", "netns", "exec", testbed.path("netns-gw").name, exe, "-w", "9000", "-S",
            "clamd", clamd_servers(testbed, "clamd-1"), path]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the first check and scan fail; backoff 1 s, then 2 s, 4 s
        testbed.cmd("scanners", "start", "clamd-1")
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "status=unavailable" in out, out
    assert "clamd.1.health=up" in out, out + err
    assert "scanner up engine=clamd" in err, err
