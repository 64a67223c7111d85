"""--help on every level, and usage errors (exit 2) - no daemon needed."""

from pathlib import Path

import pytest

NOUNS = {
    "zone": ["list", "show", "add", "set", "set-interface", "del"],
    "policy": ["list", "show", "add", "set", "enable", "disable", "move", "del"],
    "action": ["list", "show", "clone", "set", "del", "view"],
    "ruleset": ["list", "add", "move", "del", "default", "clear"],
    "rewrite": ["list", "add", "move", "del"],
    "tls-profile": ["list", "show", "clone", "set", "del"],
    "global": ["show", "set", "unset"],
    "cert": ["show", "import-server", "import-authority", "export-authority",
             "regenerate-authority"],
}
WHOLE = ["show", "check", "diff", "apply", "discard", "rollback", "export", "import",
         "init", "status"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help(bare, flag):
    r = bare.ok(flag)
    assert r.out.startswith("usage: smtpgwctl")
    for word in [*NOUNS, *WHOLE]:
        assert word in r.out, word
    assert "Exit status: 0" in r.out


def test_help_command(bare):
    assert bare.ok("help").out == bare.ok("--help").out
    assert bare.ok("help", "policy").out == bare.ok("policy", "--help").out
    bare.fails("help", "nonsense", rc=2)


@pytest.mark.parametrize("noun", NOUNS)
def test_noun_help_lists_every_verb(bare, noun):
    r = bare.ok(noun, "--help")
    assert r.out.startswith(f"usage: smtpgwctl {noun} VERB")
    for verb in NOUNS[noun]:
        assert f"\n  {verb}" in r.out, verb


@pytest.mark.parametrize("noun,verb", [(n, v) for n, vs in NOUNS.items() for v in vs])
def test_verb_help(bare, noun, verb):
    r = bare.ok(noun, verb, "--help")
    first = r.out.splitlines()[0]
    assert first.startswith("usage: smtpgwctl "), r.out
    assert noun in first
    assert len(r.out.splitlines()) >= 2, r.out


@pytest.mark.parametrize("cmd", WHOLE)
def test_whole_config_command_help(bare, cmd):
    r = bare.ok(cmd, "--help")
    assert r.out.startswith(f"usage: smtpgwctl {cmd}"), r.out


def test_no_arguments_is_usage(bare):
    r = bare.fails(rc=2)
    assert "usage: smtpgwctl" in r.err


@pytest.mark.parametrize("argv,what", [
    (["frobnicate"], 'unknown command "frobnicate"'),
    (["--bogus"], 'unknown option "--bogus"'),
    (["zone"], "zone: missing verb"),
    (["zone", "explode"], 'zone: unknown verb "explode"'),
    (["policy", "explode"], 'policy: unknown verb "explode"'),
    (["tls-profile", "view", "x"], 'unknown verb "view"'),
    (["cert", "burn"], 'cert: unknown verb "burn"'),
    (["global", "drop"], 'global: unknown verb "drop"'),
    (["ruleset"], "ruleset: missing verb"),
    (["ruleset", "sort", "A", "filename"], 'ruleset: unknown verb "sort"'),
    (["rewrite", "add"], "rewrite add: expected NAME mail-from|rcpt-to"),
    (["zone", "add"], "zone add: expected NAME"),
    (["zone", "set-interface", "lan0"], "expected IFACE ZONE"),
    (["policy", "set", "a", "b"], "policy set: expected NAME KEY VALUE"),
    (["policy", "move", "x"], "policy move: expected NAME POSITION"),
    (["action", "clone", "x"], "action clone: expected FROM NEW"),
    (["action", "list", "extra"], "unexpected arguments"),
    (["policy", "add", "P", "--from"], "--from needs a value"),
    (["policy", "add", "P", "--colour", "red"], 'unknown option "--colour"'),
    (["policy", "add", "P", "--to", "external", "--action", "A"], "--from ZONES is required"),
    (["cert", "import-server", "only-one"], "expected CERT KEY"),
    (["show", "--sideways"], 'unknown option "--sideways"'),
    (["apply", "now"], "apply: unexpected arguments"),
    (["import"], "import: expected FILE"),
    (["init", "--board"], "--board needs a FILE"),
    (["-c"], "-c needs a FILE"),
])
def test_usage_errors_exit_2(bare, argv, what):
    r = bare.fails(*argv, rc=2)
    assert what in r.err, r
    assert "--help" in r.err, r


def test_usage_error_shows_the_synopsis(bare):
    r = bare.fails("zone", "set-interface", rc=2)
    assert "usage: smtpgwctl zone set-interface IFACE ZONE" in r.err


def test_help_and_manual_document_the_value_rules(bare):
    out = bare.ok("--help").out
    assert "Values: every name and value is checked before anything is read or" in out
    assert "one line on stderr with the value escaped, exit 2, nothing staged" in out
    man = (Path(__file__).resolve().parents[2] / "man" / "smtpgwctl.8").read_text()
    assert ".SH VALUES" in man
    for kind in ("names", "interfaces", "zone lists", "prefix lists", "numbers", "yes/no",
                 "words", "paths", "cipher strings", "setting names", "positions",
                 "common names", "file names"):
        assert f".I {kind}\n" in man, kind
    assert "a malformed name or value (see\n.BR VALUES )" in man


@pytest.mark.parametrize("argv,shown", [
    (["fr\nob"], r'unknown command "fr\nob"'),
    (["--bo\rgus"], r'unknown option "--bo\rgus"'),
    (["zone", "ex\x1bplode"], r'zone: unknown verb "ex\x1bplode"'),
    (["help", "to\x01pic"], r'help: unknown topic "to\x01pic"'),
    (["policy", "add", "P", "--co\nlour", "x"], r'unknown option "--co\nlour"'),
])
def test_usage_errors_show_arguments_escaped(bare, argv, shown):
    r = bare.fails(*argv, rc=2)
    assert shown in r.err.splitlines()[0], r
    assert all(0x20 <= ord(c) < 0x7f for c in r.err.replace("\n", "")), r
