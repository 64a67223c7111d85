"""Every value smtpgwctl writes, and every name it looks up, is checked first.

smtpgw.conf is line oriented: a value with a line break in it used to be
written as it came, so `policy add ... --src "192.0.2.0/24<LF>[policy X]..."`
added a policy of the caller's making.  For every verb and every argument
that ends up in the file or in a lookup, each hostile form below (line
feed, carriage return, "[", "]", "=", "#", quotes, backslash, control and
non-ASCII bytes, tab, a leading "-", empty, very long) is refused with exit
2 and exactly one line on stderr, in which the value is shown escaped (no
raw control byte reaches the admin's terminal); stdout stays empty and
neither the active nor the staged file changes.  The same argument with a
good value is accepted, so each refusal is the check's doing.

The tool's own table of settings (value_spec in smtpgwctl) is held to the
daemon's parser: every key `smtpgw -D` shows can be set to its current
value, and each number's range ends where the daemon's does.
"""

import re

import pytest

from conftest import DAEMON, needs_daemon

pytestmark = needs_daemon

# Appended to (or put around) a good value; "{v}" is the good value.
HOSTILE = {
    "lf-section": "{v}\n[policy Evil]\nfrom = any\nto = any\ntype = packet-filter",
    "lf": "{v}\nx",
    "cr": "{v}\r",
    "crlf": "{v}\r\n[zone evil]",
    "open-bracket": "[{v}",
    "close-bracket": "{v}]",
    "equals": "{v}=x",
    "hash": "{v} #x",
    "hash-first": "#{v}",
    "dquote": '{v}"',
    "squote": "{v}'",
    "backslash": "{v}\\n",
    "control": "{v}\x01",
    "escape": "\x1b[31m{v}",
    "del": "{v}\x7f",
    "tab": "{v}\tx",
    "non-ascii": "{v}\u00e9",
    "leading-dash": "-{v}",
    "empty": "",
    "long": "{v}" + "9" * 5000,
}

# slot id -> (argv with "{}" where the value goes, good value, kinds of
# HOSTILE that are good values there too)
SLOTS = {
    # zones
    "zone show NAME": (["zone", "show", "{}"], "trusted", ()),
    "zone add NAME": (["zone", "add", "{}"], "dmz", ()),
    "zone set NAME": (["zone", "set", "{}", "external", "yes"], "trusted", ()),
    "zone set KEY": (["zone", "set", "trusted", "{}", "yes"], "external", ()),
    "zone set VALUE": (["zone", "set", "trusted", "external", "{}"], "no", ()),
    "zone set-interface IFACE": (["zone", "set-interface", "{}", "trusted"], "eth5", ()),
    "zone set-interface ZONE": (["zone", "set-interface", "eth5", "{}"], "external", ()),
    "zone del NAME": (["zone", "del", "{}"], "spare", ()),
    # policies
    "policy show NAME": (["policy", "show", "{}"], "SMTP-Proxy-In", ()),
    "policy add NAME": (["policy", "add", "{}", "--from", "trusted", "--to", "external",
                         "--action", "SMTP-Outgoing.Standard"], "P", ()),
    "policy add --from": (["policy", "add", "P", "--from", "{}", "--to", "external",
                           "--action", "SMTP-Outgoing.Standard"], "trusted", ()),
    "policy add --to": (["policy", "add", "P", "--from", "trusted", "--to", "{}",
                         "--action", "SMTP-Outgoing.Standard"], "external", ()),
    "policy add --action": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                             "--action", "{}"], "SMTP-Outgoing.Standard", ()),
    "policy add --tls-support": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                                  "--action", "SMTP-Outgoing.Standard", "--tls-support", "{}"],
                                 "disabled", ()),
    "policy add --src": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                          "--action", "SMTP-Outgoing.Standard", "--src", "{}"],
                         "192.0.2.0/24", ()),
    "policy add --dst": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                          "--action", "SMTP-Outgoing.Standard", "--dst", "{}"],
                         "2001:db8::/32", ()),
    "policy add --type": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                           "--type", "{}"], "packet-filter", ()),
    "policy add --position": (["policy", "add", "P", "--from", "trusted", "--to", "external",
                               "--action", "SMTP-Outgoing.Standard", "--position", "{}"],
                              "1", ()),
    "policy set NAME": (["policy", "set", "{}", "enabled", "no"], "SMTP-Proxy-In", ()),
    "policy set KEY": (["policy", "set", "SMTP-Proxy-In", "{}", "no"], "enabled", ()),
    "policy set from": (["policy", "set", "SMTP-Proxy-In", "from", "{}"], "external", ()),
    "policy set to": (["policy", "set", "SMTP-Proxy-In", "to", "{}"], "trusted", ()),
    "policy set src": (["policy", "set", "SMTP-Proxy-In", "src", "{}"], "198.51.100.0/24", ()),
    "policy set dst": (["policy", "set", "SMTP-Proxy-In", "dst", "{}"], "192.0.2.25", ()),
    "policy set action": (["policy", "set", "SMTP-Proxy-In", "action", "{}"],
                          "SMTP-Incoming.Standard", ()),
    "policy set tls-support": (["policy", "set", "SMTP-Proxy-In", "tls-support", "{}"],
                               "required", ()),
    "policy set enabled": (["policy", "set", "SMTP-Proxy-In", "enabled", "{}"], "no", ()),
    "policy set type": (["policy", "set", "SMTP-Proxy-In", "type", "{}"], "proxy", ()),
    "policy enable NAME": (["policy", "enable", "{}"], "SMTP-Proxy-In", ()),
    "policy disable NAME": (["policy", "disable", "{}"], "SMTP-Proxy-In", ()),
    "policy move NAME": (["policy", "move", "{}", "last"], "SMTP-Proxy-In", ()),
    "policy move POSITION": (["policy", "move", "SMTP-Proxy-In", "{}"], "2", ()),
    "policy del NAME": (["policy", "del", "{}"], "SMTP-Proxy-Out", ()),
    # proxy actions (A1 is a custom one)
    "action show NAME": (["action", "show", "{}"], "A1", ()),
    "action view NAME": (["action", "view", "{}"], "A1", ()),
    "action clone FROM": (["action", "clone", "{}", "A2"], "A1", ()),
    "action clone NEW": (["action", "clone", "A1", "{}"], "A2", ()),
    "action set NAME": (["action", "set", "{}", "max-recipients", "50"], "A1", ()),
    "action set KEY": (["action", "set", "A1", "{}", "50"], "max-recipients", ()),
    "action set uint": (["action", "set", "A1", "max-recipients", "{}"], "50", ()),
    "action set bool": (["action", "set", "A1", "allow-vrfy", "{}"], "yes", ()),
    "action set enum": (["action", "set", "A1", "tls-action", "{}"], "drop", ()),
    "action set tls-profile": (["action", "set", "A1", "tls-profile", "{}"], "T1", ()),
    "action del NAME": (["action", "del", "{}"], "A1", ()),
    # TLS profiles (T1 is a custom one)
    "tls-profile show NAME": (["tls-profile", "show", "{}"], "T1", ()),
    "tls-profile clone NEW": (["tls-profile", "clone", "T1", "{}"], "T2", ()),
    "tls-profile set KEY": (["tls-profile", "set", "T1", "{}", "no"], "ocsp", ()),
    "tls-profile set min-version": (["tls-profile", "set", "T1", "min-version", "{}"],
                                    "1.3", ()),
    "tls-profile set ciphers": (["tls-profile", "set", "T1", "ciphers", "{}"],
                                "ECDHE+AESGCM:!aNULL", ("equals",)),
    "tls-profile set ca-file": (["tls-profile", "set", "T1", "ca-file", "{}"],
                                "/etc/ssl/certs/ca-certificates.crt", ()),
    "tls-profile set on-expired": (["tls-profile", "set", "T1", "on-expired", "{}"],
                                   "block", ()),
    "tls-profile del NAME": (["tls-profile", "del", "{}"], "T1", ()),
    # [global]
    "global set KEY": (["global", "set", "{}", "100"], "max-recipients", ()),
    "global set uint": (["global", "set", "max-sessions", "{}"], "500", ()),
    "global set user": (["global", "set", "user", "{}"], "nobody", ()),
    "global set path": (["global", "set", "trust-store", "{}"],
                        "/etc/ssl/certs/ca-certificates.crt", ()),
    "global set enum": (["global", "set", "log", "{}"], "stderr", ()),
    "global set bool": (["global", "set", "spoof-source", "{}"], "no", ()),
    "global unset KEY": (["global", "unset", "{}"], "max-recipients", ()),
    # certificates
    "cert regenerate --cn": (["cert", "regenerate-authority", "--cn", "{}"], "Example CA", ()),
    "cert regenerate --days": (["cert", "regenerate-authority", "--days", "{}"], "30", ()),
}

# Files smtpgwctl reads or writes: any name a file can have, but a line
# break or a control byte is refused (exit 2, one line), and nothing else
# is staged by a name that cannot be read.
FILE_SLOTS = {
    "import FILE": ["import", "{}"],
    "export FILE": ["export", "{}"],
    "init --board FILE": ["init", "--board", "{}", "--force"],
    "cert import-server CERT": ["cert", "import-server", "{}", "x.key"],
    "cert import-server KEY": ["cert", "import-server", "x.crt", "{}"],
    "cert export-authority FILE": ["cert", "export-authority", "{}"],
    "-c FILE": ["-c", "{}", "show"],
}
FILE_HOSTILE = ["lf-section", "lf", "cr", "crlf", "control", "escape", "del", "tab", "empty"]


def hostile(kind, good):
    return HOSTILE[kind].replace("{v}", good)


@pytest.fixture
def cbox(box):
    """The default box with a custom action A1, a custom TLS profile T1 and
    an unused zone "spare", all applied: nothing is staged."""
    box.ok("action", "clone", "SMTP-Outgoing.Standard", "A1")
    box.ok("tls-profile", "clone", "TLS-SMTP.Standard", "T1")
    box.ok("zone", "add", "spare")
    box.ok("apply")
    assert not box.staged.exists()
    return box


PRINTABLE_LINE = re.compile(r"smtpgwctl: [\x20-\x7e]+\n")


def assert_refused(box, argv, value, before):
    r = box.run(*argv)
    shown = repr(value if len(value) < 80 else value[:80] + "...")
    assert r.rc == 2, f"{argv[:3]} {shown}: {r}"
    assert PRINTABLE_LINE.fullmatch(r.err), f"{argv[:3]} {shown}: not one printable line: {r}"
    assert r.out == "", f"{argv[:3]} {shown}: {r}"
    assert not box.staged.exists(), f"{argv[:3]} {shown}: staged:\n{box.staged.read_text()}"
    assert box.conf.read_bytes() == before, f"{argv[:3]} {shown}: the active file changed"


@pytest.mark.parametrize("slot", SLOTS)
def test_hostile_values_are_refused(cbox, slot):
    argv, good, allowed = SLOTS[slot]
    before = cbox.conf.read_bytes()
    for kind in HOSTILE:
        if kind in allowed:
            continue
        value = hostile(kind, good)
        assert_refused(cbox, [a.replace("{}", value) for a in argv], value, before)
    # The good value passes the same check.
    r = cbox.run(*[a.replace("{}", good) for a in argv])
    assert r.rc == 0, f"{slot} with {good!r}: {r}"


@pytest.mark.parametrize("slot", FILE_SLOTS)
def test_file_names_with_control_bytes_are_refused(cbox, slot):
    before = cbox.conf.read_bytes()
    for kind in FILE_HOSTILE:
        value = hostile(kind, "x")
        assert_refused(cbox, [a.replace("{}", value) for a in FILE_SLOTS[slot]], value, before)


def test_prefix_with_a_line_break_cannot_add_a_policy(box):
    """The reported case: --src/--dst carried a [policy] section into the file."""
    evil = "192.0.2.0/24\n[policy Open]\nfrom = any\nto = any\ntype = packet-filter"
    for opt in ("--src", "--dst"):
        r = box.fails("policy", "add", "P", "--from", "trusted", "--to", "external",
                      "--action", "SMTP-Outgoing.Standard", opt, evil, rc=2)
        assert r.err == (f'smtpgwctl: {opt}: "192.0.2.0/24\\n[policy Open]\\nfrom = any\\n'
                         f'to = any\\ntype = packet"... (67 bytes) is not a list of addresses '
                         f'or prefixes (separated by commas), or "any"\n')
    for key in ("src", "dst"):
        box.fails("policy", "set", "SMTP-Proxy-In", key, evil, rc=2)
    assert not box.staged.exists()
    assert "Open" not in box.ok("policy", "list").out


def test_long_value_is_shown_cut(box):
    r = box.fails("zone", "add", "z" * 5000, rc=2)
    assert r.err == f'smtpgwctl: zone name "{"z" * 60}"... (5000 bytes) is longer than 63 characters\n'


@pytest.mark.parametrize("value,expect", [
    ("192.0.2.0/24", True), ("192.0.2.7", True), ("0.0.0.0/0", True),
    ("2001:db8::/32", True), ("::", True), ("::1", True), ("1:2:3:4:5:6:7::", True),
    ("::ffff:192.0.2.0/120", True), ("1:2:3:4:5:6:192.0.2.1", True),
    ("2001:DB8::/32", True),
    ("192.0.2.1/24", False), ("2001:db8::1/32", False), ("::ffff:192.0.2.1/120", False),
    ("192.0.2.0/33", False), ("2001:db8::/129", False), ("192.0.2.0/", False),
    ("256.0.0.0", False), ("192.0.2", False), ("192.0.2.0.0", False), ("01.2.3.4", False),
    ("1:2:3:4::5:6:7:8", False), ("1::2::3", False), ("12345::", False), (":1::", False),
    ("1:2:3:4:5:6:7:8:9", False), ("g::", False), ("any,192.0.2.0/24", False),
])
def test_prefix_forms(box, value, expect):
    r = box.run("policy", "set", "SMTP-Proxy-In", "src", value)
    if expect:
        assert r.rc == 0, r
    else:
        assert r.rc == 2 and PRINTABLE_LINE.fullmatch(r.err), r


def effective_keys(box):
    """KIND -> [(key, value)] of the default box's effective configuration
    (the custom action A1 and TLS profile T1 stand for their kinds)."""
    out = box.ok("show", "--effective").out
    keys, kind = {}, None
    for line in out.splitlines():
        m = re.match(r"\[(\S+)(?: (\S+))?\]$", line)
        if m:
            kind = {("global", None): "global", ("action", "A1"): "action",
                    ("tls-profile", "T1"): "tls-profile"}.get((m.group(1), m.group(2)))
            continue
        if kind and " = " in line and not line.startswith("#"):
            k, v = line.split(" = ", 1)
            keys.setdefault(kind, []).append((k, v))
    return keys


def test_every_daemon_key_can_be_set(cbox):
    keys = effective_keys(cbox)
    assert {"global", "action", "tls-profile"} <= set(keys)
    target = {"global": ["global", "set"], "action": ["action", "set", "A1"],
              "tls-profile": ["tls-profile", "set", "T1"]}
    for kind, pairs in keys.items():
        for k, v in pairs:
            # a ruleset (its rules and default) and the rewrites are ordered
            # lists: `smtpgwctl ruleset` / `rewrite` edit them, `action set`
            # refuses them (tests/cli/test_ruleset.py)
            if k.endswith(("-rule", "-rewrite", "-default")):
                continue
            r = cbox.run(*target[kind], k, v)
            assert r.rc == 0, f"{kind} {k} = {v}: smtpgwctl does not take what the daemon shows: {r}"


def daemon_accepts(box, tmp_path, key, value):
    f = tmp_path / "range.conf"
    f.write_text(box.conf.read_text().replace("[global]\n", f"[global]\n{key} = {value}\n", 1))
    import subprocess
    return subprocess.run([str(DAEMON), "-t", "-c", str(f)], capture_output=True).returncode == 0


def test_number_ranges_end_where_the_daemons_do(box, tmp_path):
    """For every number in [global] (the SMTP limits of actions are the same
    keys), the tool's range and the daemon's agree at both ends."""
    keys = effective_keys(box)["global"]
    numeric = [k for k, v in keys if v.isdigit()]
    assert "max-sessions" in numeric and "timeout-client-data" in numeric
    for k in numeric:
        r = box.run("global", "set", k, "999999999999999")  # above every range
        assert r.rc == 2 and "out of range (" in r.err, f"{k}: {r}"
        lo, hi = map(int, re.search(r"\((\d+)\.\.(\d+)\)", r.err).groups())
        for v, ok in ((lo, True), (hi, True), (hi + 1, False)) + (((lo - 1, False),) if lo else ()):
            # max-sessions must also fit the box's descriptor limit (smtpgw -t
            # raises RLIMIT_NOFILE or refuses): its top depends on the machine
            if k == "max-sessions" and v == hi:
                # the tool takes it, smtpgw -t (behind it) judges the machine
                r = box.run("global", "set", k, str(v))
                assert r.rc == 0 or (r.rc == 1 and "file descriptors" in r.err), r
                continue
            assert daemon_accepts(box, tmp_path, k, v) == ok, f"daemon: {k} = {v}"
            r = box.run("global", "set", k, str(v))
            assert (r.rc == 0) == ok and (ok or r.rc == 2), f"smtpgwctl: {k} {v}: {r}"
        box.ok("discard")
