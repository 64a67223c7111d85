"""Inbound, executables that used to slip past the predefined rulesets are
stripped like any other, through the testbed's gateway to int-mx.

Each message from ext-client has a text part and one attachment built to
get past a rule that looked only at the obvious spelling:
- "run.js." (Content-Disposition filename): Windows saves it as run.js,
  a script libmagic does not call an executable, so only the *.js name
  rule can catch it -- it now sees the name as it would be saved;
- a zip that holds setup.exe behind 4 KiB of other octets, offsets moved
  to match (a self-extractor's layout: unzip, 7-Zip and Explorer open
  it), declared application/zip: libmagic, shown the first octets, saw
  no archive, so the archive was never opened;
- an attached message declared message/news (Thunderbird opens it like
  message/rfc822) whose own attachment is evil.exe: it was one opaque
  leaf.
Each is accepted (250) and delivered with the dangerous part replaced by
the deny message naming the file, and none of its octets left; the
gateway logs the rule that matched.  rspamd is off for the module: a
spam verdict may add X-Spam headers, and the test compares the text
before the attachment octet for octet.
"""

import struct

import pytest

from conftest import flow, new_token, strip_trace
from lib.mimebuild import Part, attachment, b64lines, multipart, pe_bytes, send, text_part, \
    zip_bytes

INBOUND = flow("inbound", 4)


@pytest.fixture(scope="module", autouse=True)
def no_spam_headers(module_gateway_config):
    module_gateway_config.update({("action Testbed-Incoming", "spam"): "off"})
    yield


def sfx(zipdata, prefix=4096):
    """zipdata behind prefix octets, its offsets moved as `zip -A` does."""
    z = bytearray(zipdata)
    eocd = z.rindex(b"PK\x05\x06")
    n, _, cd = struct.unpack_from("<HII", z, eocd + 10)
    struct.pack_into("<I", z, eocd + 16, cd + prefix)
    for _ in range(n):
        assert z[cd:cd + 4] == b"PK\x01\x02"
        (off,) = struct.unpack_from("<I", z, cd + 42)
        struct.pack_into("<I", z, cd + 42, off + prefix)
        ln, lx, lc = struct.unpack_from("<HHH", z, cd + 28)
        cd += 46 + ln + lx + lc
    return bytes((i * 131 + 7) & 0xFF for i in range(prefix)) + bytes(z)


NEWS = ("From: <news@ext.test>\r\nNewsgroups: ext.test.misc\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
        "--inner\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--inner\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + b64lines(pe_bytes()) +
        "--inner--\r\n")

CASES = {
    "trailing-dot": (attachment(b"WScript.Echo('hello');\r\n" * 10,
                                "application/octet-stream", 'attachment; filename="run.js."'),
                     "run.js", "V1Nj"),
    "sfx-zip": (attachment(sfx(zip_bytes({"readme.txt": b"hello\n", "setup.exe": pe_bytes()})),
                           "application/zip", 'attachment; filename="bundle.zip"'),
                "bundle.zip", None),
    "message-news": (Part(["Content-Type: message/news"], NEWS), "evil.exe", "TVoAAA"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bypass_stripped(testbed, case):
    part, name, leftover = CASES[case]
    token = new_token()
    text, spans = multipart(token, [text_part(f"Hello, see attached. {token}\r\n"), part])
    off = testbed.log_offset()
    send(testbed, INBOUND, text)
    got = strip_trace(testbed.wait_for_message(INBOUND.server, token)).replace("\n", "\r\n")
    start, end = spans[1]
    before, after = text[:start], text[end:]
    assert got.startswith(before), "the message before the attachment changed"
    assert got.endswith(after), "the message after the attachment changed"
    new_part = got[len(before):len(got) - len(after)]
    assert "stripped" in new_part and name in new_part, new_part
    if leftover:
        assert leftover not in new_part, new_part
    if case == "sfx-zip":
        assert new_part.startswith("Content-Type: text/plain"), new_part[:200]
        assert part.body[:40] not in new_part, "the archive's octets are still there"
    log = testbed.log_since(off)
    assert "inspect rule ruleset=" in log and "action=strip" in log, log[-2000:]
