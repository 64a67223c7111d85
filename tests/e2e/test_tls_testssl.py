"""testssl.sh, from int-client through the gateway, finds the gateway's TLS
sound on 25 (STARTTLS) and 465 (implicit TLS).

What a client of 198.51.100.25 talks to on those ports is the gateway's
client-leg TLS (the TLS-SMTP.Standard settings of the testbed profile).
testssl checks protocols (-p), cipher categories (-s), forward secrecy
(-f) and renegotiation (-R), with --fast, and the test reads its JSON:
SSLv2, SSLv3, TLS 1.0 and 1.1 not offered; no NULL, anonymous, EXPORT,
LOW (DES, RC2, RC4) or 3DES/IDEA ciphers; forward secrecy offered; no
client-initiated renegotiation.  The two runs go in parallel.

testssl never leaves the testbed: the target is an address (--nodns
none: no lookups at all) and its start-up probes of the local openssl
connect to 127.0.0.1:0 instead of resolving "invalid." (NXCONNECT).
"""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ADDR, TESTBED

TARGET = ADDR["ext-mx"][4]
RUN_TIMEOUT = 110  # seconds for one testssl run (about 30 s on a quiet machine)

EXPECT = {
    "SSLv2": "not offered",
    "SSLv3": "not offered",
    "TLS1": "not offered",
    "TLS1_1": "not offered",
    "cipherlist_NULL": "not offered",
    "cipherlist_aNULL": "not offered",
    "cipherlist_EXPORT": "not offered",
    "cipherlist_LOW": "not offered",
    "cipherlist_3DES_IDEA": "not offered",
    "PFS": "offered",
    "secure_client_renego": "not vulnerable",
}


def start(tmp, port):
    out = Path(tmp) / f"testssl-{port}.json"
    argv = [str(TESTBED), "exec", "int-client", "env", "NXCONNECT=127.0.0.1:0",
            "timeout", str(RUN_TIMEOUT), "testssl", "--quiet", "--color", "0",
            "--nodns", "none", "--warnings", "off", "--connect-timeout", "5",
            "--openssl-timeout", "5", "--fast", "-p", "-s", "-f", "-R",
            "--jsonfile", str(out)]
    if port == 25:
        argv += ["--starttls", "smtp"]
    argv.append(f"{TARGET}:{port}")
    return out, subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)


def test_testssl_finds_no_weakness(testbed):
    if shutil.which("testssl") is None:
        pytest.fail("testssl is not installed (scripts/deps.sh lists testssl.sh)")
    with tempfile.TemporaryDirectory(prefix="smtpgw-e2e-testssl-") as tmp:
        t0 = time.monotonic()
        runs = {port: start(tmp, port) for port in (25, 465)}
        results = {}
        for port, (out, proc) in runs.items():
            text, _ = proc.communicate(timeout=RUN_TIMEOUT + 30)
            assert out.exists(), (f"testssl on {port} wrote no JSON "
                                  f"(exit {proc.returncode}):\n{text}")
            results[port] = ({f["id"]: f for f in json.loads(out.read_text())}, text)
        print(f"testssl: {time.monotonic() - t0:.1f} s for both runs")

    for port, (found, text) in results.items():
        for key, want in EXPECT.items():
            assert key in found, f"port {port}: testssl reported no {key}:\n{text}"
            got = found[key]["finding"]
            assert got.startswith(want), f"port {port}: {key} is {got!r}, want {want!r}"
        assert not [f for f in found.values() if f["severity"] in ("HIGH", "CRITICAL")], text
