"""status says when the signer is down, and exits 1.

The signer forges the certificate of every outbound inspected TLS
session; when it is down (left down after too many respawns, or its
respawn refused because the Proxy Authority key was replaced without an
apply) every such session fails.  The daemon's status file says
`signer=down`; `smtpgwctl status` used to show every other child and
exit 0 ("a child is missing" is what exit 1 is for, smtpgwctl(8)).  It
shows the signer's state, running with its pid, and exits 1 when it is
down.  The daemon is fake_smtpgw.py, which writes the real status file's
fields.
"""

from conftest import needs_daemon

pytestmark = needs_daemon


def test_status_shows_a_running_signer(box):
    box.start_daemon()
    r = box.ok("status")
    assert f"signer:         running (pid {box.status()['signer-pid']})" in r.out


def test_status_reports_a_signer_that_is_down(box):
    box.start_daemon()
    text = box.statusfile.read_text().replace("signer=running", "signer=down")
    box.statusfile.write_text(text.replace(f"signer-pid={box.status()['signer-pid']}",
                                           "signer-pid=0"))
    (box.run_dir / "mute").touch()
    r = box.fails("status")
    assert "signer:         down: forged certificates fail" in r.out
    assert "classifier:     running" in r.out     # the rest is still shown
