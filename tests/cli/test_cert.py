"""cert show|import-server|import-authority|export-authority|
regenerate-authority, against the configuration's tls-dir."""

import datetime
import stat
import subprocess

import pytest

from conftest import needs_daemon, needs_openssl

pytestmark = [needs_daemon, needs_openssl]


def ossl(*args, input=None):
    r = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, input=input)
    assert r.returncode == 0, r.stderr
    return r.stdout


def make_key(path):
    ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def make_ca(d, name="Test CA"):
    key = make_key(d / f"{name}.key")
    crt = d / f"{name}.crt"
    ossl("req", "-x509", "-new", "-key", key, "-days", "365", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-out", crt)
    return crt, key


def make_server(d, ca):
    key = make_key(d / "server.key")
    csr = d / "server.csr"
    crt = d / "server.crt"
    ossl("req", "-new", "-key", key, "-subj", "/CN=gw.example", "-out", csr)
    ext = d / "server.ext"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:gw.example\n")
    ossl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
         "-days", "365", "-extfile", ext, "-out", crt)
    return crt, key


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_show_before_any_certificate(box):
    r = box.ok("cert", "show")
    assert r.out.count("state:       missing") == 3
    for what in ("Proxy Server certificate", "Proxy Authority CA", "Untrusted CA"):
        assert what in r.out
    assert str(box.tls) in r.out


def test_regenerate_and_export_authority(box, tmp_path):
    assert "no Proxy Authority" in box.fails("cert", "export-authority").err
    r = box.ok("cert", "regenerate-authority", "--cn", "Box 1 Proxy Authority", "--days", "365")
    assert "new Proxy Authority" in r.out and "clients must trust the new one" in r.out
    crt, key = box.tls / "proxy-authority.crt", box.tls / "proxy-authority.key"
    assert mode(key) == 0o600
    text = ossl("x509", "-in", crt, "-noout", "-text")
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign, CRL Sign" in text
    assert "Box 1 Proxy Authority" in ossl("x509", "-in", crt, "-noout", "-subject")
    show = box.ok("cert", "show").out
    block = show.split("Proxy Authority CA")[1].split("Untrusted CA")[0]
    assert "state:       ok" in block and "matches the certificate, mode 0600" in block
    pem = box.ok("cert", "export-authority").out
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in pem
    out = tmp_path / "ca.pem"
    box.ok("cert", "export-authority", out)
    assert out.read_text() == pem
    first = ossl("x509", "-in", crt, "-noout", "-fingerprint", "-sha256")
    box.ok("cert", "regenerate-authority")
    assert ossl("x509", "-in", crt, "-noout", "-fingerprint", "-sha256") != first


def test_regenerate_errors(box):
    assert "out of range" in box.fails("cert", "regenerate-authority", "--days", "0", rc=2).err
    assert "is not a number" in box.fails("cert", "regenerate-authority", "--days", "ten",
                                          rc=2).err
    assert "usable common name" in box.fails("cert", "regenerate-authority", "--cn", "a/b",
                                             rc=2).err


def test_import_server(box, tmp_path):
    ca = make_ca(tmp_path)
    crt, key = make_server(tmp_path, ca)
    r = box.ok("cert", "import-server", crt, key)
    assert "Proxy Server certificate installed" in r.out and "apply" in r.out
    assert (box.tls / "proxy-server.crt").read_text() == crt.read_text()
    assert mode(box.tls / "proxy-server.key") == 0o600
    block = box.ok("cert", "show").out.split("Proxy Authority CA")[0]
    assert "state:       ok" in block and "CN = gw.example" in block
    assert "CN = Test CA" in block and "sha256:" in block


def test_import_server_der(box, tmp_path):
    ca = make_ca(tmp_path)
    crt, key = make_server(tmp_path, ca)
    der = tmp_path / "server.der"
    ossl("x509", "-in", crt, "-outform", "DER", "-out", der)
    box.ok("cert", "import-server", der, key)
    assert (box.tls / "proxy-server.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_import_errors(box, tmp_path):
    ca = make_ca(tmp_path)
    crt, key = make_server(tmp_path, ca)
    other = make_key(tmp_path / "other.key")
    r = box.fails("cert", "import-server", crt, other)
    assert f"the key {other} does not belong to the certificate {crt}" in r.err
    r = box.fails("cert", "import-server", key, key)
    assert "is not a certificate" in r.err
    r = box.fails("cert", "import-server", crt, crt)
    assert "is not a private key, or it is encrypted" in r.err
    enc = tmp_path / "enc.key"
    ossl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", enc)
    r = box.fails("cert", "import-server", crt, enc)
    assert "is not a private key, or it is encrypted" in r.err and "openssl pkey" in r.err
    r = box.fails("cert", "import-server", tmp_path / "nope.crt", key)
    assert "cannot read certificate file" in r.err
    r = box.fails("cert", "import-authority", crt, key)
    assert "is not a CA certificate" in r.err and "import-server" in r.err
    assert not (box.tls / "proxy-server.crt").exists()
    assert not (box.tls / "proxy-authority.crt").exists()


def test_import_expired_is_refused(box, tmp_path):
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old")])
    past = datetime.datetime(2020, 1, 1)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(k.public_key()).serial_number(1)
         .not_valid_before(past).not_valid_after(past + datetime.timedelta(days=30))
         .sign(k, hashes.SHA256()))
    crt, key = tmp_path / "old.crt", tmp_path / "old.key"
    crt.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    r = box.fails("cert", "import-server", crt, key)
    assert "has expired" in r.err


def test_import_authority(box, tmp_path):
    crt, key = make_ca(tmp_path, "Corp CA")
    box.ok("cert", "import-authority", crt, key)
    assert box.ok("cert", "export-authority").out == ossl("x509", "-in", crt)
    assert mode(box.tls / "proxy-authority.key") == 0o600


def test_show_finds_problems(box, tmp_path):
    box.ok("cert", "regenerate-authority")
    key = box.tls / "proxy-authority.key"
    key.chmod(0o644)
    assert "key readable by others" in box.ok("cert", "show").out
    make_key(tmp_path / "x.key")
    key.write_text((tmp_path / "x.key").read_text())
    key.chmod(0o600)
    assert "key mismatch" in box.ok("cert", "show").out
    key.unlink()
    assert "key missing" in box.ok("cert", "show").out


@pytest.mark.parametrize("start_days,length_days,state", [
    (-60, 30, "expired"),
    (10, 365, "not yet valid"),
    (-1, 10, "expires within 30 days"),
])
def test_show_validity_states(box, start_days, length_days, state):
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "gw")])
    start = datetime.datetime.utcnow() + datetime.timedelta(days=start_days)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(k.public_key()).serial_number(2).not_valid_before(start)
         .not_valid_after(start + datetime.timedelta(days=length_days))
         .sign(k, hashes.SHA256()))
    box.tls.mkdir(mode=0o700)
    (box.tls / "proxy-server.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
    key = box.tls / "proxy-server.key"
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    key.chmod(0o600)
    block = box.ok("cert", "show").out.split("Proxy Authority CA")[0]
    assert f"state:       {state}\n" in block
