"""apply: validate, activate, reload the daemon (confirmed by its status
file), load the ruleset, roll everything back on failure; and status.

The daemon is fake_smtpgw.py (same pidfile, status file and SIGHUP
behaviour as the real master); the ruleset loader is the fake from
conftest.py.  The real daemon is exercised in tests/e2e/test_config_*.
"""

from conftest import needs_daemon

pytestmark = needs_daemon


def stage_required(box):
    box.ok("policy", "set", "SMTP-Proxy-Out", "tls-support", "required")
    return box.staged.read_text()


def test_apply_without_daemon(box):
    old = box.conf.read_text()
    new = stage_required(box)
    r = box.ok("apply")
    assert "smtpgw is not running" in r.out and "ruleset loaded" in r.out
    assert box.conf.read_text() == new
    assert box.prev.read_text() == old
    assert not box.staged.exists()
    assert box.nft_loads() == [f"-c {box.conf} load"]
    assert (box.nft / "loaded.conf").read_text() == new


def test_apply_reloads_the_daemon(box):
    box.start_daemon()
    new = stage_required(box)
    r = box.ok("apply")
    assert "smtpgw reloaded it (generation 2)" in r.out
    st = box.status()
    assert (st["generation"], st["reloads"], st["reload-result"]) == ("2", "1", "ok")
    assert box.loaded_by_daemon() == new


def test_unchanged_ruleset_is_not_reloaded(box):
    box.ok("apply")                        # first load
    assert len(box.nft_loads()) == 1
    stage_required(box)                    # policies are not in the ruleset
    assert "ruleset unchanged" in box.ok("apply").out
    assert len(box.nft_loads()) == 1
    box.ok("zone", "set-interface", "lan1", "none")   # interfaces are
    assert "ruleset loaded" in box.ok("apply").out
    assert len(box.nft_loads()) == 2


def test_apply_replaces_the_fail_closed_ruleset(box):
    """A box that booted without a usable configuration runs the fail-closed
    ruleset (counter "failclosed", initramfs/rootfs/usr/share/smtpgw): apply
    loads the interception ruleset even when its rendering did not change."""
    box.ok("apply")
    assert len(box.nft_loads()) == 1
    (box.nft / "failclosed").touch()
    r = box.ok("apply")
    assert "ruleset loaded" in r.out, r
    assert len(box.nft_loads()) == 2
    assert not (box.nft / "failclosed").exists()


def test_status_says_fail_closed(box):
    box.start_daemon()
    box.ok("apply")
    (box.nft / "failclosed").touch()
    r = box.fails("status")
    assert "ruleset: FAIL-CLOSED (the box booted without a usable configuration)" in r.out
    assert "failclosed:     3" in r.out
    box.stop_daemon()
    box.conf.unlink()           # as on a box that booted without one
    r = box.fails("status")
    assert "ruleset: FAIL-CLOSED" in r.out and "failclosed:     3" in r.out


def test_apply_with_nothing_staged_reloads_the_active(box):
    box.start_daemon()
    r = box.ok("apply")
    assert "no staged changes: reloading the active configuration" in r.out
    assert box.status()["generation"] == "2"
    assert not box.prev.exists()


def test_invalid_staged_is_refused_and_nothing_changes(box):
    box.start_daemon()
    old = box.conf.read_text()
    box.staged.write_text(old.replace("from = external", "from = mars"))
    r = box.fails("apply")
    assert 'from: zone "mars" is not defined' in r.err and f"{box.staged}:" in r.err
    assert "nothing was changed" in r.err
    assert box.conf.read_text() == old
    assert box.status()["reloads"] == "0"
    assert box.nft_loads() == []
    assert box.staged.exists()


def test_ruleset_failure_rolls_everything_back(box):
    box.start_daemon()
    old = box.conf.read_text()
    box.ok("zone", "set-interface", "lan1", "none")
    staged = box.staged.read_text()
    (box.nft / "fail-load").touch()           # the next load fails, once
    r = box.fails("apply")
    assert "apply failed at the ruleset load" in r.err
    assert "injected failure" in r.err
    assert "smtpgw runs the previous configuration again" in r.err
    assert "the previous ruleset is loaded again" in r.err
    assert box.conf.read_text() == old
    assert box.staged.read_text() == staged
    assert not box.prev.exists()
    # The daemon took the new file, then the old one again.
    st = box.status()
    assert (st["reloads"], st["generation"], st["reload-result"]) == ("2", "3", "ok")
    assert box.loaded_by_daemon() == old
    assert box.nft_loads() == [f"-c {box.conf} load"] * 2
    assert (box.nft / "loaded.conf").read_text() == old


def test_rollback_that_cannot_finish_says_so(box):
    box.ok("zone", "set-interface", "lan1", "none")
    (box.nft / "fail-always").touch()
    r = box.fails("apply")
    assert "ROLLBACK INCOMPLETE: the previous ruleset did not load" in r.err


def test_daemon_rejection_rolls_back(box):
    box.start_daemon()
    old = box.conf.read_text()
    stage_required(box)
    (box.run_dir / "reject-next").write_text("simulated: cannot read the file")
    r = box.fails("apply")
    assert "apply failed at the reload of smtpgw: rejected: simulated: cannot read the file" in r.err
    assert "smtpgw kept the configuration it was running" in r.err
    assert box.conf.read_text() == old
    st = box.status()
    assert (st["reloads"], st["generation"]) == ("1", "1")    # no second SIGHUP
    assert box.nft_loads() == []


def test_unconfirmed_reload_rolls_back(box):
    box.start_daemon()
    old = box.conf.read_text()
    stage_required(box)
    (box.run_dir / "mute").touch()
    r = box.fails("apply", env={"SMTPGW_RELOAD_WAIT": "1"})
    assert "did not report the reload within 1 s" in r.err
    assert box.conf.read_text() == old


def test_daemon_without_status_file_is_refused(box):
    box.start_daemon(status=False)
    old = box.conf.read_text()
    stage_required(box)
    r = box.fails("apply")
    assert "keeps no status file" in r.err and "-s " in r.err and "nothing was changed" in r.err
    assert box.conf.read_text() == old


def test_restart_only_change_refused_while_running(box):
    box.start_daemon()
    box.ok("global", "set", "listen-port", "10026")
    r = box.fails("apply")
    assert "these change only when smtpgw restarts: listen-port 10025 -> 10026" in r.err
    assert "stop smtpgw, run smtpgwctl apply, start smtpgw" in r.err
    box.stop_daemon()
    box.ok("apply")
    assert "listen-port = 10026" in box.conf.read_text()


# ---------------------------------------------------------------- status

def test_status_running(box):
    box.start_daemon()
    box.ok("apply")
    r = box.ok("status")
    assert "smtpgw: running (pid" in r.out and "version 0.1.0-fake" in r.out
    assert "generation 2" in r.out
    assert "last reload:    ok at" in r.out
    assert "classifier:     running" in r.out
    assert "workers:        2 of 2 running" in r.out
    assert "sessions now:   0" in r.out
    assert "since start:    1 reloads, 0 child deaths, 0 respawns" in r.out
    assert "ruleset: loaded" in r.out and "intercepted:    7" in r.out and "rejected:       2" in r.out
    assert "configuration: no staged changes" in r.out
    seq = int(box.status()["seq"])
    box.ok("status")
    assert int(box.status()["seq"]) > seq        # SIGUSR2 asked for a fresh one


def test_status_not_running(box):
    box.ok("zone", "add", "dmz")
    r = box.fails("status")
    assert "smtpgw: not running" in r.out
    assert "ruleset: not loaded" in r.out
    assert "configuration: changes staged, not applied" in r.out


def test_status_reports_a_missing_classifier(box):
    box.start_daemon()
    text = box.statusfile.read_text().replace("classifier=running", "classifier=down")
    box.statusfile.write_text(text)
    (box.run_dir / "mute").touch()
    r = box.fails("status")
    assert "classifier:     down" in r.out
