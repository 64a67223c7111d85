"""ruleset list|add|move|del|default|clear, rewrite list|add|move|del, and
the content-inspection keys of action set / view.

Every listing is what the real `smtpgw -D` reads from the staged file,
so these tests check the file smtpgwctl writes through the daemon's own
parser: positions (the first match wins, so order is the point),
rules-from inheritance (a change to an inherited ruleset gives the action
its own copy first), predefined actions read-only and cloned with their
rules, and every refusal - a bad value before anything is touched (exit
2), a bad regex by `smtpgw -t` with FILE:LINE (exit 1) - leaving the
staged configuration exactly as it was.
"""

import re

import pytest

from conftest import needs_daemon

pytestmark = needs_daemon

KINDS = ["greeting", "mail-from", "rcpt-to", "header", "content-type", "filename"]
IN = "SMTP-Incoming.Standard"
OUT = "SMTP-Outgoing.Standard"

# an item each kind matches, for a rule of that kind
SAMPLE = {
    "greeting": ("pattern", "*.invalid"),
    "mail-from": ("exact", "spammer@example.com"),
    "rcpt-to": ("regex", "^root@"),
    "header": ("regex", "^X-Spam-Flag: *YES"),
    "content-type": ("exact", "application/x-iso9660-image"),
    "filename": ("pattern", "*.iso"),
}


def rules(box, action, kind):
    """(origin, [(action, flags, match, pattern)], default) from ruleset list."""
    out = box.ok("ruleset", "list", action, kind).out.splitlines()
    m = re.match(rf"Ruleset {kind} of proxy action {re.escape(action)} \((.*)\)$", out[0])
    assert m, out
    assert out[-1].startswith("default: "), out
    rows = []
    if out[1] != "no rules":
        assert out[1].split() == ["#", "ACTION", "FLAGS", "MATCH", "PATTERN"], out
        for i, line in enumerate(out[2:-1], 1):
            n, act, flags, match, pattern = line.split(None, 4)
            assert n == str(i), out
            rows.append((act, flags, match, pattern))
    return m.group(1), rows, out[-1][len("default: "):]


def rewrites(box, action, which):
    out = box.ok("rewrite", "list", action, which).out.splitlines()
    if out[0].endswith(": none"):
        return []
    return [tuple(l.split(None, 3)[1:]) for l in out[2:]]


def effective(box, action, key):
    """The values of key in [action NAME] as smtpgw -D prints them."""
    out = box.ok("show", "--effective").out
    sec = out.split(f"[action {action}]\n", 1)[1].split("\n[", 1)[0]
    return [l.split(" = ", 1)[1] for l in sec.splitlines() if l.startswith(f"{key} = ")]


def fmt(row):
    """A listed row as smtpgw -D writes the rule."""
    act, flags, match, pattern = row
    words = [act, *([] if flags == "-" else flags.split(",")), match, pattern]
    return " ".join(words)


def section(text, action):
    return text.split(f"[action {action}]\n", 1)[1].split("\n[", 1)[0]


@pytest.fixture
def custom(box):
    """A box with In-Copy, a clone of SMTP-Incoming.Standard."""
    box.ok("action", "clone", IN, "In-Copy")
    return box


# ------------------------------------------------------------ help

def test_help(bare):
    r = bare.ok("ruleset", "--help")
    assert r.out.startswith("usage: smtpgwctl ruleset VERB NAME KIND")
    for verb in ("list NAME [KIND]",
                 "add NAME KIND [--position N] ACTION [log] [alarm] MATCH PATTERN",
                 "move NAME KIND FROM TO", "del NAME KIND N",
                 "default NAME KIND ACTION [log] [alarm]", "clear NAME KIND"):
        assert f"\n  {verb}\n" in r.out, verb
    for kind in KINDS:
        assert f"\n    {kind} " in r.out, kind
    # a kind is no verb
    r = bare.fails("ruleset", "filename", "--help", rc=2)
    assert 'ruleset: unknown verb "filename"' in r.err
    r = bare.ok("ruleset", "add", "--help")
    assert r.out.startswith("usage: smtpgwctl ruleset add NAME KIND [--position N]")
    r = bare.ok("rewrite", "--help")
    assert r.out.startswith("usage: smtpgwctl rewrite VERB NAME WHICH")
    for verb in ("list", "add", "move", "del"):
        assert f"\n  {verb} NAME" in r.out, verb
    assert bare.ok("rewrite", "del", "--help").out.startswith(
        "usage: smtpgwctl rewrite del NAME WHICH N")
    top = bare.ok("--help").out
    assert "\n  ruleset " in top and "\n  rewrite " in top
    assert "rules-from" in bare.ok("action", "set", "--help").out


# ------------------------------------------------------------ predefined and clone

def test_list_predefined(box):
    origin, rows, dflt = rules(box, IN, "filename")
    assert origin == "predefined, read-only" and dflt == "allow"
    assert len(rows) == 27 and rows[0] == ("strip", "log", "pattern", "*.exe")
    assert rows[-1] == ("strip", "log", "pattern", "*.dll")
    _, rows, _ = rules(box, OUT, "content-type")
    assert rows[0] == ("allow", "log", "exact", "application/x-dosexec")
    assert rules(box, IN, "greeting") == ("predefined, read-only", [], "allow")
    # without KIND: all six, in order
    out = box.ok("ruleset", "list", IN).out
    heads = re.findall(r"^Ruleset (\S+) of proxy action", out, re.M)
    assert heads == KINDS


def test_clone_copies_every_rule(box):
    box.ok("action", "clone", IN, "In-Copy")
    for kind in KINDS:
        o1, r1, d1 = rules(box, IN, kind)
        o2, r2, d2 = rules(box, "In-Copy", kind)
        assert (r2, d2) == (r1, d1), kind
        assert o2 == "its own"
    # in the file, in order, as the daemon reads them
    sec = section(box.staged.read_text(), "In-Copy")
    names = re.findall(r"^filename-rule = strip log pattern (\S+)$", sec, re.M)
    assert names[:3] == ["*.exe", "*.com", "*.scr"] and len(names) == 27
    assert "banner = \n" not in sec and "deny-message = \n" not in sec
    # and the settings
    view = box.ok("action", "view", "In-Copy").out
    assert re.search(r"^  hide-banner +yes$", view, re.M)
    assert re.search(r"^  on-ambiguous +deny log$", view, re.M)
    # a clone of the clone, and of the outbound one
    box.ok("action", "clone", "In-Copy", "In-Copy2")
    assert rules(box, "In-Copy2", "filename")[1] == rules(box, IN, "filename")[1]
    box.ok("action", "clone", OUT, "Out-Copy")
    assert rules(box, "Out-Copy", "filename")[1] == rules(box, OUT, "filename")[1]


@pytest.mark.parametrize("argv", [
    ("ruleset", "add", IN, "filename", "deny", "pattern", "*.iso"),
    ("ruleset", "move", IN, "filename", "1", "2"),
    ("ruleset", "del", IN, "filename", "1"),
    ("ruleset", "default", IN, "filename", "deny"),
    ("ruleset", "clear", IN, "filename"),
    ("rewrite", "add", IN, "mail-from", "exact", "a@b.example", "c@d.example"),
    ("rewrite", "del", OUT, "rcpt-to", "1"),
])
def test_predefined_read_only(box, argv):
    before = box.current()
    r = box.fails(*argv)
    assert f"{argv[2]} is predefined and read-only" in r.err
    assert f"action clone {argv[2]} NEW-NAME" in r.err
    assert box.current() == before and not box.staged.exists()


def test_predefined_settings_read_only(box):
    r = box.fails("action", "set", IN, "banner", "mx.example.com")
    assert f"{IN} is predefined and read-only" in r.err
    r = box.fails("action", "set", OUT, "rules-from", IN)
    assert f"{OUT} is predefined and read-only" in r.err
    assert not box.staged.exists()


# ------------------------------------------------------------ add, move, del, default

@pytest.mark.parametrize("kind", KINDS)
def test_every_kind(custom, kind):
    box = custom
    match, pattern = SAMPLE[kind]
    _, start, _ = rules(box, "In-Copy", kind)
    n = len(start)
    act = "strip" if kind in ("header", "content-type", "filename") else "deny"
    # last by default
    r = box.ok("ruleset", "add", "In-Copy", kind, act, "log", match, pattern)
    assert f'{kind} rule "{act} log {match} {pattern}" added at position {n + 1}' in r.out
    # first
    box.ok("ruleset", "add", "In-Copy", kind, "--position", "1", "block", "alarm", "log",
           "exact", "first.example")
    # in the middle (position 2)
    box.ok("ruleset", "add", "In-Copy", kind, "--position=2", "ALLOW", "Log", "REGEX", "^mid")
    _, rows, _ = rules(box, "In-Copy", kind)
    assert rows == [("block", "log,alarm", "exact", "first.example"),
                    ("allow", "log", "regex", "^mid"), *start,
                    (act, "log", match, pattern)]
    # the daemon reads the same list from the file
    assert effective(box, "In-Copy", f"{kind}-rule") == [fmt(row) for row in rows]
    # move the last one to the front, then back
    box.ok("ruleset", "move", "In-Copy", kind, "last", "first")
    assert rules(box, "In-Copy", kind)[1][0] == (act, "log", match, pattern)
    box.ok("ruleset", "move", "In-Copy", kind, "1", str(len(rows)))
    assert rules(box, "In-Copy", kind)[1] == rows
    box.ok("ruleset", "move", "In-Copy", kind, "2", "1")
    assert rules(box, "In-Copy", kind)[1][:2] == [rows[1], rows[0]]
    # delete them again
    r = box.ok("ruleset", "del", "In-Copy", kind, "1")
    assert "position 1 deleted (allow log regex ^mid)" in r.out
    box.ok("ruleset", "del", "In-Copy", kind, "1")
    box.ok("ruleset", "del", "In-Copy", kind, "last")
    assert rules(box, "In-Copy", kind)[1] == start
    # the default
    box.ok("ruleset", "default", "In-Copy", kind, "deny", "log")
    assert rules(box, "In-Copy", kind)[2] == "deny log"
    assert effective(box, "In-Copy", f"{kind}-default") == ["deny log"]
    box.ok("ruleset", "default", "In-Copy", kind, "allow")
    assert rules(box, "In-Copy", kind)[2] == "allow"
    assert section(box.staged.read_text(), "In-Copy").count(f"\n{kind}-default = ") == 1


def test_file_keeps_order_and_comments(custom):
    box = custom
    text = box.staged.read_text()
    text = text.replace("filename-rule = strip log pattern *.com\n",
                        "# the admin's note\nfilename-rule = strip log pattern *.com\n")
    box.staged.write_text(text)
    box.ok("ruleset", "add", "In-Copy", "filename", "--position", "2", "deny", "pattern", "*.iso")
    sec = section(box.staged.read_text(), "In-Copy")
    assert ("filename-rule = strip log pattern *.exe\n"
            "filename-rule = deny pattern *.iso\n"
            "# the admin's note\n"
            "filename-rule = strip log pattern *.com\n") in sec
    box.ok("ruleset", "del", "In-Copy", "filename", "2")
    assert "# the admin's note\nfilename-rule = strip log pattern *.com\n" in box.staged.read_text()


def test_new_ruleset_on_an_action_without_rules(box):
    box.ok("action", "clone", IN, "Plain")
    text = box.staged.read_text()
    sec = section(text, "Plain")
    # an action that sets nothing about content inspection
    keep = [l for l in sec.splitlines()
            if not re.match(r"(greeting|mail-from|rcpt-to|header|content-type|filename)-", l)]
    box.staged.write_text(text.replace(sec, "\n".join(keep) + "\n"))
    assert rules(box, "Plain", "filename") == ("not set: no rules, default allow", [], "allow")
    box.ok("ruleset", "add", "Plain", "filename", "deny", "pattern", "*.iso")
    assert rules(box, "Plain", "filename")[1:] == ([("deny", "-", "pattern", "*.iso")], "allow")
    box.ok("ruleset", "default", "Plain", "greeting", "deny")
    assert rules(box, "Plain", "greeting")[1:] == ([], "deny")


@pytest.mark.parametrize("args,rc,message", [
    (("filename", "--position", "0", "deny", "pattern", "x"), 2, 'position "0" is not a number'),
    (("filename", "--position", "01", "deny", "pattern", "x"), 2, 'position "01" is not a number'),
    (("filename", "--position", "two", "deny", "pattern", "x"), 2, 'position "two" is not'),
    (("filename", "--position", "29", "deny", "pattern", "x"), 1,
     "position 29 is out of range (1..28)"),
    (("filename", "--position"), 2, "--position needs N"),
    (("filename", "--top", "deny", "pattern", "x"), 2, 'unknown option "--top"'),
    (("filenames", "deny", "pattern", "x"), 2, '"filenames" is not a ruleset'),
    (("filename", "reject", "pattern", "x"), 2, '"reject" is not an action'),
    (("filename", "deny", "glob", "x"), 2, '"glob" is not a match kind'),
    (("filename", "deny", "log", "log", "pattern", "x"), 2, '"log" twice'),
    (("filename", "deny", "pattern"), 2, "expected one PATTERN"),
    (("filename", "deny", "pattern", "a", "b"), 2, "expected one PATTERN"),
    (("filename", "deny"), 2, "expected MATCH PATTERN"),
    (("mail-from", "strip", "exact", "a@b.example"), 2, "strip is only possible for header"),
    (("greeting", "strip", "pattern", "*"), 2, "strip is only possible for header"),
    # the words around the pattern are a vocabulary: nothing else gets in
    (("greeting mail-from", "deny", "pattern", "x"), 2, "is not a ruleset"),
    (("file=name", "deny", "pattern", "x"), 2, '"file=name" is not a ruleset'),
    (("filename", "[deny]", "pattern", "x"), 2, '"[deny]" is not an action'),
    (("filename", "deny", "'regex'", "x"), 2, "\"'regex'\" is not a match kind"),
    (("filename", "deny", "#log", "pattern", "x"), 2, '"#log" is not a match kind'),
    (("filename", "deny\n", "pattern", "x"), 2, "is not an action"),
    (("filename", "--position", "1=2", "deny", "pattern", "x"), 2, 'position "1=2" is not'),
    (("filename", "--position", "1\n", "deny", "pattern", "x"), 2, "is not a number"),
])
def test_add_refusals(custom, args, rc, message):
    before = custom.current()
    r = custom.fails("ruleset", "add", "In-Copy", *args, rc=rc)
    assert message in r.err, r
    assert custom.current() == before


@pytest.mark.parametrize("args,rc,message", [
    (("move", "In-Copy", "filename", "1"), 2, "expected NAME KIND FROM TO"),
    (("move", "In-Copy", "filename", "1", "28"), 1, "position 28 is out of range (1..27)"),
    (("move", "In-Copy", "greeting", "1", "1"), 1, "there is no rule"),
    (("del", "In-Copy", "filename", "0"), 2, 'position "0" is not a number'),
    (("del", "In-Copy", "filename", "28"), 1, "position 28 is out of range (1..27)"),
    (("del", "In-Copy", "filename"), 2, "expected NAME KIND N"),
    (("default", "In-Copy", "filename"), 2, "expected NAME KIND ACTION"),
    (("default", "In-Copy", "filename", "deny", "loud"), 2, 'unexpected "loud"'),
    (("default", "In-Copy", "rcpt-to", "strip"), 2, "strip is only possible"),
    (("clear", "In-Copy"), 2, "expected NAME KIND"),
    (("list", "In-Copy", "attachments"), 2, '"attachments" is not a ruleset'),
    (("list",), 2, "expected NAME [KIND]"),
    (("list", "Nope"), 1, 'proxy action "Nope" does not exist'),
    (("add", "Nope", "filename", "deny", "pattern", "x"), 1, 'proxy action "Nope" does not exist'),
    (("add", "a[b", "filename", "deny", "pattern", "x"), 2, "not a valid proxy action name"),
    (("shuffle", "In-Copy", "filename"), 2, 'ruleset: unknown verb "shuffle"'),
])
def test_other_refusals(custom, args, rc, message):
    before = custom.current()
    r = custom.fails("ruleset", *args, rc=rc)
    assert message in r.err, r
    assert custom.current() == before


# ------------------------------------------------------------ the values

def test_bad_regex_is_refused_with_file_and_line(custom):
    before = custom.current()
    r = custom.fails("ruleset", "add", "In-Copy", "filename", "--position", "3",
                     "deny", "regex", "\\.(iso|img$")
    m = re.search(r"smtpgw\.conf\.staged:(\d+): \[action In-Copy\] filename-rule: "
                  r"regex: missing closing parenthesis at offset 11", r.err)
    assert m, r.err
    # the line named is where the rule would have been: after the second rule
    lines = before.splitlines()
    assert lines[int(m.group(1)) - 2] == "filename-rule = strip log pattern *.com"
    assert "nothing was changed" in r.err
    assert custom.current() == before
    # the same for a rewrite
    r = custom.fails("rewrite", "add", "In-Copy", "mail-from", "regex", "(a", "b@c.example")
    assert re.search(r"smtpgw\.conf\.staged:\d+: \[action In-Copy\] mail-from-rewrite: regex: ",
                     r.err), r.err
    assert custom.current() == before


@pytest.mark.parametrize("pattern,message", [
    ("a\nfilename-rule = allow pattern *", "line end or another control character"),
    ("a\rb", "line end or another control character"),
    ("a\tb", "line end or another control character"),
    ("a\x01b", "line end or another control character"),
    ("a\x7fb", "line end or another control character"),
    (" *.exe", "starts or ends with white space"),
    ("*.exe ", "starts or ends with white space"),
    ("#*.exe", '"#" at its start or after white space'),
    ("*.exe #note", '"#" at its start or after white space'),
    ("x" * 1025, "the pattern is 1025 octets; at most 1024"),
    ("x" * 1000, "would be 1025 octets; the configuration allows 1024"),
    ("\u00e9" * 513, "the pattern is 1026 octets; at most 1024"),
])
def test_bad_patterns_refused(custom, pattern, message):
    before = custom.current()
    r = custom.fails("ruleset", "add", "In-Copy", "header", "deny", "regex", pattern, rc=2)
    assert message in r.err, r
    assert custom.current() == before


@pytest.mark.parametrize("pattern", [
    "[action Evil]",                 # cannot start a section: the line starts with the key
    "^X-Mailer: .*=\\?utf-8\\?",     # '=' and '?' are ordinary
    '^Content-Type: .*name="[^"]*\\.exe"',  # quotes and a bracket expression
    "^Subject: 'quoted' [0-9]+ \\\\ back",  # single quotes, backslashes
    "a#b",                           # '#' not after white space is no comment
    "^X-Note: (?:x|y)\\x23\\x20",    # what the refusal advises for "#" and spaces
    "r\u00e9sum\u00e9\\.pdf",        # UTF-8
    "\u20ac\u00e9\u4e2d",                 # three UTF-8 sequences, bytes 0x80-0xbf among them
    "x" * 999,                       # the longest that fits the line (1024 octets)
])
def test_literal_patterns_round_trip(custom, pattern):
    custom.ok("ruleset", "add", "In-Copy", "header", "--position", "1", "deny", "regex", pattern)
    assert rules(custom, "In-Copy", "header")[1] == [("deny", "-", "regex", pattern)]
    assert effective(custom, "In-Copy", "header-rule") == [f"deny regex {pattern}"]
    assert "\n[action Evil]" not in custom.staged.read_text()
    assert custom.ok("check").rc == 0


# ------------------------------------------------------------ rules-from

def test_rules_from(box):
    box.ok("action", "clone", OUT, "Out-B")
    # drop Out-B's own rulesets: it inherits them all from SMTP-Incoming.Standard
    for kind in KINDS:
        box.ok("ruleset", "clear", "Out-B", kind)
    r = box.ok("action", "set", "Out-B", "rules-from", IN)
    assert "rules-from = " + IN in r.out
    origin, rows, _ = rules(box, "Out-B", "filename")
    assert origin == f"from {IN} by rules-from; changing it gives Out-B its own copy"
    assert rows == rules(box, IN, "filename")[1]
    # changing it makes it Out-B's own: the copy, then the change
    r = box.ok("ruleset", "add", "Out-B", "filename", "--position", "2", "deny", "pattern", "*.iso")
    assert f"Out-B took its own copy of what it had from {IN} (rules-from)" in r.out
    origin, rows, dflt = rules(box, "Out-B", "filename")
    assert origin == "its own" and len(rows) == 28 and rows[1] == ("deny", "-", "pattern", "*.iso")
    assert rows[0] == ("strip", "log", "pattern", "*.exe")
    # the other rulesets stay inherited
    assert rules(box, "Out-B", "content-type")[0].startswith(f"from {IN}")
    # clear gives the inherited one back
    box.ok("ruleset", "clear", "Out-B", "filename")
    assert rules(box, "Out-B", "filename")[0].startswith(f"from {IN}")
    r = box.fails("ruleset", "clear", "Out-B", "filename")
    assert "has no filename ruleset of its own" in r.err
    # a chain: C takes from Out-B, which takes from the predefined one
    box.ok("action", "clone", "Out-B", "C")
    box.ok("action", "set", "C", "rules-from", "Out-B")
    assert rules(box, "C", "filename")[0].startswith(f"from {IN}")
    # a loop is refused by the daemon
    r = box.fails("action", "set", "Out-B", "rules-from", "C")
    assert "rules-from makes a loop" in r.err
    r = box.fails("action", "set", "C", "rules-from", "C")
    assert "cannot take its rules from itself" in r.err
    r = box.fails("action", "set", "C", "rules-from", "Nope")
    assert 'proxy action "Nope" does not exist' in r.err
    # none: no longer; without a ruleset of its own, nothing (allow)
    box.ok("action", "set", "C", "rules-from", "none")
    assert rules(box, "C", "filename") == ("not set: no rules, default allow", [], "allow")
    assert "rules-from" not in section(box.staged.read_text(), "C")


def test_rules_from_settings(box):
    box.ok("action", "clone", IN, "In-B")
    text = box.staged.read_text()
    box.staged.write_text(text.replace("hide-banner = yes\n", ""))
    box.ok("action", "set", "In-B", "rules-from", OUT)
    view = box.ok("action", "view", "In-B").out
    assert re.search(rf"^  hide-banner +no \(from {re.escape(OUT)}\)$", view, re.M), view
    assert re.search(r"^  on-ambiguous +deny log$", view, re.M), view


# ------------------------------------------------------------ action set / view

def test_action_set_content_settings(custom):
    box = custom
    box.ok("action", "set", "In-Copy", "banner", "mx.example.com ESMTP")
    box.ok("action", "set", "In-Copy", "deny-message",
           "Refused: %(reason)%\\nCall the helpdesk, ext. 42.")
    box.ok("action", "set", "In-Copy", "esmtp", "PIPELINING SIZE 8BITMIME")
    box.ok("action", "set", "In-Copy", "on-archive-unopenable", "strip log alarm")
    view = box.ok("action", "view", "In-Copy").out
    assert re.search(r"^  banner +mx\.example\.com ESMTP$", view, re.M)
    assert re.search(r"^  deny-message +Refused: %\(reason\)%\\nCall the helpdesk", view, re.M)
    assert re.search(r"^  esmtp +PIPELINING SIZE 8BITMIME$", view, re.M)
    assert re.search(r"^  on-archive-unopenable +strip log alarm$", view, re.M)
    # an empty value removes the key: the default again
    box.ok("action", "set", "In-Copy", "banner", "")
    assert re.search(r"^  banner +\(default\)$", box.ok("action", "view", "In-Copy").out, re.M)
    assert "\nbanner = " not in section(box.staged.read_text(), "In-Copy")
    # the daemon's checks
    r = box.fails("action", "set", "In-Copy", "esmtp", "STARTTLS")
    assert re.search(r"smtpgw\.conf\.staged:\d+: \[action In-Copy\] esmtp: unknown ESMTP "
                     r"extension \"STARTTLS\"", r.err), r.err
    r = box.fails("action", "set", "In-Copy", "deny-message", "%(nosuch)%")
    assert "deny-message:" in r.err
    r = box.fails("action", "set", "In-Copy", "on-ambiguous", "strip")
    assert "on-ambiguous: strip is not possible here" in r.err


@pytest.mark.parametrize("key,value,message", [
    ("banner", "mx #1", '"#" at its start or after white space'),
    ("banner", "two\nlines", "control character"),
    ("deny-message", "Refused\r\nBcc: x", "control character"),
    ("banner", " padded", "starts or ends with white space"),
    ("deny-message", "x" * 1010, "would be 1025 octets"),
])
def test_action_set_bad_values(custom, key, value, message):
    before = custom.current()
    r = custom.fails("action", "set", "In-Copy", key, value, rc=2)
    assert message in r.err, r
    assert custom.current() == before


@pytest.mark.parametrize("key,verbs", [
    ("filename-rule", "ruleset add|move|del|default In-Copy filename"),
    ("header-default", "ruleset add|move|del|default In-Copy header"),
    ("rcpt-to-rewrite", "rewrite add|move|del In-Copy rcpt-to"),
])
def test_action_set_refuses_list_keys(custom, key, verbs):
    before = custom.current()
    r = custom.fails("action", "set", "In-Copy", key, "deny exact x")
    assert verbs in r.err, r
    assert custom.current() == before


def test_action_view_shows_rulesets(custom):
    box = custom
    box.ok("policy", "set", "SMTP-Proxy-In", "action", "In-Copy")
    box.ok("ruleset", "add", "In-Copy", "rcpt-to", "deny", "log", "exact", "root@example.com")
    out = box.ok("action", "view", "In-Copy").out
    policies, rest = out.split("\n\n", 1)
    assert [l.split()[1] for l in policies.splitlines()[1:]] == ["SMTP-Proxy-In"]
    assert rest.startswith("Content inspection (first match wins)")
    assert re.findall(r"^Ruleset (\S+) of proxy action In-Copy \(its own\)$", rest, re.M) == KINDS
    assert "1   strip   log    pattern  *.exe" in rest
    assert "1  deny    log    exact  root@example.com" in rest
    assert "Rewrites of mail-from addresses of proxy action In-Copy: none" in rest
    assert re.search(r"^Settings\n  hide-banner +yes$", rest, re.M)
    # the predefined one too
    out = box.ok("action", "view", IN).out
    assert "Ruleset filename of proxy action SMTP-Incoming.Standard (predefined, read-only)" in out


# ------------------------------------------------------------ rewrites

def test_rewrites(custom):
    box = custom
    assert rewrites(box, "In-Copy", "mail-from") == []
    r = box.ok("rewrite", "add", "In-Copy", "mail-from", "pattern", "*@legacy.example",
               "*@example.com")
    assert 'mail-from rewrite "pattern *@legacy.example => *@example.com" added at position 1' \
        in r.out
    box.ok("rewrite", "add", "In-Copy", "mail-from", "--position", "first", "regex",
           "^(.+)@old\\.example$", "$1@example.com")
    box.ok("rewrite", "add", "In-Copy", "mail-from", "EXACT", "ceo@example.com",
           "office@example.com")
    assert rewrites(box, "In-Copy", "mail-from") == [
        ("regex", "^(.+)@old\\.example$", "$1@example.com"),
        ("pattern", "*@legacy.example", "*@example.com"),
        ("exact", "ceo@example.com", "office@example.com"),
    ]
    assert effective(box, "In-Copy", "mail-from-rewrite")[0] == \
        "regex ^(.+)@old\\.example$ => $1@example.com"
    box.ok("rewrite", "move", "In-Copy", "mail-from", "3", "1")
    assert rewrites(box, "In-Copy", "mail-from")[0][1] == "ceo@example.com"
    box.ok("rewrite", "del", "In-Copy", "mail-from", "2")
    assert [w[1] for w in rewrites(box, "In-Copy", "mail-from")] == [
        "ceo@example.com", "*@legacy.example"]
    assert rewrites(box, "In-Copy", "rcpt-to") == []
    box.ok("rewrite", "add", "In-Copy", "rcpt-to", "exact", "a@example.com", "b@example.com")
    out = box.ok("rewrite", "list", "In-Copy").out
    assert "Rewrites of mail-from addresses" in out and "Rewrites of rcpt-to addresses" in out


@pytest.mark.parametrize("args,rc,message", [
    (("mail-to", "exact", "a", "b"), 2, '"mail-to" is not mail-from or rcpt-to'),
    (("mail-from", "exact", "a"), 2, "expected MATCH PATTERN REPLACEMENT"),
    (("mail-from", "fuzzy", "a", "b"), 2, '"fuzzy" is not a match kind'),
    (("mail-from", "exact", "a => b", "c"), 2, 'may not hold " => "'),
    (("mail-from", "exact", "a", "b c"), 2, "printable ASCII without spaces or <>"),
    (("mail-from", "exact", "a", "<b>"), 2, "printable ASCII without spaces or <>"),
    (("mail-from", "exact", "a", "b\n"), 2, "control character"),
    (("mail-from", "exact", "a", "#b"), 2, '"#" at its start'),
    (("mail-from", "exact", "a", "r\u00e9@x"), 2, "printable ASCII"),
    (("mail-from", "exact", "a\nb", "c"), 2, "control character"),
    (("mail-from", "--position", "2", "exact", "a", "b"), 1, "position 2 is out of range (1..1)"),
])
def test_rewrite_refusals(custom, args, rc, message):
    before = custom.current()
    r = custom.fails("rewrite", "add", "In-Copy", *args, rc=rc)
    assert message in r.err, r
    assert custom.current() == before


def test_rewrites_from_rules_from(box):
    box.ok("action", "clone", IN, "Base")
    box.ok("rewrite", "add", "Base", "rcpt-to", "exact", "a@example.com", "b@example.com")
    box.ok("action", "clone", IN, "Child")
    box.ok("action", "set", "Child", "rules-from", "Base")
    assert rewrites(box, "Child", "rcpt-to") == [("exact", "a@example.com", "b@example.com")]
    # adding copies Base's first
    box.ok("rewrite", "add", "Child", "rcpt-to", "exact", "c@example.com", "d@example.com")
    assert [w[1] for w in rewrites(box, "Child", "rcpt-to")] == ["a@example.com", "c@example.com"]
    box.ok("rewrite", "del", "Child", "rcpt-to", "1")
    # the last one cannot go: without a rewrite of its own, Base's apply again
    before = box.current()
    r = box.fails("rewrite", "del", "Child", "rcpt-to", "1")
    assert "this is the last rcpt-to rewrite of Child" in r.err
    assert "rules-from none" in r.err
    assert box.current() == before
