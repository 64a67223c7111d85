"""policy list|show|add|set|enable|disable|move|del."""

import pytest

from conftest import needs_daemon

pytestmark = needs_daemon


def table(out):
    lines = out.splitlines()
    head = lines[0].split()
    return [dict(zip(head, l.split())) for l in lines[1:]]


def names(box):
    return [r["POLICY"] for r in table(box.ok("policy", "list").out)]


def test_default_policies(box):
    t = table(box.ok("policy", "list").out)
    assert [(r["#"], r["POLICY"], r["FROM"], r["TO"], r["ACTION"], r["TLS-SUPPORT"],
             r["PORTS"], r["ENABLED"]) for r in t] == [
        ("1", "SMTP-Proxy-In", "external", "trusted", "SMTP-Incoming.Standard", "enabled",
         "25,465", "yes"),
        ("2", "SMTP-Proxy-Out", "trusted", "external", "SMTP-Outgoing.Standard", "enabled",
         "25,465", "yes"),
    ]


@pytest.mark.parametrize("value,ports", [("disabled", "25"), ("enabled", "25,465"),
                                         ("required", "465")])
def test_tls_support_decides_the_ports(box, value, ports):
    box.ok("policy", "set", "SMTP-Proxy-Out", "tls-support", value)
    r = table(box.ok("policy", "list").out)[1]
    assert (r["TLS-SUPPORT"], r["PORTS"]) == (value, ports)
    assert f"tls-support = {value}" in box.staged.read_text()


def test_tls_support_disabled_warns_with_location(box):
    r = box.ok("policy", "set", "SMTP-Proxy-In", "tls-support", "disabled")
    assert "smtpgw.conf.staged:" in r.err and ": warning: policy SMTP-Proxy-In has TLS Support disabled" in r.err


def test_bad_tls_support(box):
    r = box.fails("policy", "set", "SMTP-Proxy-In", "tls-support", "sometimes", rc=2)
    assert 'TLS Support "sometimes" is not disabled, enabled or required' in r.err


def test_add_with_everything(box):
    box.ok("zone", "add", "dmz")
    box.ok("zone", "set-interface", "eth2", "dmz")
    r = box.ok("policy", "add", "Dmz-Out", "--from", "dmz,trusted", "--to", "external",
               "--action", "SMTP-Outgoing.Standard", "--tls-support", "disabled",
               "--src", "203.0.113.0/24,2001:db8::/32", "--dst", "198.51.100.0/24",
               "--disabled", "--position", "1")
    assert "policy Dmz-Out added at position 1" in r.out
    first = table(box.ok("policy", "list").out)[0]
    assert first == {"#": "1", "POLICY": "Dmz-Out", "ENABLED": "no", "FROM": "dmz,trusted",
                     "TO": "external", "SRC": "203.0.113.0/24,2001:db8::/32",
                     "DST": "198.51.100.0/24", "TYPE": "proxy",
                     "ACTION": "SMTP-Outgoing.Standard", "TLS-SUPPORT": "disabled",
                     "PORTS": "25"}
    show = box.ok("policy", "show", "Dmz-Out").out
    assert "from = dmz trusted" in show and "position 1 of 3" in show
    assert "tls-action inspect" in show


def test_add_last_by_default_and_packet_filter(box):
    box.ok("policy", "add", "Bypass", "--from", "any", "--to", "any", "--type", "packet-filter")
    t = table(box.ok("policy", "list").out)
    assert (t[-1]["POLICY"], t[-1]["TYPE"], t[-1]["ACTION"]) == ("Bypass", "packet-filter", "-")


def test_add_errors(box):
    base = ["--from", "trusted", "--to", "external", "--action", "SMTP-Outgoing.Standard"]
    assert 'policy "SMTP-Proxy-Out" already exists' in box.fails(
        "policy", "add", "SMTP-Proxy-Out", *base).err
    r = box.fails("policy", "add", "P", "--from", "dmz", "--to", "external",
                  "--action", "SMTP-Outgoing.Standard")
    assert 'zone "dmz" does not exist (zones: trusted external; add one: smtpgwctl zone add dmz)' in r.err
    r = box.fails("policy", "add", "P", "--from", "trusted", "--to", "external", "--action", "Nope")
    assert 'proxy action "Nope" does not exist (there are: SMTP-Incoming.Standard SMTP-Outgoing.Standard)' in r.err
    r = box.fails("policy", "add", "P", *base, "--position", "9")
    assert "position 9 is out of range (1..3)" in r.err
    r = box.fails("policy", "add", "P", "--from", "trusted", "--to", "external", rc=2)
    assert "--action ACTION is required" in r.err
    r = box.fails("policy", "add", "P", "--from", "any,trusted", "--to", "external",
                  "--action", "SMTP-Outgoing.Standard", rc=2)
    assert '"any" cannot be combined' in r.err
    r = box.fails("policy", "add", "P", "--from", "trusted", "--to", "any", "--type",
                  "packet-filter", "--action", "SMTP-Outgoing.Standard", rc=2)
    assert "takes no --action" in r.err
    assert not box.staged.exists()


def test_bad_prefix_is_refused(box):
    r = box.fails("policy", "add", "P", "--from", "trusted", "--to", "external",
                  "--action", "SMTP-Outgoing.Standard", "--src", "203.0.113.1/24", rc=2)
    assert r.err == ('smtpgwctl: --src: "203.0.113.1/24" has host bits set '
                     '(the address of a /24 ends in zero bits)\n')
    assert not box.staged.exists()


def test_tls_support_needs_an_inspecting_action(box):
    box.ok("action", "clone", "SMTP-Outgoing.Standard", "Out-Allow")
    box.ok("action", "set", "Out-Allow", "tls-action", "allow")
    before = box.staged.read_text()
    r = box.fails("policy", "set", "SMTP-Proxy-Out", "action", "Out-Allow")
    assert "TLS Support enabled needs content inspection" in r.err
    assert "set tls-action = inspect, or tls-support = disabled" in r.err
    assert box.staged.read_text() == before
    box.ok("policy", "set", "SMTP-Proxy-Out", "tls-support", "disabled")
    box.ok("policy", "set", "SMTP-Proxy-Out", "action", "Out-Allow")
    assert table(box.ok("policy", "list").out)[1]["ACTION"] == "Out-Allow"


def test_set_keys(box):
    box.ok("policy", "set", "SMTP-Proxy-In", "src", "198.51.100.0/24, 2001:db8:2::/64")
    box.ok("policy", "set", "SMTP-Proxy-In", "dst", "192.0.2.25")
    box.ok("policy", "set", "SMTP-Proxy-In", "from", "external,trusted")
    r = table(box.ok("policy", "list").out)[0]
    assert (r["SRC"], r["DST"], r["FROM"]) == ("198.51.100.0/24,2001:db8:2::/64",
                                               "192.0.2.25/32", "external,trusted")
    box.ok("policy", "set", "SMTP-Proxy-In", "src", "any")
    assert table(box.ok("policy", "list").out)[0]["SRC"] == "any"
    assert "src =" not in box.staged.read_text()
    box.ok("policy", "set", "SMTP-Proxy-In", "enabled", "off")
    assert table(box.ok("policy", "list").out)[0]["ENABLED"] == "no"
    r = box.fails("policy", "set", "SMTP-Proxy-In", "colour", "red", rc=2)
    assert 'unknown key "colour" (from, to, src, dst, action, tls-support, enabled, type)' in r.err
    r = box.fails("policy", "set", "Ghost", "enabled", "yes")
    assert 'policy "Ghost" does not exist (there are: SMTP-Proxy-In SMTP-Proxy-Out)' in r.err


def test_enable_disable(box):
    box.ok("policy", "disable", "SMTP-Proxy-Out")
    assert table(box.ok("policy", "list").out)[1]["ENABLED"] == "no"
    box.ok("policy", "enable", "SMTP-Proxy-Out")
    assert table(box.ok("policy", "list").out)[1]["ENABLED"] == "yes"


def test_move(box):
    for n in ("A", "B"):
        box.ok("policy", "add", n, "--from", "trusted", "--to", "external",
               "--action", "SMTP-Outgoing.Standard")
    assert names(box) == ["SMTP-Proxy-In", "SMTP-Proxy-Out", "A", "B"]
    box.ok("policy", "move", "B", "first")
    assert names(box) == ["B", "SMTP-Proxy-In", "SMTP-Proxy-Out", "A"]
    box.ok("policy", "move", "B", "3")
    assert names(box) == ["SMTP-Proxy-In", "SMTP-Proxy-Out", "B", "A"]
    box.ok("policy", "move", "SMTP-Proxy-In", "last")
    assert names(box) == ["SMTP-Proxy-Out", "B", "A", "SMTP-Proxy-In"]
    box.ok("policy", "move", "A", "2")
    assert names(box) == ["SMTP-Proxy-Out", "A", "B", "SMTP-Proxy-In"]
    box.ok("policy", "move", "A", "2")
    assert names(box) == ["SMTP-Proxy-Out", "A", "B", "SMTP-Proxy-In"]
    # Comments above a policy travel with it.
    text = box.staged.read_text()
    assert "# Mail from the Internet to the servers inside.\n[policy SMTP-Proxy-In]" in text
    assert "out of range (1..4)" in box.fails("policy", "move", "A", "5").err
    assert "out of range (1..4)" in box.fails("policy", "move", "A", "0").err
    assert "is not a number" in box.fails("policy", "move", "A", "up", rc=2).err


def test_del(box):
    box.ok("policy", "del", "SMTP-Proxy-In")
    assert names(box) == ["SMTP-Proxy-Out"]
    assert "Mail from the Internet" not in box.staged.read_text()
    assert 'policy "SMTP-Proxy-In" does not exist' in box.fails("policy", "del", "SMTP-Proxy-In").err
