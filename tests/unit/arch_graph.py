#!/usr/bin/python3
"""arch_graph - the module graph in ARCHITECTURE.md is the #include graph
of daemon/ (the way test_mark.c keeps the ruleset and mark.h in step).

Usage: arch_graph.py SOURCE_ROOT

Derives the graph from the code: a module is a file stem in daemon/, its
edges are the `#include "X.h"` lines of its .c and .h (an edge to module
X; a module's own header is not an edge).  Reads the graph from the first
fenced block after the heading "## Modules and what each may call" in
ARCHITECTURE.md, as that section defines it: lines `LEFT ──> RIGHT` (or
`->`), LEFT one or more modules, RIGHT modules or `nothing`, both
comma-separated, parentheses are comments, a module may head several
lines.  Exits 1 naming every missing and extra edge, every module the
graph lacks or does not know, and every line it cannot read; prints the
code's line for each module that is wrong.
"""

import re
import sys
from pathlib import Path

HEADING = "## Modules and what each may call"
ARROW = re.compile(r"\s*(?:──>|->)\s*")
NAME = re.compile(r"[a-z_][a-z0-9_]*")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)\.h"', re.M)


def code_graph(daemon):
    graph = {}
    for f in sorted(daemon.glob("*.[ch]")):
        mod = f.stem
        edges = graph.setdefault(mod, set())
        for inc in INCLUDE.findall(f.read_text(errors="replace")):
            if inc != mod:
                edges.add(inc)
    return graph


def graph_block(text):
    """(first line number, lines) of the graph's fenced block."""
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == HEADING)
    except StopIteration:
        raise SystemExit(f'ARCHITECTURE.md: no heading "{HEADING}"')
    fences = [i for i in range(start + 1, len(lines)) if lines[i].startswith("```")]
    if len(fences) < 2:
        raise SystemExit(f'ARCHITECTURE.md: no fenced block after "{HEADING}"')
    return fences[0] + 2, lines[fences[0] + 1:fences[1]]


def names(part, where, errors):
    out = []
    for word in part.split(","):
        word = word.strip()
        if not NAME.fullmatch(word):
            errors.append(f"{where}: \"{word}\" is not a module name")
        else:
            out.append(word)
    return out


def doc_graph(text, errors):
    first, lines = graph_block(text)
    graph = {}
    for n, line in enumerate(lines, first):
        where = f"ARCHITECTURE.md:{n}"
        stmt = line
        while True:  # comments, innermost first
            s = re.sub(r"\([^()]*\)", "", stmt)
            if s == stmt:
                break
            stmt = s
        if "(" in stmt or ")" in stmt:
            errors.append(f"{where}: unbalanced parentheses: {line.strip()}")
            continue
        if not stmt.strip():
            continue
        parts = ARROW.split(stmt.strip())
        if len(parts) != 2:
            errors.append(f"{where}: not \"LEFT ──> RIGHT\": {line.strip()}")
            continue
        left = names(parts[0], where, errors)
        right = [] if parts[1].strip() == "nothing" else names(parts[1], where, errors)
        for mod in left:
            graph.setdefault(mod, set()).update(right)
    return graph


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    code = code_graph(root / "daemon")
    errors = []
    doc = doc_graph((root / "ARCHITECTURE.md").read_text(), errors)

    wrong = set()
    for mod in sorted(set(code) - set(doc)):
        errors.append(f"module {mod} heads no line of the graph")
        wrong.add(mod)
    for mod in sorted(set(doc) - set(code)):
        errors.append(f"the graph names module {mod}, which daemon/ does not have")
    for mod in sorted(set(code) & set(doc)):
        for dep in sorted(code[mod] - doc[mod]):
            errors.append(f"missing edge {mod} ──> {dep} (daemon/{mod}.* includes {dep}.h)")
            wrong.add(mod)
        for dep in sorted(doc[mod] - code[mod]):
            what = (f"no daemon/{mod}.* includes {dep}.h" if dep in code
                    else f"daemon/ has no module {dep}")
            errors.append(f"extra edge {mod} ──> {dep} ({what})")
            wrong.add(mod)
    if not errors:
        print(f"ARCHITECTURE.md's graph is the include graph of daemon/ "
              f"({len(code)} modules, {sum(len(e) for e in code.values())} edges)")
        return 0
    print("ARCHITECTURE.md's module graph disagrees with daemon/:", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    if wrong:
        print("the code's edges of those modules:", file=sys.stderr)
        for mod in sorted(wrong):
            print(f"  {mod} ──> {', '.join(sorted(code[mod])) or 'nothing'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
