"""Proxy actions and TLS profiles: list|show|clone|set|del, action view."""

import pytest

from conftest import needs_daemon

pytestmark = needs_daemon


def table(out):
    lines = out.splitlines()
    head = lines[0].split()
    return [dict(zip(head, l.split())) for l in lines[1:]]


def test_list_predefined(box):
    t = table(box.ok("action", "list").out)
    assert [(r["ACTION"], r["TYPE"], r["TLS-ACTION"], r["TLS-PROFILE"], r["POLICIES"])
            for r in t] == [
        ("SMTP-Incoming.Standard", "predefined", "inspect", "TLS-SMTP.Standard", "SMTP-Proxy-In"),
        ("SMTP-Outgoing.Standard", "predefined", "inspect", "TLS-SMTP.Standard", "SMTP-Proxy-Out"),
    ]
    t = table(box.ok("tls-profile", "list").out)
    assert [(r["TLS-PROFILE"], r["TYPE"], r["MIN-VERSION"], r["ACTIONS"]) for r in t] == [
        ("TLS-SMTP.Standard", "predefined", "1.2",
         "SMTP-Incoming.Standard,SMTP-Outgoing.Standard")]


def test_show_predefined_has_every_setting(box):
    r = box.ok("action", "show", "SMTP-Incoming.Standard").out
    assert r.startswith("[action SMTP-Incoming.Standard]\n# predefined, read-only")
    for line in ("tls-action = inspect", "tls-profile = TLS-SMTP.Standard",
                 "max-message-size = 52428800", "used by policies: SMTP-Proxy-In"):
        assert line in r
    r = box.ok("tls-profile", "show", "TLS-SMTP.Standard").out
    assert "min-version = 1.2" in r and "on-expired = untrusted-sign" in r


@pytest.mark.parametrize("noun,name,hint", [
    ("action", "SMTP-Incoming.Standard", "action clone SMTP-Incoming.Standard NEW-NAME"),
    ("action", "SMTP-Outgoing.Standard", "action clone SMTP-Outgoing.Standard NEW-NAME"),
    ("tls-profile", "TLS-SMTP.Standard", "tls-profile clone TLS-SMTP.Standard NEW-NAME"),
])
def test_predefined_are_read_only(box, noun, name, hint):
    r = box.fails(noun, "set", name, "max-recipients" if noun == "action" else "ocsp", "no")
    assert f"{name} is predefined and read-only" in r.err and hint in r.err
    r = box.fails(noun, "del", name)
    assert f"{name} is predefined and cannot be deleted" in r.err
    assert not box.staged.exists()


def test_clone_copies_every_setting(box):
    box.ok("action", "clone", "SMTP-Incoming.Standard", "In-Small")
    text = box.staged.read_text()
    assert "[action In-Small]\n# cloned from SMTP-Incoming.Standard\ntls-action = inspect\n" in text
    assert "timeout-server-data-end = 600" in text
    t = table(box.ok("action", "list").out)
    assert t[-1]["ACTION"] == "In-Small" and t[-1]["TYPE"] == "custom" and t[-1]["POLICIES"] == "-"
    assert 'proxy action "In-Small" already exists' in box.fails(
        "action", "clone", "SMTP-Outgoing.Standard", "In-Small").err
    assert 'proxy action "Nope" does not exist' in box.fails("action", "clone", "Nope", "X").err
    assert "not a valid proxy action name" in box.fails(
        "action", "clone", "SMTP-Incoming.Standard", "a b", rc=2).err


def test_set_custom(box):
    box.ok("action", "clone", "SMTP-Incoming.Standard", "In-Small")
    box.ok("action", "set", "In-Small", "max-message-size", "10485760")
    assert "max-message-size = 10485760" in box.ok("action", "show", "In-Small").out
    r = box.fails("action", "set", "In-Small", "max-message-size", "12", rc=2)
    assert r.err == "smtpgwctl: max-message-size: 12 is out of range (1024..2147483647)\n"
    r = box.fails("action", "set", "In-Small", "colour", "red", rc=2)
    assert 'unknown key "colour" (keys: tls-action tls-profile' in r.err
    r = box.fails("action", "set", "In-Small", "tls-profile", "Nope")
    assert 'TLS profile "Nope" does not exist' in r.err


def test_action_view_lists_exactly_its_policies(box):
    box.ok("action", "clone", "SMTP-Outgoing.Standard", "Out-B")
    box.ok("policy", "add", "P1", "--from", "trusted", "--to", "external", "--action", "Out-B",
           "--tls-support", "required")
    box.ok("policy", "add", "P2", "--from", "trusted", "--to", "external",
           "--action", "SMTP-Outgoing.Standard")
    box.ok("policy", "add", "P3", "--from", "trusted", "--to", "any", "--action", "Out-B",
           "--tls-support", "disabled", "--disabled")
    r = box.ok("action", "view", "Out-B")
    # the policies come first, then (after a blank line) the content inspection
    assert table(r.out.split("\n\n")[0]) == [
        {"#": "3", "POLICY": "P1", "TLS-SUPPORT": "required", "PORTS": "465", "ENABLED": "yes"},
        {"#": "5", "POLICY": "P3", "TLS-SUPPORT": "disabled", "PORTS": "25", "ENABLED": "no"},
    ]
    r = box.ok("action", "view", "SMTP-Outgoing.Standard")
    assert [row["POLICY"] for row in table(r.out.split("\n\n")[0])] == ["SMTP-Proxy-Out", "P2"]
    box.ok("action", "clone", "Out-B", "Unused")
    assert box.ok("action", "view", "Unused").out.startswith(
        "no policy uses proxy action Unused\n\nContent inspection")
    assert 'proxy action "Nope" does not exist' in box.fails("action", "view", "Nope").err


def test_del_in_use_names_the_policies(box):
    box.ok("action", "clone", "SMTP-Outgoing.Standard", "Out-B")
    box.ok("policy", "set", "SMTP-Proxy-Out", "action", "Out-B")
    box.ok("policy", "add", "P1", "--from", "trusted", "--to", "external", "--action", "Out-B")
    r = box.fails("action", "del", "Out-B")
    assert "action Out-B is used by policies SMTP-Proxy-Out,P1" in r.err
    assert "policy set POLICY action ACTION" in r.err
    box.ok("policy", "del", "P1")
    box.ok("policy", "set", "SMTP-Proxy-Out", "action", "SMTP-Outgoing.Standard")
    box.ok("action", "del", "Out-B")
    assert "[action Out-B]" not in box.staged.read_text()


def test_tls_profiles(box):
    box.ok("tls-profile", "clone", "TLS-SMTP.Standard", "TLS-Modern")
    box.ok("tls-profile", "set", "TLS-Modern", "min-version", "1.3")
    box.ok("tls-profile", "set", "TLS-Modern", "on-expired", "block")
    r = box.fails("tls-profile", "set", "TLS-Modern", "min-version", "2.0", rc=2)
    assert 'min-version "2.0" is not 1.0, 1.1, 1.2 or 1.3' in r.err
    box.ok("action", "clone", "SMTP-Incoming.Standard", "In-Modern")
    box.ok("action", "set", "In-Modern", "tls-profile", "TLS-Modern")
    t = table(box.ok("tls-profile", "list").out)
    assert (t[1]["TLS-PROFILE"], t[1]["TYPE"], t[1]["MIN-VERSION"], t[1]["ACTIONS"]) == (
        "TLS-Modern", "custom", "1.3", "In-Modern")
    r = box.fails("tls-profile", "del", "TLS-Modern")
    assert "TLS profile TLS-Modern is used by proxy actions In-Modern" in r.err
    assert "action set ACTION tls-profile PROFILE" in r.err
    box.ok("action", "del", "In-Modern")
    box.ok("tls-profile", "del", "TLS-Modern")
    assert "TLS-Modern" not in box.staged.read_text()
