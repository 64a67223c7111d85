"""clamd through the daemon's own client (daemon/clamd.c, driven by
tests/scanners/scanclient in the gateway's namespace) against the
testbed's real clamd instances:

- the EICAR test file as a plain body, as a base64 attachment, inside a
  zip and inside an attached message is found, with clamd's signature
  name; the same messages carrying harmless text are clean;
- every transport works: the Unix socket as the workers' unprivileged
  user, TCP over IPv4 and IPv6;
- a signature split across the smallest chunks is still found (the
  message is streamed as it arrives);
- connections are reused (IDSESSION): five scans one after the other
  open one connection; with reuse off, five;
- a message above clamd-max-size is "too large" without being sent; one
  above clamd's own StreamMaxLength (our limit set higher on purpose) is
  "too large" too, never an error, and the log says to lower the limit.
"""

import pytest

from lib.scanners import (EICAR_NAME, ScanDir, by_file, clamd_servers, msg_attachment,
                          msg_nested, msg_plain, msg_zip, run_scanclient, scanners_up)
from lib.topology import new_token

WRAPPINGS = {"plain": msg_plain, "attachment": msg_attachment, "zip": msg_zip,
             "nested": msg_nested}


@pytest.fixture(scope="module")
def scan(testbed):
    if testbed.gateway_kind() != "netns":
        pytest.skip("scanclient runs in the gw namespace (netns gateway only)")
    scanners_up(testbed)
    d = ScanDir()
    yield d
    d.cleanup()


def test_eicar_in_every_wrapping(testbed, scan):
    token = new_token()
    infected = {k: scan.write(f"{k}-eicar.eml", f(token)) for k, f in WRAPPINGS.items()}
    clean = {k: scan.write(f"{k}-clean.eml", f(token, b"harmless text, nothing to see"))
             for k, f in WRAPPINGS.items()}
    results, status, r = run_scanclient(
        testbed, ["-S", "clamd", clamd_servers(testbed, "clamd-1", "clamd-2"),
                  *infected.values(), *clean.values()])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    for kind, path in infected.items():
        assert res[path]["status"] == "infected", (kind, res[path])
        assert res[path]["virus"] == EICAR_NAME, (kind, res[path])
    for kind, path in clean.items():
        assert res[path]["status"] == "clean", (kind, res[path])
    # the pool's counters add up, spread over both servers
    assert sum(int(status[1][f"clamd.{n}.infected"]) for n in (1, 2)) == 4, status
    assert sum(int(status[1][f"clamd.{n}.clean"]) for n in (1, 2)) == 4, status
    assert int(status[1]["clamd.1.replies"]) > 0 and int(status[1]["clamd.2.replies"]) > 0, status


@pytest.mark.parametrize("transport,server,user", [
    ("unix", "clamd-1", "nobody"),
    ("tcp", "clamd-2", None),
    ("tcp6", "clamd-1", None),
])
def test_transports(testbed, scan, transport, server, user):
    path = scan.write(f"{transport}.eml", msg_attachment(new_token()))
    servers = clamd_servers(testbed, server, transport=transport)
    results, _, r = run_scanclient(testbed, ["clamd", servers, path], user=user)
    assert r.returncode == 0, r.stderr
    assert results[0]["status"] == "infected", results
    assert results[0]["server"] == servers


def test_signature_across_tiny_chunks(testbed, scan):
    path = scan.write("tiny-chunks.eml", msg_plain(new_token()))
    results, _, r = run_scanclient(
        testbed, ["clamd", clamd_servers(testbed, "clamd-2"), "chunk=7", path])
    assert r.returncode == 0, r.stderr
    assert results[0]["status"] == "infected", results


@pytest.mark.parametrize("idle_ms,connects", [(10000, 1), (0, 5)])
def test_connection_reuse(testbed, scan, idle_ms, connects):
    token = new_token()
    files = [scan.write(f"reuse-{i}.eml", (msg_plain if i % 2 else msg_zip)(token))
             for i in range(5)]
    results, status, r = run_scanclient(
        testbed, ["-s", "-S", "-i", idle_ms, "clamd", clamd_servers(testbed, "clamd-1"), *files])
    assert r.returncode == 0, r.stderr
    assert [x["status"] for x in results] == ["infected"] * 5, results
    assert status[1]["clamd.1.requests"] == "5", status
    assert status[1]["clamd.1.connects"] == str(connects), status


def test_too_large(testbed, scan):
    token = new_token()
    big = scan.big("two-mib.eml", 2 * 1024 * 1024)
    small = scan.write("small.eml", msg_zip(token))
    results, status, r = run_scanclient(
        testbed, ["-m", 1024 * 1024, "-S", "clamd", clamd_servers(testbed, "clamd-1"), big, small])
    assert r.returncode == 0, r.stderr
    res = by_file(results)
    assert res[big]["status"] == "too-large", res[big]
    assert "1048576" in res[big]["reason"]
    assert int(res[big]["size"]) <= 1024 * 1024
    assert res[small]["status"] == "infected", res[small]
    assert status[1]["clamd.too-large"] == "1"
    # nothing of the big one reached clamd: it answered one scan only
    assert status[1]["clamd.1.replies"] == "1", status


def test_clamd_own_limit_is_too_large(testbed, scan):
    # 65 MiB against the testbed clamd's StreamMaxLength of 64 MiB, our limit above it
    big = scan.big("sixty-five-mib.eml", 65 * 1024 * 1024)
    results, status, r = run_scanclient(
        testbed, ["-m", 80 * 1024 * 1024, "-S", "clamd", clamd_servers(testbed, "clamd-2"), big])
    assert r.returncode == 0, r.stderr
    assert results[0]["status"] == "too-large", results
    assert "StreamMaxLength" in results[0]["reason"]
    assert "lower clamd-max-size" in r.stderr
    assert status[1]["clamd.1.too-large"] == "1", status
    assert status[1]["clamd.1.health"] == "up", status
