"""A bad change is refused by `smtpgwctl apply`, and the old configuration
keeps serving.

Two kinds of bad change, on SMTP-Proxy-Out (outbound, int-client to
ext-mx), whose TLS Support is `enabled` (25 and 465 intercepted):

1. Invalid: the staged file is edited by hand so that it does not parse
   (a policy names a zone that does not exist) and sets TLS Support
   `required`.  `apply` refuses it before touching anything: exit 1, the
   daemon's FILE:LINE message, the active file, the daemon's generation
   and the ruleset unchanged, the staged file kept for fixing.
2. Valid but failing on the way in: TLS Support `required` plus a new
   interface in zone trusted, applied with a ruleset loader that fails
   (SMTPGW_NFT pointing at a wrapper whose first `load` fails).  The
   daemon has already reloaded the new file when the load fails; apply
   rolls back: the old file is active again, the daemon reloads it
   (generation moves twice, last reload ok), the old ruleset is loaded.

After each, mail still flows outbound on port 25 (delivered to ext-mx,
logged under SMTP-Proxy-Out): with `required`, port 25 would have been
reset.  Finally the same change is applied with the real loader and port
25 is reset - the change itself was fine.
"""

from conftest import flow, random_lport
from gwctl import gwctl, wait_reject  # noqa: F401 (fixture)

FAILING_LOADER = """#!/bin/sh
# smtpgw-nft whose first "load" fails (test_config_bad_apply.py)
case $3 in
load) if [ ! -e "$0.failed" ]; then : >"$0.failed"; echo "injected: nft says no" >&2; exit 1; fi ;;
esac
exec smtpgw-nft "$@"
"""


def port25_intercepted(tb, fl):
    off = tb.log_offset()
    lport = random_lport()
    r = tb.probe(fl.client, fl.server_addr, 25, connect_timeout=2.0, read_timeout=5.0,
                 lport=lport)
    assert r["connect"] == "ok" and r["data"].startswith("220"), r
    _, f = tb.wait_for_session(off, fl.client_addr, lport)
    assert f["policy"] == fl.policy


def test_bad_changes_are_refused_and_the_old_config_serves(testbed, gwctl):
    fl = flow("outbound", 4)
    st0 = gwctl.status()
    active0 = gwctl.active.read_text()
    nft0 = testbed.exec("gw", "smtpgw-nft", "status").stdout

    # 1. Invalid by hand: refused before anything changes.
    bad = active0.replace("[policy SMTP-Proxy-Out]\n", "[policy SMTP-Proxy-Out]\n"
                          "tls-support = required\n").replace("from = trusted", "from = lan", 1)
    assert bad != active0
    gwctl.staged.write_text(bad)
    r = gwctl.fails("check")
    assert 'zone "lan" is not defined' in r.stderr
    r = gwctl.fails("apply")
    assert f"{gwctl.staged}:" in r.stderr and 'zone "lan" is not defined' in r.stderr
    assert "nothing was changed" in r.stderr
    assert gwctl.active.read_text() == active0
    assert gwctl.status()["generation"] == st0["generation"]
    assert gwctl.status()["reloads"] == st0["reloads"]
    assert testbed.exec("gw", "smtpgw-nft", "status").stdout == nft0
    assert gwctl.staged.read_text() == bad
    port25_intercepted(testbed, fl)
    testbed.send_and_wait(fl)
    gwctl.ok("discard")

    # 2. Valid, but the ruleset load fails after the daemon reloaded.
    gwctl.ok("policy", "set", "SMTP-Proxy-Out", "tls-support", "required")
    gwctl.ok("zone", "set-interface", "lan9", "trusted")
    staged = gwctl.staged.read_text()
    loader = gwctl.etc.parent.parent / "failing-smtpgw-nft"
    loader.with_name(loader.name + ".failed").unlink(missing_ok=True)
    loader.write_text(FAILING_LOADER)
    loader.chmod(0o755)
    r = gwctl.fails("apply", env={"SMTPGW_NFT": loader})
    err = r.stderr
    assert "apply failed at the ruleset load" in err and "injected: nft says no" in err
    assert "smtpgw runs the previous configuration again" in err
    assert "the previous ruleset is loaded again" in err
    assert gwctl.active.read_text() == active0
    assert gwctl.staged.read_text() == staged
    st = gwctl.status()
    assert int(st["generation"]) == int(st0["generation"]) + 2, st
    assert st["reload-result"] == "ok"
    assert "lan9" not in testbed.exec("gw", "smtpgw-nft", "status").stdout
    port25_intercepted(testbed, fl)
    testbed.send_and_wait(fl)

    # The change itself was fine: with the real loader it applies, and
    # port 25 is reset from then on.
    gwctl.apply()
    off = testbed.log_offset()
    r = testbed.probe(fl.client, fl.server_addr, 25, connect_timeout=2.0)
    assert r["connect"] == "refused", r
    wait_reject(testbed, off, fl.client_addr, 25)
