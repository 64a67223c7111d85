"""zone list|show|add|set|set-interface|del, staged until apply."""

from conftest import needs_daemon

pytestmark = needs_daemon


def rows(out):
    """Table rows (header skipped) as lists of columns."""
    return [l.split() for l in out.splitlines()[1:]]


def test_default_zones_from_the_board(box):
    r = box.ok("zone", "list")
    assert r.out.splitlines()[0].split() == ["ZONE", "EXTERNAL", "INTERFACES", "POLICIES"]
    assert rows(r.out) == [
        ["trusted", "no", "lan0,lan1", "SMTP-Proxy-In,SMTP-Proxy-Out"],
        ["external", "yes", "wan0", "SMTP-Proxy-In,SMTP-Proxy-Out"],
    ]


def test_show(box):
    r = box.ok("zone", "show", "external")
    assert "[zone external]" in r.out
    assert "interfaces = wan0" in r.out and "external = yes" in r.out
    assert "used by policies: SMTP-Proxy-In,SMTP-Proxy-Out" in r.out
    r = box.fails("zone", "show", "nowhere")
    assert 'zone "nowhere" does not exist (there are: trusted external)' in r.err


def test_add_is_staged_not_active(box):
    active = box.conf.read_text()
    r = box.ok("zone", "add", "dmz")
    assert "staged" in r.out
    assert box.conf.read_text() == active
    assert "[zone dmz]\nexternal = no\n" in box.staged.read_text()
    assert ["dmz", "no", "-", "-"] in rows(box.ok("zone", "list").out)


def test_add_external(box):
    box.ok("zone", "add", "isp2", "--external")
    assert ["isp2", "yes", "-", "-"] in rows(box.ok("zone", "list").out)


def test_add_errors(box):
    assert 'zone "trusted" already exists' in box.fails("zone", "add", "trusted").err
    assert "is not a valid zone name" in box.fails("zone", "add", "bad/name", rc=2).err
    assert "is not a valid zone name" in box.fails("zone", "add", "-x", rc=2).err
    assert '"any" is reserved' in box.fails("zone", "add", "any", rc=2).err
    assert not box.staged.exists()


def test_set_interface_moves_it(box):
    box.ok("zone", "add", "dmz")
    box.ok("zone", "set-interface", "lan1", "dmz")
    box.ok("zone", "set-interface", "eth9", "dmz")
    r = rows(box.ok("zone", "list").out)
    assert r[0][:3] == ["trusted", "no", "lan0"]
    assert ["dmz", "no", "lan1,eth9", "-"] in r
    box.ok("zone", "set-interface", "lan1", "trusted")
    assert rows(box.ok("zone", "list").out)[0][2] == "lan0,lan1"


def test_set_interface_none(box):
    box.ok("zone", "set-interface", "lan1", "none")
    assert rows(box.ok("zone", "list").out)[0][2] == "lan0"
    assert "lan1" not in box.staged.read_text()


def test_set_interface_errors(box):
    r = box.fails("zone", "set-interface", "lan0", "dmz")
    assert 'zone "dmz" does not exist' in r.err
    r = box.fails("zone", "set-interface", "bad,if", "trusted", rc=2)
    assert "not a valid interface name" in r.err
    r = box.fails("zone", "set-interface", "averyveryverylongname", "trusted", rc=2)
    assert "longer than 15 characters" in r.err


def test_set_external(box):
    box.ok("zone", "set", "trusted", "external", "yes")
    assert rows(box.ok("zone", "list").out)[0][1] == "yes"
    assert '"maybe" is not yes or no' in box.fails("zone", "set", "trusted", "external", "maybe",
                                                   rc=2).err
    assert 'the only key is "external"' in box.fails("zone", "set", "trusted", "colour", "red",
                                                     rc=2).err


def test_del_unused(box):
    box.ok("zone", "add", "dmz")
    box.ok("zone", "set-interface", "eth2", "dmz")
    box.ok("zone", "del", "dmz")
    assert "dmz" not in box.ok("zone", "list").out
    assert "[zone dmz]" not in box.staged.read_text()


def test_del_in_use_names_the_policies(box):
    r = box.fails("zone", "del", "trusted")
    assert "zone trusted is used by policies SMTP-Proxy-In,SMTP-Proxy-Out" in r.err
    assert "policy set" in r.err
    assert not box.staged.exists()
