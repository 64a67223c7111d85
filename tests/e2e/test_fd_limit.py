"""Out of file descriptors: refused configurations, no spin, a clean
refusal of clients, recovery.

1. A max-sessions whose descriptors no worker could ever get (more than
   the kernel's fs.nr_open allows) is refused by `smtpgw -t`, so by
   `smtpgwctl` before anything changes, saying which value would fit.
2. At start smtpgw raises RLIMIT_NOFILE to what max-sessions needs (two
   sockets per session, per worker, plus a base and a margin).  When the
   master cannot raise it (its hard limit lowered below the need, no
   CAP_SYS_RESOURCE), a reload is rejected with that reason and the
   running generation keeps serving; with CAP_SYS_RESOURCE the hard limit
   is raised and the reload takes effect.
3. Both workers are squeezed to 40 descriptors (prlimit) and 60 clients
   connect at once.  Each client hears something within seconds: the
   real server's 220 while descriptors last, else `421` - nobody waits
   silently in the backlog.  Meanwhile the workers stay idle (the
   listeners are paused and retried on a timer instead of being polled in
   a loop: well under 20% CPU, where the old code spun at 100%), and the
   log carries a few rate-limited `accept error` warnings, not one per
   attempt.  Once the held sessions end, a new client gets 220 again.
   prlimit on another user's process needs CAP_SYS_RESOURCE, which a test
   machine may lack, so for this case the workers run as root (user =
   root, worker-uid-base = 0; their capabilities are still dropped).
"""

import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import flow

TESTBED = str(Path(__file__).resolve().parents[1] / "testbed" / "testbed")

HOLD_SCRIPT = r"""
import select, socket, sys, time
addr, n = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(10)
    s.connect((addr, 25))
    socks.append(s)
# every client's first line, all waiting at once, 10 s in all
first = {}
deadline = time.monotonic() + 10
while len(first) < n and time.monotonic() < deadline:
    waiting = [s for s in socks if s not in first]
    ready, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
    for s in ready:
        first[s] = s.recv(200).decode(errors="replace").split("\r\n")[0] or "EOF"
print("\n".join(first.get(s, "TIMEOUT") for s in socks), flush=True)
print("END", flush=True)
sys.stdin.readline()          # hold the sessions until told to go
"""

HZ = 100  # USER_HZ: /proc/PID/stat counts clock ticks


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def nofile(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3]), int(line.split()[4])
    raise AssertionError("no limit line")


def status(tb):
    text = tb.path("gw-status").read_text()
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def test_check_refuses_max_sessions_beyond_nr_open(testbed, gateway_config):
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    if nr_open > 2_000_000:
        pytest.skip(f"fs.nr_open is {nr_open}: max-sessions 1000000 would fit")
    r = testbed.exec("gw", "smtpgwctl", "global", "set", "max-sessions", "1000000")
    assert r.returncode == 1, r
    assert re.search(r"max-sessions 1000000 needs \d+ file descriptors per worker", r.stderr), \
        r.stderr
    assert "set max-sessions to" in r.stderr, r.stderr
    testbed.exec("gw", "smtpgwctl", "discard")


def has_sys_resource(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def test_reload_refused_when_the_limit_cannot_be_raised(testbed, gateway_config):
    from gwctl import GwCtl
    ctl = GwCtl(testbed)
    fl = flow("outbound", 4)
    try:
        st0 = status(testbed)
        master = int(st0["pid"])
        # the master's own limits: lowering them needs no privilege
        subprocess.run(["prlimit", f"--pid={master}", "--nofile=1000:1000"], check=True)
        r = ctl.run("apply")
        st = status(testbed)
        if has_sys_resource(master):
            assert r.returncode == 0, r.stderr
            assert st["reload-result"] == "ok", st
            for pid in st["worker-pids"].split():
                assert nofile(int(pid))[0] >= 4314
        else:
            assert r.returncode == 1, r
            assert st["reload-result"] == "rejected", st
            assert "max-sessions 2000 needs 4314 file descriptors" in st["reload-error"], st
            assert "max-sessions 2000 needs 4314 file descriptors" in r.stderr, r.stderr
            assert st["generation"] == st0["generation"], st
            assert st["worker-pids"] == st0["worker-pids"], st
        testbed.send_and_wait(fl)
    finally:
        testbed.restart_gateway()


def test_exhausted_descriptors_refuse_cleanly_without_spinning(testbed, gateway_config):
    fl = flow("outbound", 4)
    gateway_config.set("global", "user", "root")
    gateway_config.set("global", "worker-uid-base", "0")  # not a uid of their own either
    st = status(testbed)
    workers = [int(p) for p in st["worker-pids"].split()]
    assert len(workers) == 2, st
    for pid in workers:
        soft, hard = nofile(pid)
        assert soft >= 4314, (pid, soft)  # max-sessions 2000 -> 64 + 2*2000 + 250
    off = testbed.log_offset()
    for pid in workers:
        subprocess.run(["prlimit", f"--pid={pid}", "--nofile=40:40"], check=True)

    n = 60
    p = subprocess.Popen([TESTBED, "exec", fl.client, "/usr/bin/python3", "-c", HOLD_SCRIPT,
                          fl.server_addr, str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        firsts = []
        while True:
            line = p.stdout.readline().strip()
            if line in ("END", ""):
                break
            firsts.append(line)
        assert len(firsts) == n, firsts
        served = [f for f in firsts if f.startswith("220")]
        refused = [f for f in firsts if f.startswith("421")]
        assert len(served) + len(refused) == n, firsts   # nobody left waiting
        assert served and refused, firsts

        # Out of descriptors with connections still arriving: the workers rest.
        t0 = {pid: cpu_ticks(pid) for pid in workers}
        probes = []
        for _ in range(4):
            probes.append(testbed.probe(fl.client, fl.server_addr, 25, read_timeout=5))
        time.sleep(1.0)
        used = sum(cpu_ticks(pid) - t0[pid] for pid in workers) / HZ
        for r in probes:
            assert r["connect"] == "ok" and r["data"].startswith("421"), r
        assert used < 0.2 * 2, f"workers used {used:.2f} s of CPU while out of descriptors"
        warnings = [l for l in testbed.log_since(off).splitlines() if "accept error=" in l]
        assert warnings, testbed.log_since(off)[-2000:]
        assert len(warnings) <= 2 * len(workers), warnings

        # The held sessions end: descriptors are back, and so is service.
        p.stdin.write("\n")
        p.stdin.flush()
        p.wait(timeout=30)
        deadline = time.time() + 15
        while True:
            r = testbed.probe(fl.client, fl.server_addr, 25, read_timeout=3)
            if r["data"].startswith("220") or time.time() > deadline:
                break
            time.sleep(0.3)
        assert r["data"].startswith("220"), r
        testbed.send_and_wait(fl)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        # the squeezed workers go; the next test gets a gateway with its own limits
        testbed.restart_gateway()
