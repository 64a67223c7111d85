"""Where things are, and the testbed's topology as the tests see it:
addresses (tests/testbed/README.md), the two directions through the
gateway (Flow), fresh tokens and client ports."""

import random
import uuid
from dataclasses import dataclass
from pathlib import Path


REPO = Path(__file__).resolve().parents[3]
TESTBED = REPO / "tests" / "testbed" / "testbed"
PYTHON = "/usr/bin/python3"
NETPROBE = Path(__file__).resolve().parents[1] / "netprobe.py"

DELIVERY_TIMEOUT = 30.0  # seconds for Postfix to put a message in a Maildir
LOG_TIMEOUT = 10.0  # seconds for an expected line to show in a log


ADDR = {
    "int-mx": {4: "192.0.2.25", 6: "2001:db8:1::25"},
    "int-client": {4: "192.0.2.10", 6: "2001:db8:1::10"},
    "ext-mx": {4: "198.51.100.25", 6: "2001:db8:2::25"},
    "ext-client": {4: "198.51.100.10", 6: "2001:db8:2::10"},
    "gw-lan0": {4: "192.0.2.1", 6: "2001:db8:1::1"},
    "gw-wan0": {4: "198.51.100.1", 6: "2001:db8:2::1"},
    # second addresses where nothing listens: for ScriptedServer
    "int-script": {4: "192.0.2.26", 6: "2001:db8:1::26"},
    "ext-script": {4: "198.51.100.26", 6: "2001:db8:2::26"},
    # `testbed extra-segment add`: a host behind a gateway interface in no zone
    "extra-client": {4: "203.0.113.10", 6: "2001:db8:3::10"},
    "gw-extra0": {4: "203.0.113.1", 6: "2001:db8:3::1"},
}


@dataclass(frozen=True)
class Flow:
    """One way through the gateway: who talks to whom, and what the
    gateway should make of it."""

    direction: str  # "outbound" | "inbound"
    family: int  # 4 | 6
    client: str  # client namespace
    server: str  # server namespace
    client_addr: str
    server_addr: str
    gw_server_side: str  # gateway address the server sees without spoofing
    zone: str  # zone the client's traffic arrives from
    policy: str
    sender: str
    rcpt: str
    helo: str

    @property
    def id(self):
        return f"{self.direction}-v{self.family}"


def flow(direction, family):
    if direction == "outbound":
        return Flow(direction, family, "int-client", "ext-mx",
                    ADDR["int-client"][family], ADDR["ext-mx"][family],
                    ADDR["gw-wan0"][family], "trusted", "SMTP-Proxy-Out",
                    "alice@int.test", "user@ext.test", "client.int.test")
    if direction == "inbound":
        return Flow(direction, family, "ext-client", "int-mx",
                    ADDR["ext-client"][family], ADDR["int-mx"][family],
                    ADDR["gw-lan0"][family], "external", "SMTP-Proxy-In",
                    "bob@ext.test", "user@int.test", "client.ext.test")
    raise ValueError(direction)


FLOWS = [flow(d, f) for d in ("outbound", "inbound") for f in (4, 6)]
FLOW_IDS = [f.id for f in FLOWS]


def new_token():
    return "e2e-" + uuid.uuid4().hex


def random_lport():
    """A client port below the ephemeral range, so it identifies the
    session in the gateway log and never collides with the kernel's
    own choices."""
    return random.randrange(20000, 32000)
