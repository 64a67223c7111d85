"""The gateway's log as data: key=value fields (a quoted value's escapes
decoded by log_unquote), host:port values, session lines, the tail of a
text for failure messages."""

import re


FIELD_RE = re.compile(r'(?:^|\s)([a-z][a-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def log_fields(line):
    """key=value fields of one log line, as a dict of strings; a quoted
    value without its quotes, its escapes kept (log_unquote decodes them)."""
    return {k: v[1:-1] if v.startswith('"') else v for k, v in FIELD_RE.findall(line)}


def log_unquote(value):
    """A logged value as the peer sent it: the surrounding double quotes
    gone (log_fields already strips them) and the escapes of a quoted
    value decoded - \\" and \\\\, and \\xHH for other bytes
    ('"/CN=a \\"b\\""' -> '/CN=a "b"', 'x\\x0d' -> 'x\\r')."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r'\\(x[0-9a-fA-F]{2}|["\\])',
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                  else m.group(1), value)


def split_hostport(value):
    """'192.0.2.10:40000' or '[2001:db8::1]:40000' -> (addr, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([0-9.]+):(\d+)", value)
    if not m:
        raise ValueError(f"not an address:port: {value!r}")
    if m.group(1):
        return m.group(1), int(m.group(2))
    return m.group(3), int(m.group(4))


def session_lines(text):
    """(line, fields) for every log line that describes a session's
    endpoints and classification."""
    out = []
    for line in text.splitlines():
        f = log_fields(line)
        if {"client", "server", "zone", "direction"} <= f.keys():
            out.append((line, f))
    return out


def tail(text, n):
    return "\n".join(text.splitlines()[-n:])
