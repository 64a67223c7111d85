"""The gateway's session log line: classification and endpoints.

Proves that for every intercepted session smtpgw logs one line, tagged
with a 12-hex-digit session id, that names the client and the original
server (address and port, IPv6 in brackets), the zone the client came
from, the direction and the policy: `zone=trusted direction=outbound
policy=SMTP-Proxy-Out` for int-client -> ext-mx and `zone=external
direction=inbound policy=SMTP-Proxy-In` for ext-client -> int-mx, with
`spoof=yes` under the default configuration.  The client's source port
is chosen by the test, so the line found is this test's session.
"""

import re

import pytest

from conftest import FLOW_IDS, FLOWS, random_lport, split_hostport


@pytest.mark.parametrize("fl", FLOWS, ids=FLOW_IDS)
def test_session_line(testbed, fl):
    offset = testbed.log_offset()
    lport = random_lport()
    testbed.send_and_wait(fl, lport=lport)

    line, f = testbed.wait_for_session(offset, fl.client_addr, lport)
    assert re.search(r"(^|\s)[0-9a-f]{12}\s", line), f"no session id: {line}"
    assert split_hostport(f["client"]) == (fl.client_addr, lport), line
    assert split_hostport(f["server"]) == (fl.server_addr, 25), line
    if fl.family == 6:
        assert f["client"].startswith("[") and f["server"].startswith("["), line
    assert f["zone"] == fl.zone, line
    assert f["direction"] == fl.direction, line
    assert f.get("policy") == fl.policy, line
    assert f.get("spoof") == "yes", line
