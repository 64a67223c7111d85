"""blocked list|add|del: the blocked sites list from the admin's shell.

smtpgwctl validates every value (exit 2 and the synopsis for a bad one),
refuses what is never blocked - blocked-sites-exceptions of the active
configuration, loopback, unspecified, multicast, broadcast - before it
asks the ruleset loader, takes the default time from the active
configuration, and shows who added each address.  The loader is the fake
of conftest.py (the list in a file); the real smtpgw-nft's side - the
parsing of nft's listing and the nft input it writes - is checked at the
end against a fake `nft` on PATH.  The kernel side is in
tests/e2e/test_blocked_sites.py.
"""

import os
import subprocess
import time

import pytest

from conftest import REAL_NFT, needs_daemon

pytestmark = needs_daemon


def test_help(box):
    r = box.ok("blocked", "--help")
    assert "usage: smtpgwctl blocked VERB" in r.out
    for verb in ("list", "add ADDR [--timeout SECONDS]", "del ADDR"):
        assert f"\n  {verb}\n" in r.out, verb
    r = box.ok("blocked", "add", "--help")
    assert r.out.startswith("usage: smtpgwctl blocked add ADDR [--timeout SECONDS]")
    assert "blocked-sites-exceptions" in r.out
    assert "blocked" in box.ok("--help").out


@pytest.mark.parametrize("args,message", [
    ((), "blocked: missing verb (list add del)"),
    (("flush",), 'blocked: unknown verb "flush" (list add del)'),
    (("list", "x"), "blocked list: unexpected arguments"),
    (("add",), "blocked add: expected ADDR"),
    (("add", "192.0.2.10", "192.0.2.11"), "blocked add: expected one ADDR"),
    (("add", "192.0.2.10", "--forever"), 'blocked add: unknown option "--forever"'),
    (("add", "192.0.2.10", "--timeout"), "blocked add: --timeout needs SECONDS"),
    (("add", "192.0.2.10", "--timeout", "0"),
     'blocked add: --timeout: "0" is not a number of seconds (1..1966020)'),
    (("add", "192.0.2.10", "--timeout", "060"),
     'blocked add: --timeout: "060" is not a number of seconds (1..1966020)'),
    (("add", "192.0.2.10", "--timeout", "10m"),
     'blocked add: --timeout: "10m" is not a number of seconds (1..1966020)'),
    (("add", "192.0.2.10", "--timeout", "-5"),
     'blocked add: --timeout: "-5" is not a number of seconds (1..1966020)'),
    (("add", "192.0.2.10", "--timeout="),
     'blocked add: --timeout: "" is not a number of seconds'),
    (("add", "192.0.2.10", "--timeout", "1966021"),
     "blocked add: --timeout: 1966021 is out of range (1..1966020 seconds)"),
    (("add", "192.0.2.10", "--timeout", "99999999999999999999"),
     "blocked add: --timeout: 99999999999999999999 is out of range"),
    (("add", "192.0.2.0/24"), 'blocked add: "192.0.2.0/24" is a prefix: give one address'),
    (("del",), "blocked del: expected ADDR"),
    (("del", "192.0.2.10", "192.0.2.11"), "blocked del: expected ADDR"),
])
def test_usage_errors(box, args, message):
    r = box.fails("blocked", *args, rc=2)
    assert message in r.err
    assert box.blocked() == {}


@pytest.mark.parametrize("addr", [
    "192.0.2", "192.0.2.10.1", "192.0.2.256", "192.0.2.010", "192.0.2.-1", " 192.0.2.10",
    "mx.ext.test", "2001:db8::1::2", "2001:db8:0:0:0:0:0:0:1", "1:2:3:4:5:6:7::8",
    "12345::1", "fe80::1%eth0", "2001:db8::g", ":192.0.2.1", "192.0.2.10 }", '192.0.2.10"',
    "192.0.2.10;", "",
])
def test_bad_addresses(box, addr):
    for verb in ("add", "del"):
        r = box.fails("blocked", verb, addr, rc=2)
        assert "is not an IPv4 or IPv6 address" in r.err or "expected ADDR" in r.err, r
        assert f"smtpgwctl blocked {verb} --help" in r.err
    assert box.blocked() == {}


@pytest.mark.parametrize("addr,why", [
    ("127.0.0.1", "a loopback address"),
    ("127.1.2.3", "a loopback address"),
    ("0.0.0.0", "an unspecified (0.0.0.0/8) address"),
    ("224.0.0.1", "a multicast address"),
    ("239.1.2.3", "a multicast address"),
    ("255.255.255.255", "the broadcast address"),
    ("::", "the unspecified address"),
    ("::1", "the loopback address"),
    ("0:0:0:0:0:0:0:1", "the loopback address"),
    ("ff02::1", "a multicast address"),
    ("::ffff:198.51.100.10", "an IPv4-mapped address (block the IPv4 address)"),
])
def test_never_blocked(box, addr, why):
    r = box.fails("blocked", "add", addr)
    assert f"blocked add: {addr} is {why}: never blocked" in r.err
    assert box.blocked() == {}


def test_add_list_del(box):
    r = box.ok("blocked", "list")
    assert "no address is blocked" in r.out
    assert "SYNs refused since the ruleset was loaded" not in r.out   # nothing loaded yet

    r = box.ok("blocked", "add", "198.51.100.10")
    assert "blocked 198.51.100.10 for 20m 0s: its new SMTP connections are refused" in r.out
    box.ok("blocked", "add", "2001:DB8:2::10", "--timeout", "90")
    box.ok("blocked", "add", "--timeout=3600", "203.0.113.7")
    assert box.blocked() == {
        "198.51.100.10": (1200, "smtpgwctl"),         # blocked-sites-timeout's default
        "2001:DB8:2::10": (90, "smtpgwctl"),
        "203.0.113.7": (3600, "smtpgwctl"),
    }
    # an address on the list gets the new time
    box.ok("blocked", "add", "203.0.113.7", "--timeout", "60")
    assert box.blocked()["203.0.113.7"] == (60, "smtpgwctl")

    # what the daemon added shows its reason and session
    until = int(time.time()) + 300
    with open(box.nft / "blocked", "a") as f:
        f.write(f"192.0.2.99\t{until}\t300\tsmtpgw reason=rcpt-rule.4 sid=4f2a91c0e1d3\n")
        f.write(f"192.0.2.98\t{until}\t300\t\n")

    box.ok("apply")                                    # the fake ruleset is loaded
    r = box.ok("blocked", "list")
    lines = r.out.splitlines()
    assert lines[0].split() == ["ADDRESS", "TIME-LEFT", "BLOCKED-FOR", "BY", "REASON", "SESSION"]
    rows = {c[0]: c for c in map(str.split, lines[1:]) if c and ("." in c[0] or ":" in c[0])}
    assert rows["198.51.100.10"][-5:] == ["20m", "0s", "admin", "-", "-"], rows
    assert rows["198.51.100.10"][1] in ("19m", "20m"), rows
    assert rows["2001:DB8:2::10"][-5:] == ["1m", "30s", "admin", "-", "-"], rows
    assert rows["192.0.2.99"][-3:] == ["smtpgw", "rcpt-rule.4", "4f2a91c0e1d3"], rows
    assert rows["192.0.2.98"][-3:] == ["-", "-", "-"], rows
    assert "5 blocked" in r.out
    assert "SYNs refused since the ruleset was loaded: 5" in r.out

    r = box.ok("blocked", "del", "198.51.100.10")
    assert "198.51.100.10 is no longer blocked" in r.out
    assert "198.51.100.10" not in box.blocked()
    r = box.fails("blocked", "del", "198.51.100.10")
    assert "blocked del: 198.51.100.10 is not on the blocked sites list" in r.err


def test_exceptions_of_the_active_configuration(box):
    box.ok("global", "set", "blocked-sites-exceptions", "192.0.2.0/24 2001:db8:1::/48")
    # staged only: the running gateway does not have them yet
    box.ok("blocked", "add", "192.0.2.10")
    box.ok("apply")
    box.ok("blocked", "del", "192.0.2.10")
    for addr, prefix in (("192.0.2.10", "192.0.2.0/24"), ("2001:db8:1::25", "2001:db8:1::/48"),
                         ("2001:DB8:1:FFFF::1", "2001:db8:1::/48")):
        r = box.fails("blocked", "add", addr)
        assert (f"blocked add: {addr} is inside blocked-sites-exceptions ({prefix}): never "
                "blocked") in r.err
    assert box.blocked() == {}
    box.ok("blocked", "add", "198.51.100.10")
    box.ok("blocked", "add", "2001:db8:2::25")
    assert set(box.blocked()) == {"198.51.100.10", "2001:db8:2::25"}


def test_default_time_of_the_active_configuration(box):
    box.ok("global", "set", "blocked-sites-timeout", "600")
    box.ok("blocked", "add", "198.51.100.10")
    assert box.blocked()["198.51.100.10"][0] == 1200        # staged, not active yet
    box.ok("apply")
    r = box.ok("blocked", "add", "198.51.100.10")
    assert "for 10m 0s" in r.out
    assert box.blocked()["198.51.100.10"][0] == 600


def test_loader_failures(box):
    (box.nft / "blocked-full").touch()
    r = box.fails("blocked", "add", "198.51.100.10")
    assert "the blocked sites list is full" in r.err
    assert "blocked add: 198.51.100.10 was not blocked (above)" in r.err
    (box.nft / "blocked-unloaded").touch()
    r = box.fails("blocked", "list")
    assert "the blocked sites list is not loaded" in r.err
    assert "cannot read the blocked sites list" in r.err
    r = box.fails("blocked", "del", "198.51.100.10")
    assert "blocked del: 198.51.100.10 was not removed (above)" in r.err


def test_without_loader_or_configuration(bare):
    r = bare.fails("blocked", "add", "198.51.100.10")
    assert "no active configuration" in r.err
    r = bare.fails("blocked", "list", env={"SMTPGW_NFT": "/nonexistent/smtpgw-nft"})
    assert "/nonexistent/smtpgw-nft not found" in r.err


# ---------------------------------------------------------------- smtpgw-nft

FAKE_NFT_BIN = r"""#!/bin/sh
# nft stand-in: canned listings, stdin and arguments logged.
d=$(dirname "$0")
echo "$*" >>"$d/nft.args"
case "$*" in
"-t list table inet smtpgw_blocked") [ -e "$d/loaded" ] || exit 1; echo "table inet smtpgw_blocked {" ;;
"-T list set inet smtpgw_blocked blocked4") cat "$d/set4" ;;
"-T list set inet smtpgw_blocked blocked6") cat "$d/set6" ;;
"-f -")
	cat >>"$d/nft.stdin"
	if [ -e "$d/full" ]; then
		echo "Error: Could not process rule: Too many open files in system" >&2; exit 1
	fi
	;;
delete*)
	[ -e "$d/missing" ] && { echo "Error: Could not process rule: No such file or directory" >&2; exit 1; }
	;;
esac
exit 0
"""

SET4 = """table inet smtpgw_blocked {
	set blocked4 {
		type ipv4_addr
		size 10000
		flags timeout
		elements = { 192.0.2.10 timeout 1200s expires 1187s comment "smtpgwctl",
			     198.51.100.10 timeout 100s expires 99s comment "smtpgw reason=max-errors sid=0123456789ab",
			     203.0.113.5, 203.0.113.6 timeout 1d2h3m4s expires 1m2s500ms comment "a, b }",
			     203.0.113.7 timeout 2s expires 500ms }
	}
}
"""
SET6 = """table inet smtpgw_blocked {
	set blocked6 {
		type ipv6_addr
		size 10000
		flags timeout
	}
}
"""


@pytest.fixture
def fake_nft(tmp_path):
    d = tmp_path / "fakenft"
    d.mkdir()
    (d / "nft").write_text(FAKE_NFT_BIN)
    (d / "nft").chmod(0o755)
    (d / "set4").write_text(SET4)
    (d / "set6").write_text(SET6)
    (d / "loaded").touch()
    env = dict(os.environ, PATH=f"{d}:{os.environ['PATH']}")

    def run(*args):
        return subprocess.run(["sh", str(REAL_NFT), *args], capture_output=True, text=True,
                              env=env, timeout=30)
    run.dir = d
    return run


def test_smtpgw_nft_parses_the_listing(fake_nft):
    r = fake_nft("blocked", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "192.0.2.10\t1187\t1200\tsmtpgwctl",
        "198.51.100.10\t99\t100\tsmtpgw reason=max-errors sid=0123456789ab",
        "203.0.113.5\t-\t-\t",
        "203.0.113.6\t62\t93784\ta, b }",
        "203.0.113.7\t0\t2\t",
    ]
    (fake_nft.dir / "loaded").unlink()
    r = fake_nft("blocked", "list")
    assert r.returncode == 1 and "the blocked sites list is not loaded" in r.stderr


def test_smtpgw_nft_add_and_del(fake_nft):
    r = fake_nft("blocked", "add", "2001:db8:2::10", "600", "smtpgwctl")
    assert r.returncode == 0, r.stderr
    assert (fake_nft.dir / "nft.stdin").read_text() == (
        "add element inet smtpgw_blocked blocked6 { 2001:db8:2::10 timeout 600s }\n"
        "delete element inet smtpgw_blocked blocked6 { 2001:db8:2::10 }\n"
        "add element inet smtpgw_blocked blocked6 { 2001:db8:2::10 timeout 600s "
        "comment \"smtpgwctl\" }\n")
    # nothing but an address, a number and a plain comment reaches nft
    for args in (("192.0.2.10 }", "60"), ("192.0.2.10", "6O"), ("192.0.2.10", "60", 'a"b'),
                 ("192.0.2.10", "60", "a;b")):
        r = fake_nft("blocked", "add", *args)
        assert r.returncode == 1, args
    assert (fake_nft.dir / "nft.stdin").read_text().count("\n") == 3
    (fake_nft.dir / "full").touch()
    r = fake_nft("blocked", "add", "192.0.2.10", "60")
    assert r.returncode == 1 and "the blocked sites list is full" in r.stderr

    r = fake_nft("blocked", "del", "192.0.2.10")
    assert r.returncode == 0, r.stderr
    assert "delete element inet smtpgw_blocked blocked4 { 192.0.2.10 }" in \
        (fake_nft.dir / "nft.args").read_text()
    (fake_nft.dir / "missing").touch()
    r = fake_nft("blocked", "del", "192.0.2.10")
    assert r.returncode == 3 and "192.0.2.10 is not on the blocked sites list" in r.stderr
    r = fake_nft("blocked", "frobnicate")
    assert r.returncode == 2
