"""Each child holds the descriptors of its role, nothing of another's.

SECURITY.md and daemon/blocked.h promise that every child closes what it
inherited and does not need: above all that the blocker's registration
socket (whose reading end takes the channels workers register) is read by
the blocker alone, and that the signer, which holds the CA keys, keeps
nothing but its own registration socket.  Read from /proc/PID/fd of the
real processes, with the gateway started holding a descriptor of its
parent's and after a reload (a signer started after the blocker):

- no process of smtpgw holds the descriptor its parent left open (it
  used to reach every child, the signer included);
- no child holds a pipe (each kept the master's end of the pipe it
  reported "ready" on);
- the signer shares no socket with any other child (a signer started at
  a reload or a respawn held both ends of the blocker's registration
  socket: it could read the workers' channels to the blocker);
- the classifier shares no socket with a worker or the blocker (it held
  the workers' end of the blocker's registration socket, so it could
  register channels and ask for blocks).

The gateway is restarted at the end, without the extra descriptor.
"""

import os
import subprocess
import time
from pathlib import Path

from conftest import TESTBED
from gwctl import gwctl  # noqa: F401 (fixture)


def fds(pid):
    out = {}
    for e in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out[int(e.name)] = os.readlink(e)
        except FileNotFoundError:
            pass
    return out


def sockets(targets):
    return {t for t in targets.values() if t.startswith("socket:")}


def children(master):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True,
                         text=True).stdout.split()
    return [int(p) for p in out]


def test_children_hold_only_their_own(testbed, gwctl):
    rd, wr = os.pipe()
    inherited = f"pipe:[{os.fstat(wr).st_ino}]"
    try:
        # The gateway's parent leaves wr open: smtpgw starts with it.
        r = subprocess.run([str(TESTBED), "restart-gateway"], pass_fds=(wr,),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        gwctl.apply()  # a reload: a new signer, forked after the blocker
        time.sleep(1)  # the old generation's workers are gone
        st = gwctl.status()
        master = int(st["pid"])
        signer, classifier = int(st["signer-pid"]), int(st["classifier-pid"])
        workers = [int(p) for p in st["worker-pids"].split()]
        kids = children(master)
        blockers = [p for p in kids if p not in (signer, classifier, *workers)]
        assert len(blockers) == 1, (kids, st)
        blocker = blockers[0]
        held = {p: fds(p) for p in (master, *kids)}

        problems = []
        for pid, targets in held.items():
            if inherited in targets.values():
                problems.append(f"pid {pid} holds the descriptor its parent left open")
        for pid in kids:
            pipes = {n: t for n, t in held[pid].items() if t.startswith("pipe:")}
            if pipes:
                problems.append(f"child {pid} holds pipes {pipes}")
        others = set().union(*(sockets(held[p]) for p in kids if p != signer))
        shared = sockets(held[signer]) & others
        if shared:
            problems.append(f"the signer {signer} shares {shared} with other children")
        peers = set().union(*(sockets(held[p]) for p in (*workers, blocker)))
        shared = sockets(held[classifier]) & peers
        if shared:
            problems.append(f"the classifier {classifier} shares {shared} with workers/blocker")
        assert not problems, "\n".join(problems) + f"\ndescriptors: {held}"
    finally:
        os.close(rd)
        os.close(wr)
        testbed.restart_gateway()
