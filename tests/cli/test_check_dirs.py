"""smtpgw -t checks the directories a start or a reload makes or uses.

`spool-dir` must be a directory (not a symbolic link, which the daemon
refuses: it could point the workers' files anywhere) or be missing with
a directory to make it in (its missing parents are made too: the
appliance's /var/spool is in RAM); so must `tls-dir` (made at the first
start, with one mkdir).
`smtpgw -t` did not look: a regular file as spool-dir, or a tls-dir
under a directory that does not exist, passed every smtpgwctl check and
`apply`'s validation, and only the daemon's reload refused it (a start
with it fails: on a box, after a reboot, no SMTP at all).  Now the
change is refused when it is made, nothing staged.
"""

from conftest import needs_daemon

pytestmark = needs_daemon

def test_spool_dir_that_is_a_file_is_refused(box):
    f = box.root / "a-file"
    f.write_text("x")
    r = box.fails("global", "set", "spool-dir", f)
    assert f"spool-dir {f} is not a directory" in r.err, r
    assert not box.staged.exists()

def test_spool_dir_that_is_a_symlink_is_refused(box):
    d = box.root / "real"
    d.mkdir()
    (box.root / "link").symlink_to(d)
    r = box.fails("global", "set", "spool-dir", box.root / "link")
    assert "is not a directory" in r.err, r
    assert not box.staged.exists()

def test_directories_that_can_be_made_are_taken(box):
    box.ok("global", "set", "spool-dir", box.root / "spool")      # missing, parent there
    box.ok("global", "set", "tls-dir", box.root / "tls-new")
    (box.root / "made").mkdir()
    box.ok("global", "set", "spool-dir", box.root / "made")
    box.ok("check")

def test_tls_dir_without_a_parent_is_refused(box):
    r = box.fails("global", "set", "tls-dir", box.root / "no" / "such" / "tls")
    assert f"tls-dir {box.root}/no/such/tls cannot be created: {box.root}/no/such is not a " \
           "directory" in r.err, r
    assert not box.staged.exists()

def test_spool_dir_with_missing_parents_is_taken_but_not_under_a_file(box):
    box.ok("global", "set", "spool-dir", box.root / "var" / "spool" / "smtpgw")
    (box.root / "plain").write_text("x")
    r = box.fails("global", "set", "spool-dir", box.root / "plain" / "spool" / "smtpgw")
    assert f"spool-dir {box.root}/plain/spool/smtpgw cannot be created: {box.root}/plain " \
           "is not a directory" in r.err, r

def test_spool_dir_holding_other_files_is_refused(box):
    """spool-dir = /etc would hand /etc to the workers' group (root's,
    their group, 0770): a directory that holds files is taken only when
    it is already smtpgw's, and "." or ".." in the path never."""
    import os
    import pytest
    if os.geteuid() != 0:
        pytest.skip("smtpgw checks ownership only as root (as it prepares it only as root)")
    r = box.fails("global", "set", "spool-dir", "/etc")
    assert "spool-dir: /etc: not empty and not smtpgw's" in r.err, r
    r = box.fails("global", "set", "spool-dir", box.root / "spool" / ".." / "etc")
    assert '"." and ".." are not taken' in r.err, r
    assert not box.staged.exists()
