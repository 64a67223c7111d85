"""A box that boots without a usable configuration fails closed: SMTP through
it is reset and reaches no server, other traffic is routed, and mail flows
again once a valid configuration is applied.  Its logs in RAM stay within
their bound however much is logged.

The appliance booted from the disk image with UEFI.  The admin keeps a
backup (`smtpgwctl export`) and "resets" the box by deleting smtpgw.conf;
a board map of their own on the configuration partition (/etc/smtpgw/board)
has a typo, so the first-boot `smtpgwctl init` cannot write a new
configuration.  They also ask for small logs (`log-rotate 64 2` in
/etc/smtpgw/network).  Reboot.  (Before the fix, a missing configuration
took the "gateway off" path and forwarding was switched on anyway: SMTP
crossed the box uninspected.)

After the reboot: the boot log says why the gateway cannot run and that it
is FAIL-CLOSED; forwarding is on; smtpgw does not run and smtpgwctl status
says FAIL-CLOSED.  From both clients, SMTP on 25 and 465 over IPv4 and IPv6
is refused at once with a TCP reset and neither Postfix logs a connection,
while a TCP connection to another port crosses the box.  syslogd writes
through logrotate with the limits asked for, into a /var/log tmpfs with a
size cap; 1 MiB of syslog lines leaves /var/log/messages and its two old
copies within 3 x 64 KiB, the newest line in the current file.  Then
`smtpgwctl import` of the backup and `smtpgwctl apply` load the
interception ruleset, the supervisor starts smtpgw, and mail is delivered
both ways, IPv4 and IPv6.  The board map, the log setting and the backup
are removed at the end (the configuration is the one from before).
"""

import time

import pytest

from conftest import e2e, note_time, remember


@pytest.fixture
def tb(appliance, request):
    return remember(request, appliance("qemu-x86_64", "disk"))


def mx_connects(tb):
    """Connections each MX's Postfix has logged so far."""
    return {h: tb.maillog(h).count("connect from") for h in ("int-mx", "ext-mx")}


def test_no_usable_configuration_fails_closed(tb):
    tb.sh("smtpgwctl export /etc/smtpgw/backup.conf && rm /etc/smtpgw/smtpgw.conf && "
          "printf 'lan0 inside\\nwan0 external\\nmgmt0 none\\n' >/etc/smtpgw/board && "
          "echo 'log-rotate 64 2' >>/etc/smtpgw/network && sync")
    try:
        secs = tb.reboot(ready=False)
        note_time("uefi disk: reboot without a configuration to SSH", secs)
        check_smtp_is_reset(tb)
        boot = tb.boot_log()
        assert "first boot: default configuration (smtpgwctl init)" in boot, boot
        assert 'role "inside" is not trusted, external or none' in boot, boot
        assert ("ERROR: the gateway cannot run: there is no configuration "
                "(/etc/smtpgw/smtpgw.conf)") in boot, boot
        assert "FAIL-CLOSED: every SMTP connection through the box is reset" in boot, boot
        assert tb.sh("cat /run/gateway-state").strip() == "fail-closed"
        assert tb.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding"
                     ).split() == ["1", "1"]
        r = tb.exec("gw", "smtpgw-service", "status", timeout=30)
        assert r.returncode == 3, r.stdout + r.stderr
        status = tb.exec("gw", "smtpgwctl", "status", timeout=60)
        assert status.returncode == 1
        assert "ruleset: FAIL-CLOSED" in status.stdout, status.stdout + status.stderr
        assert "not starting smtpgw: no configuration file" in tb.sh("smtpgw-service log")

        check_other_traffic_is_routed(tb)
        check_logs_are_bounded(tb)

        # The admin restores the backup: the interception ruleset replaces
        # the fail-closed one and the supervisor starts smtpgw.
        out = tb.sh("smtpgwctl import /etc/smtpgw/backup.conf && smtpgwctl apply")
        assert "ruleset loaded" in out, out
        t0 = time.monotonic()
        tb.wait_smtpgw(timeout=60)
        note_time("fail-closed: apply to smtpgw ready", time.monotonic() - t0)
        assert "ruleset: loaded" in tb.exec("gw", "smtpgwctl", "status", timeout=60).stdout
        for fl in e2e.FLOWS:
            tb.send_and_wait(fl)
    finally:
        tb.sh("rm -f /etc/smtpgw/board; "
              "sed -i '/^log-rotate /d' /etc/smtpgw/network; "
              "if [ ! -f /etc/smtpgw/smtpgw.conf ] && [ -f /etc/smtpgw/backup.conf ]; then "
              "smtpgwctl import /etc/smtpgw/backup.conf && smtpgwctl apply; fi; "
              "rm -f /etc/smtpgw/backup.conf; sync", check=False)


def check_smtp_is_reset(tb):
    before = mx_connects(tb)
    outcomes = []
    for fl in e2e.FLOWS:
        for port in (25, 465):
            r = tb.probe(fl.client, fl.server_addr, port, connect_timeout=5, read_timeout=2)
            outcomes.append((fl.id, port, r["connect"], r["connect_secs"], r["data"]))
    for fid, port, connect, secs, data in outcomes:
        assert connect == "refused" and secs < 1.0 and data == "", outcomes
    time.sleep(1)   # Postfix logs a connection at once; give it a moment
    assert mx_connects(tb) == before, "an SMTP connection reached a server"


def check_other_traffic_is_routed(tb):
    """Forwarding is on for everything but SMTP: int-client reaches a
    listener on ext-client, port 8025."""
    import socket
    server = e2e.ADDR["ext-client"][4]
    with e2e.in_netns(tb.netns("ext-client")):
        ls = socket.socket(e2e.family_of(server), socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((server, 8025))
        ls.listen(1)
    try:
        c = tb.connect("int-client", server, 8025, timeout=10)
        ls.settimeout(10)
        s, peer = ls.accept()
        assert peer[0] == e2e.ADDR["int-client"][4]
        c.send("ping\r\n")
        assert s.recv(16) == b"ping\r\n"
        s.close()
        c.close()
    finally:
        ls.close()


def check_logs_are_bounded(tb):
    procs = tb.sh("ps -o args")
    assert "syslogd -n -O -" in procs, procs
    assert "file=/var/log/messages -v max=65536 -v keep=2" in procs, procs
    mounts = tb.sh("grep ' /var/log ' /proc/mounts")
    assert mounts.startswith("tmpfs /var/log tmpfs") and "size=2432k" in mounts, mounts
    # 1 MiB of lines, 200 bytes each, through syslog.
    end = e2e.new_token()
    t0 = time.monotonic()
    tb.sh("line=$(printf '%0190d' 0); "
          "yes \"$line\" | head -n 5243 | logger -t flood; logger -t flood " + end, timeout=300)
    deadline = time.monotonic() + 120
    while end not in tb.sh("cat /var/log/messages"):
        assert time.monotonic() < deadline, "the last flood line never reached /var/log/messages"
        time.sleep(1)
    note_time("1 MiB through syslog on the appliance", time.monotonic() - t0)
    files = tb.sh("cd /var/log && ls messages*").split()
    assert sorted(files) == ["messages", "messages.0", "messages.1"], files
    total = int(tb.sh("cat /var/log/messages* | wc -c").strip())
    assert total <= 3 * 64 * 1024, total
    assert total > 2 * 64 * 1024, total   # it did rotate
