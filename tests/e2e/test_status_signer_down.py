"""A signer that is down shows in `smtpgwctl status`, which exits 1.

A hurried admin runs `smtpgwctl cert regenerate-authority` and forgets
`apply`.  While the running generation's signer lives nothing changes;
once it dies (here: killed), its respawn refuses the new key (it does
not belong to the Proxy Authority certificate the generation's workers
send) and the signer stays down: every outbound inspected TLS session
fails until the next reload.  The master's status file says
`signer=down`, but `smtpgwctl status` showed only the classifier and the
workers and exited 0 - "everything runs".  It now shows the signer's
state and exits 1 (a child is missing, smtpgwctl(8)).  Applying (a new
generation, a new signer, with the files as they are) brings it back.
The original CA files are put back first, so the tests that follow see
the Proxy Authority they expect.
"""

import os
import signal
import time

from gwctl import gwctl  # noqa: F401 (fixture)

FILES = ("proxy-authority.crt", "proxy-authority.key")


def wait_status(gwctl, key, want, timeout=10):
    deadline = time.monotonic() + timeout
    while gwctl.status().get(key) != want:
        assert time.monotonic() < deadline, (key, want, gwctl.status())
        time.sleep(0.1)


def test_a_dead_signer_is_reported(testbed, gwctl):
    tls = gwctl.etc / "tls"
    saved = {n: (tls / n).read_bytes() for n in FILES}
    try:
        r = gwctl.ok("status")
        assert "signer:         running" in r.stdout, r.stdout

        gwctl.ok("cert", "regenerate-authority")  # ... and no apply
        os.kill(int(gwctl.status()["signer-pid"]), signal.SIGKILL)
        wait_status(gwctl, "signer", "down")

        r = gwctl.run("status")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "signer:         down" in r.stdout, r.stdout
    finally:
        for n, data in saved.items():
            tmp = tls / (n + ".e2e")
            tmp.write_bytes(data)
            tmp.chmod(0o600 if n.endswith(".key") else 0o644)
            tmp.rename(tls / n)
    gwctl.apply()
    wait_status(gwctl, "signer", "running")
    r = gwctl.ok("status")
    assert "signer:         running" in r.stdout, r.stdout
