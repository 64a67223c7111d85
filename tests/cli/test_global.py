"""global show|set|unset."""

from conftest import needs_daemon

pytestmark = needs_daemon


def test_show_has_defaults(box):
    r = box.ok("global", "show").out
    assert r.startswith("[global]\n")
    for line in ("listen-port = 10025", "log = syslog", "max-sessions = 2000",
                 f"tls-dir = {box.tls}"):
        assert line in r


def test_set_and_unset(box):
    box.ok("global", "set", "max-sessions", "50")
    assert "max-sessions = 50" in box.ok("global", "show").out
    assert "max-sessions = 50" in box.staged.read_text()
    box.ok("global", "unset", "max-sessions")
    assert "max-sessions = 2000" in box.ok("global", "show").out
    assert "max-sessions" not in box.staged.read_text()


def test_set_checked(box):
    r = box.fails("global", "set", "max-sessions", "0", rc=2)
    assert "max-sessions: 0 is out of range (1..1000000)" in r.err
    r = box.fails("global", "set", "colour", "red", rc=2)
    assert 'global set: unknown key "colour"' in r.err and "listen-port" in r.err


def test_restart_keys_say_so(box):
    r = box.ok("global", "set", "listen-port", "10026")
    assert "changes only when smtpgw restarts" in r.out


def test_set_creates_global_before_everything(box):
    box.conf.write_text("# hand written\n\n[zone trusted]\ninterfaces = lan0\n\n"
                        "[zone external]\ninterfaces = wan0\n")
    box.ok("global", "set", "workers", "3")
    text = box.staged.read_text()
    assert text.index("[global]\nworkers = 3") < text.index("[zone trusted]")
