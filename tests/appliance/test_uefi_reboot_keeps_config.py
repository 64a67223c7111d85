"""A reboot keeps the configuration, the Proxy Authority CA and the Proxy
Server certificate (the appliance booted from the disk image with UEFI).

On the appliance, `smtpgwctl` stages a change (SMTP-Proxy-In's TLS Support
set to disabled: inbound port 465 is then reset) and `apply` activates it,
which persists it on the configuration partition.  The test notes the
fingerprints of the Proxy Authority CA, of the Proxy Server certificate
(also as ext-client sees it on STARTTLS through the gateway) and of the
SSH host key, and the configuration's bytes.  Then the box reboots
(busybox reboot: smtpgw stopped, the partition unmounted, OVMF and
systemd-boot again).  After it: the same fingerprints, the same
configuration with the change in it, the previous one kept as
smtpgw.conf.prev, the change in force (inbound 465 reset at once, inbound
25 delivered), and no first-boot step ran again.  TLS Support is put back
to enabled at the end.
"""

import pytest

from conftest import e2e, note_time, remember


@pytest.fixture
def tb(appliance, request):
    return remember(request, appliance("qemu-x86_64", "disk"))


FINGERPRINTS = (
    "openssl x509 -in /etc/smtpgw/tls/proxy-authority.crt -noout -fingerprint -sha256; "
    "openssl x509 -in /etc/smtpgw/tls/proxy-server.crt -noout -fingerprint -sha256; "
    "dropbearkey -y -f /etc/smtpgw/ssh/dropbear_ed25519_host_key | grep Fingerprint; "
    "sha256sum /etc/smtpgw/smtpgw.conf")


def presented_cert(tb):
    """Fingerprint of what ext-client gets on STARTTLS to int-mx:25."""
    r = tb.exec("ext-client", "sh", "-c",
                "timeout 20 openssl s_client -connect 192.0.2.25:25 -starttls smtp "
                "</dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
                timeout=60)
    assert r.returncode == 0 and "Fingerprint" in r.stdout, r.stdout + r.stderr
    return r.stdout.strip()


def test_reboot_keeps_configuration_and_keys(tb):
    tb.sh("smtpgwctl policy set SMTP-Proxy-In tls-support disabled && smtpgwctl apply")
    before = tb.sh(FINGERPRINTS)
    seen_before = presented_cert(tb)
    assert tb.sh("cat /etc/smtpgw/tls/proxy-server.crt | openssl x509 -noout -fingerprint -sha256"
                 ).strip() == seen_before

    secs = tb.reboot()
    note_time("uefi disk: reboot to smtpgw ready", secs)
    try:
        boot = tb.boot_log()
        assert "configuration storage: partition:/dev/vda2" in boot, boot
        assert "first boot" not in boot, boot
        assert tb.sh(FINGERPRINTS) == before
        assert presented_cert(tb) == seen_before
        assert "tls-support = disabled" in tb.sh("smtpgwctl policy show SMTP-Proxy-In")
        assert tb.sh("test -f /etc/smtpgw/smtpgw.conf.prev && echo yes").strip() == "yes"

        inbound = e2e.flow("inbound", 4)
        r = tb.probe(inbound.client, inbound.server_addr, 465, connect_timeout=3,
                     read_timeout=0.5)
        assert r["connect"] == "refused" and r["connect_secs"] < 1.0, r
        tb.send_and_wait(inbound)
    finally:
        tb.sh("smtpgwctl policy set SMTP-Proxy-In tls-support enabled && smtpgwctl apply",
              check=False)
