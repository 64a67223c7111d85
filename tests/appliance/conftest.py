"""Fixtures for the appliance tests: the QEMU testbed (tests/testbed with
SMTPGW_TB_GATEWAY=qemu) booting the smtpgw appliance of a given board, in a
given boot mode.

`appliance(board, boot)` returns the testbed (the e2e suite's Testbed class,
so swaks, Maildirs and flows work the same) with the appliance of that
board booted that way: "kernel" (QEMU loads kernel and initramfs, the
gateway's files are shared with the host) or "disk" (UEFI firmware boots a
copy of the flashable disk image, its configuration partition empty but for
root's SSH key).  Consecutive tests asking for the same board and boot mode
share one boot; the testbed goes down when another is asked for and at the
end.  Boot times are collected and printed in the summary.

Environment: SMTPGW_TB_PREFIX (default "ap-"), SMTPGW_TB_ACCEL,
SMTPGW_TB_OUT (image directories), SMTPGW_APPLIANCE_KEEP=1 (leave the last
testbed up).
"""

import importlib.util
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The e2e suite's helpers (Testbed, flow, new_token, ...), loaded under
# their own name: this file is "conftest" too.
_spec = importlib.util.spec_from_file_location(
    "e2e_conftest", REPO / "tests" / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

BOOT_TIMES = []  # (what, seconds) for the summary


def note_time(what, seconds):
    BOOT_TIMES.append((what, seconds))


def pytest_terminal_summary(terminalreporter):
    if BOOT_TIMES:
        terminalreporter.section("appliance timings")
        for what, secs in BOOT_TIMES:
            terminalreporter.write_line(f"{what}: {secs:.1f} s")


class Appliance(e2e.Testbed):
    """The QEMU testbed, with helpers for the appliance itself."""

    def sh(self, script, check=True, timeout=120):
        """Run a shell script on the appliance (testbed exec gw sh -c)."""
        r = self.exec("gw", "sh", "-c", script, timeout=timeout)
        if check and r.returncode != 0:
            raise e2e.TestbedError(f"on the appliance: {script!r} failed "
                                   f"(exit {r.returncode}):\n{r.stdout}{r.stderr}")
        return r.stdout

    def console(self):
        """Everything the appliance printed on its serial console."""
        try:
            return self.path("gw-console").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def boot_log(self):
        return self.sh("cat /run/boot.log")

    def wait_smtpgw(self, timeout=120):
        """Wait until smtpgw runs and is ready on the appliance."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.exec("gw", "smtpgw-service", "start", timeout=60)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"smtpgw not ready on the appliance:\n{r.stdout}{r.stderr}")
            time.sleep(1)

    def reboot(self, timeout=900, ready=True):
        """Reboot the appliance (busybox reboot); returns once it is back
        (and, with ready, smtpgw is ready), with the seconds it took."""
        con = self.path("gw-console")
        off = con.stat().st_size
        t0 = time.monotonic()
        self.exec("gw", "reboot", timeout=60)
        deadline = t0 + timeout
        while True:
            text = con.read_bytes()[off:].decode(errors="replace")
            if "reboot: Restarting system" in text and "rc: system up in" in text:
                break
            if time.monotonic() > deadline:
                raise AssertionError("the appliance did not come back from reboot; console:\n"
                                     + e2e.tail(text, 30))
            time.sleep(0.5)
        self.wait_ssh(deadline - time.monotonic())
        if ready:
            self.wait_smtpgw()
        return time.monotonic() - t0

    def wait_ssh(self, timeout):
        deadline = time.monotonic() + max(timeout, 10)
        while self.exec("gw", "true", timeout=30).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError("the appliance does not answer SSH")
            time.sleep(1)


@pytest.fixture(scope="session")
def appliance():
    """appliance(board="qemu-x86_64", boot="kernel") -> Appliance, up."""
    if os.geteuid() != 0:
        pytest.skip("the appliance tests need root (QEMU, taps, network namespaces)")
    os.environ.setdefault("SMTPGW_TB_PREFIX", "ap-")
    os.environ["SMTPGW_TB_GATEWAY"] = "qemu"
    state = {"key": None, "tb": None, "failed": {}}

    def down():
        if state["tb"] is not None:
            state["tb"].cmd("down", check=False, timeout=300)
        state["key"] = state["tb"] = None

    def get(board="qemu-x86_64", boot="kernel"):
        key = (board, boot)
        if state["key"] == key:
            return state["tb"]
        # An appliance that did not come up once is not tried again for
        # every test (each try may take its full timeout): they fail at once.
        if key in state["failed"]:
            pytest.fail(f"testbed up ({board}, {boot} boot) failed before: "
                        f"{state['failed'][key]}", pytrace=False)
        down()
        os.environ["SMTPGW_TB_BOARD"] = board
        os.environ["SMTPGW_TB_BOOT"] = boot
        tb = Appliance()
        t0 = time.monotonic()
        try:
            r = tb.cmd("up", check=False, timeout=1800)
        except subprocess.TimeoutExpired:
            tb.cmd("down", check=False, timeout=300)
            state["failed"][key] = "testbed up took more than 1800 s"
            pytest.fail(f"testbed up ({board}, {boot} boot): {state['failed'][key]}",
                        pytrace=False)
        except BaseException:
            # interrupted (scripts/test's budget sends SIGINT): nothing stays up
            tb.cmd("down", check=False, timeout=300)
            raise
        if r.returncode != 0:
            tb.cmd("down", check=False, timeout=300)
            state["failed"][key] = f"exit {r.returncode}, see the first test that used it"
            pytest.fail(f"testbed up ({board}, {boot} boot) failed (exit {r.returncode}):\n"
                        f"{r.stdout}{e2e.tail(r.stderr, 60)}", pytrace=False)
        m = re.search(r"appliance up in (\d+) ms", r.stderr)
        if m:
            note_time(f"{board}, {boot} boot: QEMU start to smtpgw ready", int(m.group(1)) / 1000)
        note_time(f"{board}, {boot} boot: testbed up (build, namespaces, Postfix, boot)",
                  time.monotonic() - t0)
        state["key"], state["tb"] = key, tb
        return tb

    try:
        yield get
    finally:
        if os.environ.get("SMTPGW_APPLIANCE_KEEP") != "1":
            down()


# The gateway log of a failed test (kernel boot: the shared log; disk
# boot: syslog on the appliance, /var/log/messages) goes into its report.

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    tb = getattr(item, "_appliance_tb", None)
    if rep.failed and tb is not None:
        try:
            text = tb.sh("tail -n 40 /run/boot.log; echo ---; "
                         "(smtpgw-service log; cat /var/log/messages) 2>/dev/null | tail -n 60",
                         check=False, timeout=30)
        except Exception as e:  # the appliance may be gone
            text = f"(cannot read the appliance's logs: {e})"
        rep.sections.append(("appliance boot log and smtpgw log", text))
        rep.sections.append(("appliance console (tail)", e2e.tail(tb.console(), 40)))


def remember(request, tb):
    """Attach tb to the test, for the failure report."""
    request.node._appliance_tb = tb
    return tb
