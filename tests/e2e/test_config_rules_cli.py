"""A filename rule added with `smtpgwctl ruleset` is what the gateway runs,
and deleting it gives the old behaviour back.

On the testbed's gateway, through `testbed exec gw smtpgwctl`: the action
of SMTP-Proxy-Out (Testbed-Outgoing, which takes its rulesets from
SMTP-Outgoing.Standard by rules-from) is cloned to Out-Rules; two rules
are added to its filename ruleset -- "strip log alarm pattern *.exe" at
position 1, ahead of the predefined "allow log pattern *.exe" (first
match wins), and "deny log pattern *.iso" last -- which gives Out-Rules
its own copy of the inherited ruleset; SMTP-Proxy-Out gets Out-Rules and
the change is applied.  Then, in one client session through the gateway:

- a message with tool.exe attached is delivered with the attachment
  replaced by the deny message (its text part intact, its base64 gone),
  the gateway logs the rule and an alarm, and `smtpgwctl status` counts
  the alarm;
- a message with disk.iso attached is refused at its end of data with
  554 5.7.1 and the deny message's first line, and never delivered;
- the next message of the same session is delivered.

Both rules are deleted again (`ruleset del`), the listing is the
predefined outbound ruleset again, the change is applied, and the same
two attachments now pass untouched.
"""

import base64
import re
import time

from conftest import dot_stuff, flow, new_token, random_lport
from gwctl import gwctl  # noqa: F401 (fixture)

ACTION = "Out-Rules"


def b64(data):
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def with_attachment(fl, token, name):
    """A multipart message with a text part and one attachment named name;
    returns (message, the attachment's base64 text)."""
    payload = b64(f"attachment {name} of {token}\n".encode() * 40)
    b = f"b-{token}"
    msg = (f"From: <{fl.sender}>\r\nTo: <{fl.rcpt}>\r\n"
           f"Subject: {name} {token}\r\nMessage-ID: <{name}.{token}@int.test>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
           f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
           f"The file {name} is attached ({token}).\r\n"
           f"--{b}\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n"
           f"Content-Transfer-Encoding: base64\r\n"
           f"Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
           f"{payload}\r\n--{b}--\r\n")
    return msg, payload.split("\r\n")[0]


def transaction(c, fl, msg):
    """One MAIL/RCPT/DATA; the reply to the end of data."""
    assert c.cmd(f"MAIL FROM:<{fl.sender}>").code == 250, c.dialogue()
    assert c.cmd(f"RCPT TO:<{fl.rcpt}>").code == 250, c.dialogue()
    assert c.cmd("DATA").code == 354, c.dialogue()
    c.send(dot_stuff(msg))
    return c.reply(timeout=30)


def alarms(gwctl):
    out = gwctl.run("status").stdout
    m = re.search(r"(\d+) alarms", out)
    assert m, out
    return int(m.group(1))


def filename_rules(gwctl):
    out = gwctl.ok("ruleset", "list", ACTION, "filename").stdout.splitlines()
    return out[0], [l.split()[1:] for l in out[2:-1]], out[-1]


def test_filename_rule_through_the_cli(testbed, gwctl):
    fl = flow("outbound", 4)
    a_out = gwctl.policy_action(fl.policy)
    gwctl.ok("action", "clone", a_out, ACTION)
    _, inherited, _ = filename_rules(gwctl)
    assert inherited[0] == ["allow", "log", "pattern", "*.exe"], inherited
    r = gwctl.ok("ruleset", "add", ACTION, "filename", "--position", "1",
                 "strip", "log", "alarm", "pattern", "*.exe")
    assert "took its own copy" in r.stdout, r.stdout
    gwctl.ok("ruleset", "add", ACTION, "filename", "deny", "log", "pattern", "*.iso")
    head, rows, dflt = filename_rules(gwctl)
    assert head == f"Ruleset filename of proxy action {ACTION} (its own)", head
    assert rows[0] == ["strip", "log,alarm", "pattern", "*.exe"], rows
    assert rows[1:-1] == inherited and rows[-1] == ["deny", "log", "pattern", "*.iso"], rows
    gwctl.ok("policy", "set", fl.policy, "action", ACTION)
    gwctl.apply()
    assert f"[action {ACTION}]" in gwctl.active.read_text()

    alarms_before = alarms(gwctl)
    token = new_token()
    exe, exe_b64 = with_attachment(fl, token, "tool.exe")
    iso, iso_b64 = with_attachment(fl, token, "disk.iso")
    after = f"From: <{fl.sender}>\r\nTo: <{fl.rcpt}>\r\nSubject: after {token}\r\n\r\nok\r\n"
    offset = testbed.log_offset()
    lport = random_lport()
    with testbed.connect(fl.client, fl.server_addr, lport=lport) as c:
        c.ehlo(fl.helo)
        r = transaction(c, fl, exe)
        assert r.code == 250, c.dialogue()
        r = transaction(c, fl, iso)
        assert r.code == 554, c.dialogue()
        assert r.lines[-1].startswith(
            "554 5.7.1 The message was not delivered as sent: filename disk.iso"), c.dialogue()
        r = transaction(c, fl, after)
        assert r.code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221, c.dialogue()
    sid = testbed.gateway_session(offset, fl.client_addr, lport)

    # the .exe: delivered, its attachment replaced by the deny message
    got = testbed.wait_for_message(fl.server, f"tool.exe {token}")
    assert f"The file tool.exe is attached ({token})." in got
    assert exe_b64 not in got
    assert "Content-Type: text/plain; charset=us-ascii" in got
    assert "The message was not delivered as sent: filename tool.exe" in got
    assert "File name: tool.exe" in got and "Action taken: stripped" in got
    # the .iso: never delivered; the message after it: delivered
    testbed.wait_for_message(fl.server, f"after {token}")
    assert testbed.messages_with(fl.server, f"disk.iso {token}") == []
    testbed.wait_gateway_line(offset, sid, r'inspect rule ruleset=filename item="?tool\.exe"? '
                              r'rule="strip log alarm pattern \*\.exe" action=strip')
    testbed.wait_gateway_line(offset, sid, r'alarm ruleset=filename item="?tool\.exe"?')
    testbed.wait_gateway_line(offset, sid, r'inspect rule ruleset=filename item="?disk\.iso"? '
                              r'rule="deny log pattern \*\.iso" action=deny')
    deadline = time.monotonic() + 10
    while alarms(gwctl) < alarms_before + 1:
        assert time.monotonic() < deadline, "smtpgwctl status does not count the alarm"
        time.sleep(0.2)

    # delete both rules: the predefined outbound ruleset again
    gwctl.ok("ruleset", "del", ACTION, "filename", "last")
    gwctl.ok("ruleset", "del", ACTION, "filename", "first")
    assert filename_rules(gwctl)[1] == inherited
    gwctl.apply()
    token = new_token()
    exe, exe_b64 = with_attachment(fl, token, "tool.exe")
    iso, iso_b64 = with_attachment(fl, token, "disk.iso")
    offset = testbed.log_offset()
    with testbed.connect(fl.client, fl.server_addr, lport=random_lport()) as c:
        c.ehlo(fl.helo)
        assert transaction(c, fl, exe).code == 250, c.dialogue()
        assert transaction(c, fl, iso).code == 250, c.dialogue()
        assert c.cmd("QUIT").code == 221, c.dialogue()
    got = testbed.wait_for_message(fl.server, f"tool.exe {token}")
    assert exe_b64 in got and "Action taken" not in got
    got = testbed.wait_for_message(fl.server, f"disk.iso {token}")
    assert iso_b64 in got
    # logged by the predefined rule, allowed
    assert re.search(r'rule="allow log pattern \*\.exe" action=allow',
                     testbed.log_since(offset)), testbed.log_since(offset)[-2000:]
