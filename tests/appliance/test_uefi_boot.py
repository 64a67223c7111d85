"""The flashable disk image boots with UEFI firmware and configures a new
box by itself.

`image/mkimage` builds the GPT image (ESP with systemd-boot, kernel and
initramfs; an empty ext4 configuration partition but for root's SSH key);
QEMU boots a copy of it with OVMF, like a box freshly flashed.  On this
first boot the appliance must: find its configuration partition and keep
/etc/smtpgw on it; write the board's default network settings and the SSH
host key there; create the default configuration with `smtpgwctl init`
(zone trusted = lan0, zone external = wan0, SMTP-Proxy-In external ->
trusted with SMTP-Incoming.Standard, SMTP-Proxy-Out trusted -> external
with SMTP-Outgoing.Standard, TLS Support enabled); have smtpgw create the
Proxy Authority CA and the Proxy Server certificate in tls/ on the
partition; load the ruleset with the native nft queue; answer SSH on
mgmt0 but reset SSH from the external side; and then carry mail both
ways, plain and with STARTTLS.
"""

import pytest

from conftest import e2e, note_time, remember


@pytest.fixture
def tb(appliance, request):
    return remember(request, appliance("qemu-x86_64", "disk"))


def test_first_boot_from_disk_image(tb):
    boot = tb.boot_log()
    assert "configuration storage: partition:/dev/vda2" in boot, boot
    for first in ("first boot: default network settings from the board",
                  "first boot: SSH host key",
                  "first boot: default configuration (smtpgwctl init)",
                  "interception ruleset loaded"):
        assert first in boot, f"{first!r} missing:\n{boot}"
    up = [l for l in boot.splitlines() if "system up in" in l]
    if up:
        note_time("uefi disk boot: kernel uptime when rcS finished",
                  float(up[-1].rsplit("uptime ", 1)[1].split()[0]))

    mounts = tb.sh("grep ' /etc/smtpgw ' /proc/mounts")
    assert mounts.startswith("/dev/vda2 /etc/smtpgw ext4"), mounts
    files = tb.sh("cd /etc/smtpgw && ls network smtpgw.conf ssh/dropbear_ed25519_host_key "
                  "tls/proxy-authority.crt tls/proxy-authority.key "
                  "tls/proxy-server.crt tls/proxy-server.key")
    assert len(files.split()) == 7, files

    conf = tb.sh("smtpgwctl show --active --raw || cat /etc/smtpgw/smtpgw.conf")
    for want in ("[zone trusted]", "interfaces = lan0", "[zone external]", "interfaces = wan0",
                 "[policy SMTP-Proxy-In]", "action = SMTP-Incoming.Standard",
                 "[policy SMTP-Proxy-Out]", "action = SMTP-Outgoing.Standard",
                 "tls-support = enabled"):
        assert want in conf, f"{want!r} not in the default configuration:\n{conf}"
    pol = tb.sh("smtpgwctl policy list")
    assert "SMTP-Proxy-In" in pol and "SMTP-Proxy-Out" in pol, pol

    ca = tb.sh("openssl x509 -in /etc/smtpgw/tls/proxy-authority.crt -noout -text")
    assert "CA:TRUE" in ca, ca
    tb.sh("openssl x509 -in /etc/smtpgw/tls/proxy-server.crt -noout -subject")
    assert "via native" in tb.sh("cat /var/log/nft.log")
    assert "smtpgw running" in tb.sh("smtpgw-service status")


def test_ssh_only_on_management_side(tb):
    r = tb.probe("ext-client", "198.51.100.1", 22, connect_timeout=3, read_timeout=0.5)
    assert r["connect"] == "refused", r
    r = tb.probe("int-client", "192.0.2.1", 22, connect_timeout=3, read_timeout=2)
    assert r["connect"] == "ok", r


@pytest.mark.parametrize("fl", e2e.FLOWS, ids=e2e.FLOW_IDS)
def test_mail_after_first_boot(tb, fl):
    token, msg = tb.send_and_wait(fl)
    assert token in msg


@pytest.mark.parametrize("direction", ["outbound", "inbound"])
def test_starttls_mail_after_first_boot(tb, direction):
    fl = e2e.flow(direction, 4)
    token = e2e.new_token()
    r = tb.swaks(fl, token, extra=("-tls",))
    assert r.returncode == 0, r.stdout + r.stderr
    tb.wait_for_message(fl.server, token)
