"""The EHLO capabilities the client sees: the upstream's, filtered.

Proves that smtpgw shows the client what the upstream offers out of
{PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, DSN, AUTH},
SIZE capped at max-message-size, plus CHUNKING always (allow-chunking),
and nothing else: a scripted upstream that also offers XCLIENT, XFORWARD,
ETRN, VRFY, EXPN, HELP, BINARYMIME and a private X- keyword shows none of
them.  (STARTTLS is left out of these checks: whether it is shown depends
on the proxy action's tls-action, which the TLS tests cover.)  XCLIENT
and ETRN from the client get `500 5.5.2` from the gateway and never
reach the upstream.  With allow-auth = no and allow-chunking = no, AUTH
and CHUNKING are gone too.
"""

from conftest import ADDR, scripted_smtp

UPSTREAM = ("PIPELINING", "SIZE 99999999999", "8BITMIME", "SMTPUTF8",
            "ENHANCEDSTATUSCODES", "DSN", "AUTH PLAIN LOGIN", "STARTTLS",
            "XCLIENT NAME ADDR PROTO HELO", "XFORWARD NAME ADDR PROTO HELO",
            "ETRN", "VRFY", "EXPN", "HELP", "BINARYMIME", "X-PRIVATE-EXT")
DEFAULT_MAX = 50 * 1024 * 1024


def shown(testbed, family=4):
    """The keywords the gateway shows, STARTTLS left out (see above)."""
    with testbed.connect("int-client", ADDR["ext-script"][family]) as c:
        r = c.ehlo("client.int.test")
        assert r.lines[0] == "250-script.test", c.dialogue()
        return [l[4:] for l in r.lines[1:] if l[4:] != "STARTTLS"], c


def test_filtered_and_capped(testbed, scripted_server):
    scripted_server(scripted_smtp(ehlo=UPSTREAM))
    kws, _ = shown(testbed)
    assert sorted(kws) == sorted(["PIPELINING", f"SIZE {DEFAULT_MAX}", "8BITMIME",
                                  "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN",
                                  "AUTH PLAIN LOGIN", "CHUNKING"]), kws


def test_small_upstream_size_kept_chunking_added(testbed, scripted_server):
    scripted_server(scripted_smtp(ehlo=("SIZE 1000000",)), family=6)
    kws, _ = shown(testbed, 6)
    assert sorted(kws) == ["CHUNKING", "SIZE 1000000"], kws


def test_removed_commands_not_forwarded(testbed, scripted_server):
    srv = scripted_server(scripted_smtp(ehlo=UPSTREAM))
    with testbed.connect("int-client", ADDR["ext-script"][4]) as c:
        c.ehlo("client.int.test")
        for cmd in ("XCLIENT ADDR=203.0.113.9", "ETRN ext.test"):
            r = c.cmd(cmd)
            assert r.code == 500 and r.lines[-1].startswith("500 5.5.2 "), c.dialogue()
        assert c.cmd("QUIT").code == 221
    assert [l.split()[0] for l in srv.session().commands] == ["EHLO", "QUIT"]


def test_auth_and_chunking_off(testbed, scripted_server, gateway_config):
    gateway_config.update({("global", "allow-auth"): "no",
                           ("global", "allow-chunking"): "no"})
    scripted_server(scripted_smtp(ehlo=UPSTREAM))
    kws, _ = shown(testbed)
    assert "CHUNKING" not in kws and not any(k.startswith("AUTH") for k in kws), kws
    assert "PIPELINING" in kws, kws
