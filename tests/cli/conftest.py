"""Fixtures for the smtpgwctl CLI tests.

Each test gets a Box: a temporary prefix (SMTPGW_PREFIX) holding
etc/smtpgw (configuration, board map, tls/) and run/smtpgw, in which
scripts/smtpgwctl runs under busybox ash with busybox's applets first on
PATH - as on the appliance - when busybox is installed (else /bin/sh;
SMTPGW_CLI_SHELL overrides, e.g. "dash").  The real daemon binary checks
every change (SMTPGW_BUILDDIR, default build/; tests that need it are
skipped without it).  The ruleset loader is a fake that logs its calls,
renders with the real smtpgw-nft and can be told to fail; the running
daemon, where a test needs one, is fake_smtpgw.py.  Nothing needs root.

Run: /usr/bin/python3 -m pytest tests/cli
"""

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CTL = REPO / "scripts" / "smtpgwctl"
REAL_NFT = REPO / "nftables" / "smtpgw-nft"
BUILD = Path(os.environ.get("SMTPGW_BUILDDIR", REPO / "build"))
DAEMON = BUILD / "daemon" / "smtpgw"
FAKE_DAEMON = Path(__file__).resolve().parent / "fake_smtpgw.py"
BUSYBOX = shutil.which("busybox")

needs_daemon = pytest.mark.skipif(not DAEMON.exists(),
                                  reason=f"smtpgw is not built ({DAEMON}); set SMTPGW_BUILDDIR")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="openssl is not installed")

FAKE_NFT = """#!/bin/sh
# smtpgw-nft stand-in for the CLI tests: logs its arguments; render is the
# real one; load fails once when "fail-load" exists, always with "fail-always".
d=$(dirname "$0")
echo "$*" >>"$d/calls"
case $3 in
render) exec "$REAL_NFT" "$@" ;;
load)
	if [ -e "$d/fail-always" ]; then echo "nft: injected failure" >&2; exit 1; fi
	if [ -e "$d/fail-load" ]; then rm -f "$d/fail-load"; echo "nft: injected failure" >&2; exit 1; fi
	cp "$2" "$d/loaded.conf"
	;;
counters)
	[ -e "$d/loaded.conf" ] || exit 1
	printf 'intercepted 7\\nbypassed 0\\nrejected 2\\nunclassified 1\\nblocked 5\\n'
	;;
blocked)
	# The list in "blocked": ADDR, expiry (epoch), timeout, comment (tabs).
	# "blocked-unloaded": no ruleset; "blocked-full": the set is full.
	if [ -e "$d/blocked-unloaded" ]; then
		echo "smtpgw-nft: the blocked sites list is not loaded (smtpgw-nft load)" >&2; exit 1
	fi
	f="$d/blocked"; touch "$f"; now=$(date +%s)
	case $4 in
	list) awk -F '\t' -v now="$now" '$2 > now { print $1 "\t" $2 - now "\t" $3 "\t" $4 }' "$f" ;;
	add)
		if [ -e "$d/blocked-full" ]; then
			echo "smtpgw-nft: the blocked sites list is full (blocked-sites-max addresses per family)" >&2; exit 1
		fi
		awk -F '\t' -v a="$5" '$1 != a' "$f" >"$f.new"
		printf '%s\\t%s\\t%s\\t%s\\n' "$5" $((now + $6)) "$6" "${7:-}" >>"$f.new"
		mv "$f.new" "$f"
		;;
	del)
		grep -q "^$5	" "$f" || { echo "smtpgw-nft: $5 is not on the blocked sites list" >&2; exit 3; }
		awk -F '\t' -v a="$5" '$1 != a' "$f" >"$f.new"; mv "$f.new" "$f"
		;;
	esac
	;;
esac
"""

BOARD = "# IFACE ROLE\nlan0 trusted\nlan1 trusted\nwan0 external\nmgmt0 none\n"


@pytest.fixture(scope="session")
def shell_argv(tmp_path_factory):
    """How smtpgwctl is run, and the PATH to run it with."""
    if os.environ.get("SMTPGW_CLI_SHELL"):
        return shlex.split(os.environ["SMTPGW_CLI_SHELL"]), os.environ["PATH"]
    if not BUSYBOX:
        return ["/bin/sh"], os.environ["PATH"]
    bb = tmp_path_factory.mktemp("busybox-bin")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        (bb / a).symlink_to(BUSYBOX)
    return [BUSYBOX, "ash"], f"{bb}:{os.environ['PATH']}"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __str__(self):
        return f"exit {self.rc}\n--- stdout\n{self.out}--- stderr\n{self.err}"


class Box:
    """A prefix with smtpgwctl's files, and a way to run it there."""

    def __init__(self, root, shell):
        self.root = root
        self.etc = root / "etc" / "smtpgw"
        self.run_dir = root / "run" / "smtpgw"
        self.conf = self.etc / "smtpgw.conf"
        self.staged = self.etc / "smtpgw.conf.staged"
        self.prev = self.etc / "smtpgw.conf.prev"
        self.tls = self.etc / "tls"
        self.pidfile = self.run_dir / "smtpgw.pid"
        self.statusfile = self.run_dir / "smtpgw.status"
        self.nft = root / "nft"
        self.etc.mkdir(parents=True)
        self.run_dir.mkdir(parents=True)
        self.nft.mkdir()
        (root / "tmp").mkdir()
        (self.etc / "board").write_text(BOARD)
        fake = self.nft / "smtpgw-nft"
        fake.write_text(FAKE_NFT)
        fake.chmod(0o755)
        self.shell, path = shell
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPGW_")}
        self.env.update(PATH=path, SMTPGW_PREFIX=str(root), SMTPGW_BIN=str(DAEMON),
                        SMTPGW_NFT=str(fake), REAL_NFT=str(REAL_NFT),
                        TMPDIR=str(root / "tmp"), SMTPGW_RELOAD_WAIT="5")
        self.daemon = None

    def run(self, *args, input=None, env=None, timeout=60):
        e = dict(self.env, **(env or {}))
        r = subprocess.run([*self.shell, str(CTL), *map(str, args)], capture_output=True,
                           text=True, input=input, env=e, timeout=timeout)
        return Result(r.returncode, r.stdout, r.stderr)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.rc == 0, f"smtpgwctl {' '.join(map(str, args))}: {r}"
        return r

    def fails(self, *args, rc=1, **kw):
        r = self.run(*args, **kw)
        assert r.rc == rc, f"smtpgwctl {' '.join(map(str, args))}: expected exit {rc}: {r}"
        return r

    # The fake ruleset loader.
    def blocked(self):
        """The fake's blocked sites list: {addr: (timeout, comment)}."""
        p = self.nft / "blocked"
        if not p.exists():
            return {}
        out = {}
        for line in p.read_text().splitlines():
            addr, _until, timeout, comment = line.split("\t")
            out[addr] = (int(timeout), comment)
        return out

    def nft_calls(self):
        p = self.nft / "calls"
        return p.read_text().splitlines() if p.exists() else []

    def nft_loads(self):
        return [c for c in self.nft_calls() if c.endswith(" load")]

    # The fake daemon.
    def start_daemon(self, status=True):
        argv = ["/usr/bin/python3", str(FAKE_DAEMON), "--bin", str(DAEMON),
                "-c", str(self.conf), "-p", str(self.pidfile)]
        if status:
            argv += ["-s", str(self.statusfile)]
        self.daemon = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while not self.pidfile.exists():
            assert self.daemon.poll() is None, "fake smtpgw exited"
            assert time.monotonic() < deadline, "fake smtpgw wrote no pidfile"
            time.sleep(0.02)
        return self.daemon

    def stop_daemon(self):
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=10)
        self.daemon = None

    def status(self):
        return dict(l.split("=", 1) for l in self.statusfile.read_text().splitlines())

    def loaded_by_daemon(self):
        return (self.run_dir / "loaded.conf").read_text()

    # The configuration files.
    def current(self):
        return (self.staged if self.staged.exists() else self.conf).read_text()


@pytest.fixture
def bare(tmp_path, shell_argv):
    """A new box: board map, no configuration."""
    box = Box(tmp_path / "box", shell_argv)
    try:
        yield box
    finally:
        box.stop_daemon()


@pytest.fixture
def box(bare):
    """A box with the default configuration (smtpgwctl init)."""
    if not DAEMON.exists():
        pytest.skip(f"smtpgw is not built ({DAEMON}); set SMTPGW_BUILDDIR")
    bare.ok("init")
    return bare
