"""A virus in a strip-mode action: the infected part is stripped, the rest
is delivered byte for byte with the deny message in its place.

Testbed-Incoming with av-on-virus = strip.  A message with a text part
and a base64 attachment (data.bin) holding the EICAR test file, sent to a
scripted MX, so the delivered octets can be compared:
- the client gets the destination's 250;
- everything before the infected part and everything after it (its
  delimiter, the close delimiter) arrives exactly as sent, dot-stuffing
  included; in the part's place: a text/plain part with the deny message,
  naming the virus, "stripped" and the quarantine ID;
- the quarantine holds the original, byte-exact, verdict strip;
- the same with antivirus = attachments (each part its own INSTREAM) and
  with antivirus = message (the whole message, then the parts, to find
  the infected one).
"""

import pytest

from conftest import ADDR, flow, scripted_smtp
from lib.scanners import (EICAR, EICAR_NAME, _b64, _multipart, dot_stuff_bytes,
                          quarantine_of, quarantined_message, scanners_up, send_through)
from lib.topology import new_token

FL = flow("inbound", 4)
MX = ADDR["int-script"][4]


def infected(token):
    return _multipart(token, "strip me", [
        ("text/plain; charset=us-ascii", "", ".dot-leading line, kept as it is\r\n"
         "The file is attached."),
        ("application/octet-stream; name=\"data.bin\"",
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"data.bin\"\r\n", _b64(EICAR)),
    ])


@pytest.fixture(scope="module", autouse=True)
def scanners(testbed):
    scanners_up(testbed)


@pytest.mark.parametrize("mode", ["attachments", "message"])
def test_strip(testbed, gateway_config, scripted_server, mode):
    gateway_config.update({("action Testbed-Incoming", "antivirus"): mode,
                           ("action Testbed-Incoming", "av-on-virus"): "strip"})
    srv = scripted_server(scripted_smtp(), side="int")
    token = new_token()
    data = infected(token)
    reply, sid, offset = send_through(testbed, FL, data, server=MX)
    assert reply.code == 250 and "SCRIPTED" in reply.text, str(reply)
    sess = srv.session()
    assert len(sess.messages) == 1, sess.events
    got = sess.messages[0] + b".\r\n"  # as dot_stuff_bytes ends it
    sent = dot_stuff_bytes(data)
    # the attachment is the second part: from its delimiter line to the close delimiter
    delim = f"--b-{token}\r\n".encode()
    head_end = sent.index(delim, sent.index(delim) + 1) + len(delim)
    tail_start = sent.index(f"--b-{token}--\r\n".encode())
    assert got[:head_end] == sent[:head_end]
    assert got.endswith(sent[tail_start:])
    part = got[head_end:len(got) - (len(sent) - tail_start)]
    text = part.decode("ascii")
    assert text.startswith("Content-Type: text/plain; charset=us-ascii\r\n"
                           "Content-Transfer-Encoding: 7bit\r\n"
                           "Content-Disposition: inline\r\n\r\n"), text
    assert EICAR_NAME in text and "stripped" in text and "data.bin" in text, text
    assert _b64(EICAR)[:40] not in text
    line = testbed.wait_gateway_line(offset, sid, r"inspect scan ")
    assert f"virus={EICAR_NAME}" in line, line
    rec = quarantine_of(testbed, sid)
    assert rec is not None and rec["verdict"] == "strip", rec
    assert rec["id"] in text, text
    assert quarantined_message(testbed, rec["id"]) == data
