"""Inbound, the predefined rulesets strip executable attachments; the rest
of the message is delivered byte for byte, with the deny message in the
stripped part's place.

The testbed's inbound action takes SMTP-Incoming.Standard's rulesets
(rules-from).  A message from ext-client to int-mx with a text part and
an attachment that is:
- named invoice.exe (Content-Disposition filename),
- named evil.exe only in RFC 2231 form (filename*=UTF-8''evil%2Eexe,
  declared application/pdf),
- an executable by content (an MZ/PE header, libmagic's
  application/x-dosexec) sent as application/octet-stream "data.bin",
- a zip that holds setup.exe,
is accepted (250) and delivered with everything outside the attachment's
part byte-identical; the attachment's part is now a text/plain part with
the deny message naming the file; the gateway logs which rule matched.
A message whose attachments are harmless (a PDF, a zip of text) is
delivered byte-identical.  The same executable outbound (predefined
outbound rules only log) is delivered unchanged.
"""

import pytest

from conftest import flow, new_token, strip_trace
from lib.mimebuild import attachment, multipart, pe_bytes, send, text_part, zip_bytes

INBOUND = flow("inbound", 4)
OUTBOUND = flow("outbound", 4)

CASES = {
    "by-name": (attachment(b"%PDF-1.4 not really\r\n" * 20, "application/octet-stream",
                           'attachment; filename="invoice.exe"'), "invoice.exe"),
    "rfc2231-name": (attachment(b"plain text, no program\r\n" * 10, "application/pdf",
                                "attachment; filename*=UTF-8''evil%2Eexe"), "evil.exe"),
    "by-content": (attachment(pe_bytes(), "application/octet-stream",
                              'attachment; filename="data.bin"'), "data.bin"),
    "in-zip": (attachment(zip_bytes({"readme.txt": b"hello\n", "setup.exe": pe_bytes()}),
                          "application/zip", 'attachment; filename="bundle.zip"'),
               "bundle.zip"),
}


def delivered(testbed, host, token):
    return strip_trace(testbed.wait_for_message(host, token))


@pytest.mark.qemu
@pytest.mark.parametrize("case", sorted(CASES))
def test_attachment_stripped_rest_byte_exact(testbed, case):
    part, name = CASES[case]
    token = new_token()
    text, spans = multipart(token, [text_part(f"Hello, see attached. {token}\r\n"), part])
    off = testbed.log_offset()
    send(testbed, INBOUND, text)
    got = delivered(testbed, INBOUND.server, token).replace("\n", "\r\n")
    start, end = spans[1]
    before, after = text[:start], text[end:]
    assert got.startswith(before), "the message before the attachment changed"
    assert got.endswith(after), "the message after the attachment changed"
    new_part = got[len(before):len(got) - len(after)]
    assert new_part.startswith("Content-Type: text/plain"), new_part[:200]
    assert "stripped" in new_part and name in new_part, new_part
    assert "TVqQ" not in new_part and "UEsDB" not in new_part  # no MZ / zip bytes left
    log = testbed.log_since(off)
    assert "inspect rule ruleset=" in log and "action=strip" in log, log[-2000:]


def test_harmless_attachments_untouched(testbed):
    token = new_token()
    text, _ = multipart(token, [
        text_part(f"Two harmless files. {token}\r\n"),
        attachment(b"%PDF-1.4\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj\r\n<<>>\r\nendobj\r\n",
                   "application/pdf", 'attachment; filename="report.pdf"'),
        attachment(zip_bytes({"notes.txt": b"just text\n"}), "application/zip",
                   'attachment; filename="notes.zip"'),
    ])
    send(testbed, INBOUND, text)
    assert delivered(testbed, INBOUND.server, token) == text.replace("\r\n", "\n")


def test_outbound_executable_logged_not_stripped(testbed):
    token = new_token()
    part, _ = CASES["by-name"]
    text, _ = multipart(token, [text_part(f"Outbound. {token}\r\n"), part])
    text = text.replace("From: <alice@ext.test>", "From: <alice@int.test>").replace(
        "To: <user@int.test>", "To: <user@ext.test>")
    off = testbed.log_offset()
    send(testbed, OUTBOUND, text)
    assert delivered(testbed, OUTBOUND.server, token) == text.replace("\r\n", "\n")
    log = testbed.log_since(off)
    assert "ruleset=filename" in log and "action=allow" in log, log[-2000:]
