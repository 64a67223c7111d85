"""Each role runs under a uid of its own, so a worker cannot signal the
signer or the classifier.

With `signer-user` and `classifier-user` naming existing users (the
system's `daemon` and `bin` stand in for smtpgw-signer and
smtpgw-classify, which a test machine may not have), after a reload: each
worker runs as a uid of its own (worker-uid-base + its slot, no account)
in `user`'s group, the signer and the classifier as the users named,
none of them with a uid another child has; a process with a worker's uid
gets EPERM signalling the signer, the classifier, another worker and the
blocker (which runs as `user`); every child is non-dumpable.  With
worker-uid-base = 0 the workers share `user`'s uid again.  Outbound STARTTLS mail
still flows (the signer, now another user, forges the leaf).  A user
that does not exist is refused by `smtpgwctl` with the daemon's message.
"""

import pwd
import subprocess
from pathlib import Path

import pytest

from conftest import flow
from gwctl import gwctl  # noqa: F401 (fixture)


def uid_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:]}
    raise AssertionError(pid)


def as_uid(uid, *argv):
    return subprocess.run(["setpriv", f"--reuid={uid}", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, text=True)


def test_roles_have_their_own_users(testbed, gwctl):
    for u in ("daemon", "bin", "nobody"):
        try:
            pwd.getpwnam(u)
        except KeyError:
            pytest.skip(f"no user {u} on this machine")
    gwctl.ok("global", "set", "signer-user", "daemon")
    gwctl.ok("global", "set", "classifier-user", "bin")
    gwctl.apply()
    st = gwctl.status()
    workers = [int(p) for p in st["worker-pids"].split()]
    signer, classifier = int(st["signer-pid"]), int(st["classifier-pid"])
    assert st["signer"] == "running", st

    base = int(gwctl.run("global", "show").stdout.split("worker-uid-base = ")[1].split()[0])
    wuids = [uid_of(w) for w in workers]
    assert all(len(u) == 1 and base <= next(iter(u)) < base + 256 for u in wuids), wuids
    assert len({next(iter(u)) for u in wuids}) == len(workers), wuids
    assert uid_of(signer) == {pwd.getpwnam("daemon").pw_uid}
    assert uid_of(classifier) == {pwd.getpwnam("bin").pw_uid}
    for pid in [signer, classifier, *workers]:
        # a non-dumpable process's /proc files belong to root
        assert Path(f"/proc/{pid}/mem").stat().st_uid == 0

    me = next(iter(wuids[0]))
    others = [signer, classifier] + workers[1:]
    for pid in others:
        r = as_uid(me, "kill", "-0", str(pid))
        assert r.returncode != 0 and "not permitted" in r.stderr, (pid, r)
    r = as_uid(me, "kill", "-0", str(workers[0]))
    assert r.returncode == 0, r

    fl = flow("outbound", 4)
    testbed.send_and_wait(fl, extra=["-tls"])


def test_shared_worker_uid_when_turned_off(testbed, gwctl):
    gwctl.ok("global", "set", "worker-uid-base", "0")
    gwctl.apply()
    workers = [int(p) for p in gwctl.status()["worker-pids"].split()]
    assert all(uid_of(w) == {pwd.getpwnam("nobody").pw_uid} for w in workers)


def test_a_worker_uid_range_with_an_account_is_refused(testbed, gwctl):
    r = gwctl.fails("global", "set", "worker-uid-base", str(pwd.getpwnam("nobody").pw_uid - 10))
    assert "belongs to account" in r.stderr, r.stderr


def test_a_user_that_does_not_exist_is_refused(testbed, gwctl):
    r = gwctl.fails("global", "set", "signer-user", "smtpgw-e2e-nosuchuser")
    assert 'signer-user: user "smtpgw-e2e-nosuchuser" does not exist' in r.stderr, r.stderr
