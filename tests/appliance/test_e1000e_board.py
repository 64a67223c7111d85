"""The intel-4port board profile (a 4-port Intel NIC firewall box) boots and
forwards, proven in QEMU with e1000e NICs (QEMU 7.2 has no igb/igc model).

QEMU gives the box its four ports the way such boxes have them: one NIC per
PCIe root port, port N on bus N.  The appliance, built for intel-4port
(Debian's generic kernel, igc/igb/e1000e and the board's storage drivers),
must name them by PCI address exactly as board/intel-4port/nics says -
wan0 0000:01:00.0, lan0 0000:02:00.0, opt0 0000:03:00.0, mgmt0
0000:04:00.0 - driven by e1000e, load the interception ruleset with the
native nft queue, and then carry mail both ways (IPv4 and IPv6, plain and
STARTTLS), each session intercepted and logged by smtpgw, and forward
other TCP traffic across untouched.
"""

import socket

import pytest

from conftest import e2e, remember

PORTS = {"wan0": "0000:01:00.0", "lan0": "0000:02:00.0",
         "opt0": "0000:03:00.0", "mgmt0": "0000:04:00.0"}


@pytest.fixture
def tb(appliance, request):
    return remember(request, appliance("intel-4port", "kernel"))


def test_ports_named_by_pci_address(tb):
    out = tb.sh("for i in wan0 lan0 opt0 mgmt0; do "
                "echo $i $(basename $(readlink -f /sys/class/net/$i/device)) "
                "$(basename $(readlink -f /sys/class/net/$i/device/driver)); done")
    got = {l.split()[0]: l.split()[1:] for l in out.splitlines()}
    for name, pci in PORTS.items():
        assert got.get(name) == [pci, "e1000e"], f"{name}: {got.get(name)}"
    assert "board intel-4port" in tb.sh("cat /usr/share/smtpgw/manifest")
    assert "via native" in tb.sh("cat $SMTPGW_PREFIX/nft.log")


@pytest.mark.parametrize("fl", e2e.FLOWS, ids=e2e.FLOW_IDS)
def test_mail_crosses_the_box(tb, fl):
    off = tb.log_offset()
    token, msg = tb.send_and_wait(fl)
    assert token in msg
    line, f = tb.wait_for_session(off, fl.client_addr)
    assert (f["zone"], f["direction"], f["policy"]) == (fl.zone, fl.direction, fl.policy)


def test_starttls_mail_crosses_the_box(tb):
    for direction in ("outbound", "inbound"):
        fl = e2e.flow(direction, 4)
        token = e2e.new_token()
        r = tb.swaks(fl, token, extra=("-tls",))
        assert r.returncode == 0, r.stdout + r.stderr
        tb.wait_for_message(fl.server, token)


@pytest.mark.parametrize("family", [4, 6])
def test_plain_traffic_is_forwarded(tb, family):
    """A TCP connection to a port smtpgw does not intercept crosses the box
    untouched: int-client reaches a listener on ext-client."""
    server = e2e.ADDR["ext-client"][family]
    with e2e.in_netns(tb.netns("ext-client")):
        ls = socket.socket(e2e.family_of(server), socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((server, 8025))
        ls.listen(1)
    try:
        c = tb.connect("int-client", server, 8025, timeout=10)
        ls.settimeout(10)
        s, peer = ls.accept()
        assert peer[0] == e2e.ADDR["int-client"][family]
        c.send("ping\r\n")
        assert s.recv(16) == b"ping\r\n"
        s.close()
        c.close()
    finally:
        ls.close()
