"""Edits of the gateway's smtpgw.conf (the testbed's state copy), applied
with `testbed restart-gateway`, and put back afterwards."""

import re


def ini_set(text, section, key, value):
    """Set key = value in [section] of an ini text, keeping everything
    else (comments, order) as it is."""
    lines = text.splitlines()
    head = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]\s*$")
    start = next((i for i, l in enumerate(lines) if head.match(l)), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
    keyre = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start + 1, end):
        if keyre.match(lines[i]):
            lines[i] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    lines.insert(last + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


class GatewayConfig:
    """Edits the testbed's copy of smtpgw.conf and applies it with
    `testbed restart-gateway`; restore() puts the original back."""

    def __init__(self, tb):
        self.tb = tb
        self.path = tb.path("gw-conf")
        self.original = self.path.read_text()

    def set(self, section, key, value):
        self.update({(section, key): value})

    def update(self, settings):
        text = self.path.read_text()
        new = text
        for (section, key), value in settings.items():
            new = ini_set(new, section, key, value)
        if new != text:
            self.path.write_text(new)
            self.tb.restart_gateway()

    def restore(self):
        if self.path.read_text() != self.original or not self.tb.gateway_running():
            self.path.write_text(self.original)
            self.tb.restart_gateway()
