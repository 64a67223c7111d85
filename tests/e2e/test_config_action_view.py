"""`smtpgwctl action view` lists exactly the policies that use an action,
each with its TLS Support - and what it lists is what the gateway runs.

On the testbed's gateway: the action SMTP-Proxy-Out uses (A-out) is
cloned to Out-Custom; SMTP-Proxy-Out and a new policy Out-Extra (trusted
to external, TLS Support required) are given Out-Custom, a third policy
Out-Other (one destination prefix) keeps A-out, and the change is
applied.  `action view Out-Custom` lists SMTP-Proxy-Out (enabled, 25 and
465) and Out-Extra (required, 465), in match order, and nothing else;
`action view A-out` lists only Out-Other; the action of SMTP-Proxy-In
lists only SMTP-Proxy-In; a fresh clone lists nothing.  The running
gateway agrees: outbound mail still flows under SMTP-Proxy-Out, and
deleting Out-Custom is refused while it is in use, naming both policies.
"""

from conftest import flow
from gwctl import gwctl  # noqa: F401 (fixture)


def view(gwctl, action):
    out = gwctl.ok("action", "view", action).stdout
    # the policies; the content inspection follows after a blank line
    lines = out.split("\n\n")[0].splitlines()
    if lines and lines[0].startswith("no policy uses"):
        return []
    head = lines[0].split()
    return [dict(zip(head, l.split())) for l in lines[1:]]


def test_action_view(testbed, gwctl):
    a_out = gwctl.policy_action("SMTP-Proxy-Out")
    a_in = gwctl.policy_action("SMTP-Proxy-In")
    assert a_in != a_out
    gwctl.ok("policy", "set", "SMTP-Proxy-Out", "tls-support", "enabled")
    gwctl.ok("action", "clone", a_out, "Out-Custom")
    gwctl.ok("policy", "set", "SMTP-Proxy-Out", "action", "Out-Custom")
    gwctl.ok("policy", "add", "Out-Extra", "--from", "trusted", "--to", "external",
             "--action", "Out-Custom", "--tls-support", "required")
    gwctl.ok("policy", "add", "Out-Other", "--from", "trusted", "--to", "external",
             "--action", a_out, "--dst", "203.0.113.0/24")
    gwctl.apply()

    assert [(r["POLICY"], r["TLS-SUPPORT"], r["PORTS"]) for r in view(gwctl, "Out-Custom")] == [
        ("SMTP-Proxy-Out", "enabled", "25,465"),
        ("Out-Extra", "required", "465"),
    ]
    assert [r["POLICY"] for r in view(gwctl, a_out)] == ["Out-Other"]
    assert [r["POLICY"] for r in view(gwctl, a_in)] == ["SMTP-Proxy-In"]
    gwctl.ok("action", "clone", "Out-Custom", "Out-Unused")
    assert view(gwctl, "Out-Unused") == []
    gwctl.ok("discard")

    # What is listed is what runs: the active file and the daemon agree.
    active = gwctl.active.read_text()
    assert "[action Out-Custom]" in active and "Out-Unused" not in active
    fl = flow("outbound", 4)
    off = testbed.log_offset()
    testbed.send_and_wait(fl)
    _, f = testbed.wait_for_session(off, fl.client_addr)
    assert f["policy"] == "SMTP-Proxy-Out"

    r = gwctl.fails("action", "del", "Out-Custom")
    assert "action Out-Custom is used by policies SMTP-Proxy-Out,Out-Extra" in r.stderr
