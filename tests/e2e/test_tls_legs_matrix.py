"""Sender and recipient encryption are two legs, each standing on its own:
all nine combinations of sender-encryption x recipient-encryption (none,
preferred, required) on the outbound action, with a destination that
offers STARTTLS (ext-mx's Postfix).

The client is opportunistic: int-client says EHLO, uses STARTTLS when it
is shown (SNI mx.ext.test), then sends one message.  For each
combination the test checks on which legs TLS actually ran - the
gateway's `tls ready side=client` / `side=server` lines for the session,
ext-mx's own log of the gateway's connection ("TLS connection
established") and the Received header ext-mx wrote ("with ESMTPS") - and
that the message was delivered:

  sender \\ recipient   none          preferred      required
  none                 clear/clear   clear/TLS      clear/TLS
  preferred            clear/clear*  TLS/TLS        TLS/TLS
  required             refused**     TLS/TLS        TLS/TLS

- the recipient leg goes TLS whenever it is preferred or required and
  the destination offers it, whether or not the client asked: the
  gateway runs STARTTLS upstream itself before the client's MAIL
  (`tls recipient-leg start`), which is new - before, a cleartext client
  was relayed in cleartext, and under `required` got `451 4.7.0` forever;
- * STARTTLS is shown but answered `454 4.7.0` (recipient-encryption
  none: no TLS to the client while its mail goes on in cleartext), and
  the client goes on in cleartext;
- ** sender required with recipient none is refused by `smtpgw -t`
  (no session could satisfy it); with `allow-cleartext-relay = yes` it
  runs TLS/clear;
- sender required: a client that does not use STARTTLS gets `530 5.7.0`
  to MAIL, and nothing is sent.
"""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, flow, ini_set, new_token
from tlsutil import legs, mx_saw_tls, received_with_tls, send_opportunistic

FL = flow("outbound", 4)
ACTION = "action Testbed-Outgoing"
LEVELS = ("none", "preferred", "required")
COMBOS = [(s, r) for s in LEVELS for r in LEVELS]


def expected(sender, recipient):
    """(client leg TLS, upstream leg TLS) for the opportunistic client."""
    up = recipient != "none"
    return (sender != "none" and up, up)


def check_legs(testbed, run, off, mxoff, client_tls, up_tls, token):
    sid = testbed.gateway_session(off, FL.client_addr, run.lport)
    assert run.delivered, run.dialogue
    assert run.client_tls == client_tls, run.dialogue
    assert legs(testbed, off, sid) == {"client": client_tls, "server": up_tls}, \
        testbed.log_since(off)
    assert mx_saw_tls(testbed, FL, mxoff, off, sid) == up_tls
    msg = testbed.wait_for_message(FL.server, token)
    assert received_with_tls(msg) == up_tls, msg.split("\n\n")[0]
    return sid


@pytest.mark.parametrize("sender,recipient", COMBOS, ids=[f"{s}-{r}" for s, r in COMBOS])
def test_leg_combination(testbed, gateway_config, sender, recipient):
    if (sender, recipient) == ("required", "none"):
        check_refused_and_cleartext_relay(testbed, gateway_config)
        return
    gateway_config.update({(ACTION, "sender-encryption"): sender,
                           (ACTION, "recipient-encryption"): recipient})
    client_tls, up_tls = expected(sender, recipient)
    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token, sni="mx.ext.test")
    assert run.starttls_shown == (sender != "none"), run.dialogue
    if sender != "none" and recipient == "none":
        assert run.starttls_reply.code == 454, run.dialogue
    sid = check_legs(testbed, run, off, mxoff, client_tls, up_tls, token)
    if up_tls and not client_tls:
        testbed.wait_gateway_line(off, sid, r"tls recipient-leg start recipient-encryption=")
        testbed.wait_gateway_line(off, sid, r"tls recipient-leg ready ")

    if sender == "required":
        # a client that does not use STARTTLS sends nothing
        off = testbed.log_offset()
        run = send_opportunistic(testbed, FL, new_token(), use_starttls=False)
        assert run.mail_reply.code == 530 and not run.delivered, run.dialogue
        sid = testbed.gateway_session(off, FL.client_addr, run.lport)
        assert legs(testbed, off, sid) == {"client": False, "server": False}


def check_refused_and_cleartext_relay(testbed, gateway_config):
    text = gateway_config.path.read_text()
    bad = ini_set(ini_set(text, ACTION, "sender-encryption", "required"), ACTION,
                  "recipient-encryption", "none")
    tmp = gateway_config.path.with_name("smtpgw.conf.legs-test")
    try:
        tmp.write_text(bad)
        smtpgw = Path(os.environ.get("SMTPGW_BUILDDIR", REPO / "build")) / "daemon" / "smtpgw"
        r = subprocess.run([str(smtpgw), "-t", "-c", str(tmp)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0, r.stdout + r.stderr
        assert "needs allow-cleartext-relay = yes" in r.stderr, r.stderr
    finally:
        tmp.unlink(missing_ok=True)
    gateway_config.update({(ACTION, "sender-encryption"): "required",
                           (ACTION, "recipient-encryption"): "none",
                           (ACTION, "allow-cleartext-relay"): "yes"})
    token = new_token()
    off, mxoff = testbed.log_offset(), testbed.maillog_offset(FL.server)
    run = send_opportunistic(testbed, FL, token, sni="mx.ext.test")
    check_legs(testbed, run, off, mxoff, True, False, token)
