"""smtpgwctl on the testbed's gateway, for the test_config_* scenarios.

`testbed exec gw smtpgwctl ...` manages the gateway's configuration
(SMTPGW_PREFIX maps /etc/smtpgw and /run/smtpgw into the testbed state).
The gwctl fixture hands out a GwCtl and, afterwards, drops anything still
staged and puts the configuration the test started with back (with
`smtpgwctl apply`, or by a gateway restart if that fails).
"""

import re
import time

import pytest

from conftest import log_fields


class GwCtl:
    def __init__(self, tb):
        self.tb = tb
        self.etc = tb.path("gw-etc")
        self.active = tb.path("gw-conf")
        self.staged = self.etc / "smtpgw.conf.staged"

    def run(self, *args, env=None, timeout=60):
        argv = ["smtpgwctl", *map(str, args)]
        if env:
            argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
        return self.tb.exec("gw", *argv, timeout=timeout)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 0, (f"smtpgwctl {' '.join(map(str, args))} failed "
                                   f"(exit {r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def fails(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == 1, (f"smtpgwctl {' '.join(map(str, args))}: expected exit 1, "
                                   f"got {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def policy_action(self, policy):
        """The proxy action a policy uses now (staged or active)."""
        out = self.ok("policy", "show", policy).stdout
        return re.search(r"^action = (\S+)$", out, re.M).group(1)

    def status(self):
        """The daemon's status file as a dict."""
        text = self.tb.path("gw-status").read_text()
        return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)

    def apply(self):
        """smtpgwctl apply; returns the daemon's new generation."""
        before = int(self.status()["generation"])
        self.ok("apply")
        st = self.status()
        assert st["reload-result"] == "ok", st
        assert int(st["generation"]) == before + 1, st
        return int(st["generation"])


@pytest.fixture
def gwctl(testbed):
    ctl = GwCtl(testbed)
    original = ctl.active.read_text()
    try:
        yield ctl
    finally:
        ctl.run("discard")
        if ctl.active.read_text() != original or not testbed.gateway_running():
            ctl.staged.write_text(original)
            r = ctl.run("apply")
            if r.returncode != 0 or not testbed.gateway_running():
                ctl.active.write_text(original)
                ctl.staged.unlink(missing_ok=True)
                testbed.restart_gateway()


def classify_rejects(text, src, dport):
    """classify decision=reject lines for this source and port."""
    out = []
    for line in text.splitlines():
        if "classify decision=reject" not in line:
            continue
        f = log_fields(line)
        if f.get("src") == src and f.get("dport") == str(dport):
            out.append((line, f))
    return out


def wait_reject(tb, offset, src, dport, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        found = classify_rejects(tb.log_since(offset), src, dport)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no classify reject for {src} port {dport}; log:\n"
                                 + tb.log_since(offset)[-3000:])
        time.sleep(0.1)


def session_for(tb, offset, addr, lport):
    """The session start line for client addr:lport (waits for it)."""
    return tb.wait_for_session(offset, addr, lport)


def has_session(tb, offset, addr, lport):
    pat = re.compile(r"client=\[?" + re.escape(addr) + r"\]?:" + str(lport) + r"\b")
    return any(pat.search(l) for l in tb.log_since(offset).splitlines())
