"""Messages: as a test sends them (RFC 5322 text, DATA dot-stuffing) and
as Postfix delivered them (trace headers, Delivered-To, Received)."""

import re


def message(token, headers=(), body="", subject=None):
    """An RFC 5322 message (CRLF line ends) carrying token."""
    lines = ["From: <alice@int.test>",
             "To: <user@ext.test>",
             f"Subject: {subject or 'smtpgw e2e ' + token}",
             "Date: Thu, 01 Jan 2026 00:00:00 +0000",
             f"Message-ID: <{token}@client.test>",
             *headers, ""]
    text = "\r\n".join(lines) + "\r\n" + (body or f"token {token}\r\n")
    return text


def dot_stuff(text):
    """DATA encoding of a CRLF text: leading dots doubled, end marker."""
    lines = text.split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in lines) + ".\r\n"


TRACE_HEADERS = ("return-path:", "x-original-to:", "delivered-to:", "received:")


def strip_trace(delivered):
    """A delivered Maildir message without the trace headers Postfix
    put on top (Return-Path, X-Original-To, Delivered-To, Received)."""
    lines = delivered.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].lower().startswith(TRACE_HEADERS):
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "\t"):
                i += 1
            continue
        break
    return "\n".join(lines[i:])


def delivered_to(text):
    """The Delivered-To address of a delivered message."""
    m = re.search(r"^Delivered-To: (\S+)$", text, re.M)
    return m.group(1) if m else None


def received_from_addr(message):
    """Client address in the first (topmost) Received header that Postfix
    added: 'Received: from helo (unknown [192.0.2.10])' or
    '... [IPv6:2001:db8:1::10])'."""
    head = message.split("\n\n", 1)[0]
    unfolded = re.sub(r"\n[ \t]+", " ", head)
    for line in unfolded.splitlines():
        if line.lower().startswith("received:"):
            m = re.search(r"\(\S*\s*\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]\)", line)
            return m.group(1) if m else None
    return None
